// Two data movers as separate processes (real NATS, real QEMU): the one that took a transfer
// is SIGKILLed in the middle of it; the work is redelivered to the other, the restore point
// commits exactly once, nothing half-written is ever visible, and it restores exactly.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { progressSubject, type KnownEvent } from '@cairn/contracts';
import { useHarness, waitFor } from '@cairn/testing';
import { CatalogueClient } from '@cairn/catalogue-client';
import { DEMO_BLOCK, demoBaseBlock, startDemoVm, startStack } from '@cairn/cli';
import { checkRestoredDemoImage, cli, runService, waitForJobEnd, type ServiceProcess } from './e2e-helpers.ts';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const DISK_BYTES = 160 * MiB;
// Incompressible data, so the transfer takes long enough to be killed in the middle.
const RANDOM_AT = 16 * MiB;
const RANDOM_BYTES = 128 * MiB;

/** The demo's disk with a large random region: built raw, then converted to the demo's qcow2. */
async function prepareDisk(dir: string): Promise<(offset: number) => Buffer> {
  await mkdir(dir, { recursive: true });
  const random = randomBytes(RANDOM_BYTES);
  const raw = join(dir, 'disk0.raw');
  const f = await open(raw, 'w');
  try {
    await f.truncate(DISK_BYTES);
    await f.write(Buffer.alloc(RANDOM_AT, 0x5a), 0, RANDOM_AT, 0); // the demo's own base
    await f.write(random, 0, RANDOM_BYTES, RANDOM_AT);
  } finally {
    await f.close();
  }
  await run('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, join(dir, 'disk0.qcow2')]);
  return (offset) => offset >= RANDOM_AT && offset < RANDOM_AT + RANDOM_BYTES
    ? Buffer.from(random.subarray(offset - RANDOM_AT, offset - RANDOM_AT + DEMO_BLOCK))
    : demoBaseBlock(offset);
}

describe('two data movers (real NATS, real QEMU)', () => {
  const h = useHarness();

  it('a mover SIGKILLed mid-transfer: the work goes to the other, the restore point commits once and restores exactly', async () => {
    const dataDir = await h.tmpDir('cairn-e2e-movers-');
    const base = await prepareDisk(join(dataDir, 'demo'));
    const vm = await startDemoVm(join(dataDir, 'demo'), 'demo', DISK_BYTES);
    h.onClose(() => vm.stop());
    const stack = await startStack({ dataDir, qemu: [{ qmpSocket: vm.qmpPath }], without: ['data-mover'] });
    h.onClose(() => stack.stop());
    const catalogue = new CatalogueClient(stack.nc, { site: stack.site });
    const movers: ServiceProcess[] = [];
    for (const name of ['m1', 'm2']) {
      const m = runService(name, [
        '--nats', stack.natsUrl, '--site', stack.site, '--data', join(dataDir, name),
        'run', 'data-mover', '--repo', join(dataDir, 'repository'), '--ack-wait-ms', '3000',
      ], { CAIRN_REPO_PASSPHRASE: stack.passphrase, CAIRN_RESTORE_ROOTS: join(dataDir, 'restores') });
      h.onClose(async () => { m.kill(); await m.exited; });
      movers.push(m);
    }
    await Promise.all(movers.map((m) => m.ready));
    await waitFor(async () => (await catalogue.query('vm.list', {})).items.some((v) => v.name === 'demo'), { what: 'demo VM in the catalogue' });
    await vm.write(20);

    // Follow the job live: who took the transfer, and its first progress report.
    const events: KnownEvent[] = [];
    const sub = stack.log.subscribe({ from: 'end', category: 'job' });
    h.onClose(() => sub.stop());
    void (async () => { for await (const r of sub) events.push(r.event); })();
    const r = await cli(['--data', dataDir, '--json', 'backup', 'demo']);
    expect(r.code, r.stderr).toBe(0);
    const { jobId } = JSON.parse(r.stdout) as { jobId: string };
    const progress: Array<{ worker: string; bytesDone: number }> = [];
    const progressSub = stack.nc.subscribe(progressSubject(stack.site, jobId));
    h.onClose(() => progressSub.unsubscribe());
    void (async () => { for await (const m of progressSub) progress.push(m.json()); })();
    const ofJob = () => events.filter((e) => e.correlationId === jobId);

    const started = await waitFor(() => ofJob().find((e) => e.type === 'TransferStarted'), { timeoutMs: 90_000, intervalMs: 20, what: 'TransferStarted' });
    const worker = (started.data as { worker: string }).worker;
    const victim = movers.find((m) => worker.startsWith(`data-mover@${m.pid}-`));
    expect(victim, `no mover has the pid of ${worker}`).toBeDefined();
    await waitFor(() => progress.some((p) => p.worker === worker && p.bytesDone > 0), { timeoutMs: 60_000, intervalMs: 10, what: `progress from ${worker}` });
    victim!.kill('SIGKILL');
    await victim!.exited;
    expect(ofJob().map((e) => e.type), 'the transfer ended before its mover died').not.toContain('RestorePointCommitted');
    // What the dead mover wrote is not a restore point.
    expect((await stack.repository.listRestorePoints()).filter((p) => p.labels?.['jobId'] === jobId)).toEqual([]);

    // Redelivered to the other mover, which commits; the job completes.
    const job = await waitForJobEnd(catalogue, jobId, 180_000);
    expect(job.state, JSON.stringify(job.failure)).toBe('completed');
    const starts = job.events.filter((e) => e.type === 'TransferStarted').map((e) => (e.data as { worker: string }).worker);
    expect(starts[0]).toBe(worker);
    expect(starts.at(-1)).not.toBe(worker);
    const survivor = movers.find((m) => m !== victim)!;
    expect(starts.at(-1)!.startsWith(`data-mover@${survivor.pid}-`)).toBe(true);
    expect(job.events.filter((e) => e.type === 'RestorePointCommitted')).toHaveLength(1);
    expect(job.events.filter((e) => e.type === 'JobCompleted')).toHaveLength(1);

    // One restore point for the job, in the repository and the catalogue, and it is exact.
    const points = (await stack.repository.listRestorePoints()).filter((p) => p.labels?.['jobId'] === jobId);
    expect(points).toHaveLength(1);
    expect(points[0]!.id).toBe(job.restorePointId);
    expect((await catalogue.query('restorePoint.list', {})).items.map((p) => p.restorePointId)).toEqual([job.restorePointId]);
    const target = join(dataDir, 'restores', 'restored.raw');
    const restored = await cli(['--data', dataDir, 'restore', job.restorePointId!, '--to', target]);
    expect(restored.code, restored.stderr).toBe(0);
    const check = await checkRestoredDemoImage(target, vm.writes, base);
    expect(check, check.reason).toMatchObject({ ok: true, prefix: vm.writes.length });
  }, 300_000);
});
