// libvirt through the product with the data movers as their own processes (real libvirtd,
// QEMU, NATS): the mover reading a running domain's disk through libvirt's pull-mode backup
// is SIGKILLed in the middle of the transfer. What follows is asserted as the product does it:
// the work goes to the other mover, the job ends, libvirt's backup job is gone (domjobinfo
// None, no backup-dumpxml), the scratch files are removed, and the next `cairn backup` works
// and restores byte-identical. The domain boots the test guest from its root disk vda; the
// data disk vdb, which the guest never touches, holds the incompressible data the asserts
// compare. Then a whole-VM restore of the next restore point (`cairn restore --vm --host lv
// --start`, its bandwidth limited so it lasts) has its mover SIGKILLed mid-transfer too: the
// work goes to another mover, the job completes, the data disk is byte-identical, and the new
// domain boots to the guest's marker on its own serial console (one boot, the only one awaited).
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { chmod, mkdir, open, readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { progressSubject, type KnownEvent, type RestoreJobView } from '@cairn/contracts';
import { buildGuestImage, defineGuestDomain, ensureLibvirtd, useHarness, virsh, waitFor } from '@cairn/testing';
import { CatalogueClient } from '@cairn/catalogue-client';
import { startStack } from '@cairn/cli';
import { CommandBus } from '@cairn/messaging';
import { defaultScratchDir } from '@cairn/snapshot-coordinator';
import { cli, runService, waitForJobEnd, type ServiceProcess } from './e2e-helpers.ts';

const run = promisify(execFile);
const MiB = 1024 * 1024;
// Incompressible data, so the transfer lasts long enough to be killed in the middle.
const DISK_BYTES = 160 * MiB;
const RANDOM_AT = 16 * MiB;
const RANDOM_BYTES = 128 * MiB;

describe('libvirt: the data mover SIGKILLed mid-transfer (real libvirtd, QEMU, NATS)', () => {
  const h = useHarness();

  it('the libvirt backup job is aborted, scratch files go, the next backup works and restores exactly; a whole-VM restore whose mover dies completes and boots', async () => {
    await ensureLibvirtd();
    const dataDir = await h.tmpDir('cairn-e2e-lvkill-');
    const raw = join(dataDir, 'disk.raw');
    const f = await open(raw, 'w');
    try {
      await f.truncate(DISK_BYTES);
      await f.write(randomBytes(RANDOM_BYTES), 0, RANDOM_BYTES, RANDOM_AT);
    } finally { await f.close(); }
    const disk = join(dataDir, 'disk.qcow2');
    await run('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, disk]);
    await run('chmod', ['666', disk]);
    await run('chmod', ['777', dataDir]); // QEMU runs as libvirt-qemu
    const expected = await readFile(raw);
    await rm(raw);

    const image = await buildGuestImage({ dir: join(dataDir, 'guest'), hostname: 'lvkill', sizeMiB: 64 });
    const dom = await defineGuestDomain({ image, dir: join(dataDir, 'guest'), prefix: 'cairn-e2e-lvkill', extraDisks: [{ file: disk, format: 'qcow2' }] });
    h.onClose(() => dom.remove());
    const name = dom.name;
    const scratchDir = defaultScratchDir(join(dataDir, 'coordinator'), 'lv');
    h.onClose(() => rm(scratchDir, { recursive: true, force: true })); // after the stack stops
    const stack = await startStack({ dataDir, without: ['data-mover'] });
    h.onClose(() => stack.stop());
    const args = ['--data', dataDir];
    const catalogue = new CatalogueClient(stack.nc, { site: stack.site });
    const movers: ServiceProcess[] = [];
    const startMover = (m: string) => {
      const p = runService(m, [
        '--nats', stack.natsUrl, '--site', stack.site, '--data', join(dataDir, m),
        'run', 'data-mover', '--repo', join(dataDir, 'repository'), '--ack-wait-ms', '3000',
      ], { CAIRN_REPO_PASSPHRASE: stack.passphrase, CAIRN_RESTORE_ROOTS: join(dataDir, 'restores') });
      h.onClose(async () => { p.kill(); await p.exited; });
      movers.push(p);
      return p;
    };
    for (const m of ['m1', 'm2']) startMover(m);
    await Promise.all(movers.map((m) => m.ready));

    const added = await cli([...args, 'hypervisor', 'add', 'libvirt', '--uri', 'qemu:///system', '--name', 'lv']);
    expect(added.code, added.stderr).toBe(0);
    await waitFor(async () => (await catalogue.query('vm.list', {})).items.some((v) => v.name === name), { what: 'the domain in the catalogue' });
    // Quiesce off: the domain has no guest agent, and waiting for one is not what this is about.
    const pol = await cli([...args, '--json', 'policy', 'create', '--name', `p-${randomUUID().slice(0, 6)}`, '--vm', name, '--cron', '0 3 * * *', '--timezone', 'UTC', '--quiesce', 'off']);
    expect(pol.code, pol.stderr).toBe(0);
    const policyId = (JSON.parse(pol.stdout) as { policyId: string }).policyId;
    const bus = new CommandBus(stack.nc, { site: stack.site, actor: { kind: 'user', id: 'libvirt-kill-e2e' }, defaultTimeoutMs: 60_000 });

    const events: KnownEvent[] = [];
    const sub = stack.log.subscribe({ from: 'end', category: 'job' });
    h.onClose(() => sub.stop());
    void (async () => { for await (const r of sub) events.push(r.event); })();
    const reply = await bus.send('scheduler', 'RequestBackup', { vmId: name, policyId, mode: 'auto' }, { idempotencyKey: randomUUID() });
    if (!reply.accepted) throw new Error(`RequestBackup refused: ${reply.error.message}`);
    const jobId = reply.result!.jobId;
    const progress: Array<{ worker: string; bytesDone: number }> = [];
    const progressSub = stack.nc.subscribe(progressSubject(stack.site, jobId));
    h.onClose(() => progressSub.unsubscribe());
    void (async () => { for await (const m of progressSub) progress.push(m.json()); })();
    const ofJob = () => events.filter((e) => e.correlationId === jobId);

    const started = await waitFor(() => ofJob().find((e) => e.type === 'TransferStarted'), { timeoutMs: 120_000, intervalMs: 20, what: 'TransferStarted' });
    const worker = (started.data as { worker: string }).worker;
    const victim = movers.find((m) => worker.startsWith(`data-mover@${m.pid}-`));
    expect(victim, `no mover has the pid of ${worker}`).toBeDefined();
    await waitFor(() => progress.some((p) => p.worker === worker && p.bytesDone > 0), { timeoutMs: 60_000, intervalMs: 10, what: `progress from ${worker}` });
    // libvirt's pull-mode backup job is running, its scratch file in the configured directory.
    expect(await virsh('domjobinfo', name)).not.toMatch(/Job type:\s+None/);
    expect((await readdir(scratchDir)).filter((s) => s.endsWith('.qcow2')).length).toBeGreaterThan(0);
    victim!.kill('SIGKILL');
    await victim!.exited;
    expect(ofJob().map((e) => e.type), 'the transfer ended before its mover died').not.toContain('RestorePointCommitted');

    const job = await waitForJobEnd(catalogue, jobId, 300_000);
    const starts = job.events.filter((e) => e.type === 'TransferStarted').map((e) => (e.data as { worker: string }).worker);
    console.log(`libvirt mover-kill e2e: job ${job.state} ${job.failure?.reason ?? ''}; transfers by ${starts.join(', ')}`);
    // The product's semantics: the unacknowledged work goes to the other mover, which commits.
    expect(job.state, JSON.stringify(job.failure)).toBe('completed');
    expect(starts[0]).toBe(worker);
    expect(starts.at(-1)!.startsWith(`data-mover@${movers.find((m) => m !== victim)!.pid}-`)).toBe(true);
    expect(job.events.filter((e) => e.type === 'RestorePointCommitted')).toHaveLength(1);

    // The view is released: libvirt's backup job is gone and its scratch files with it.
    await waitFor(async () => /Job type:\s+None/.test(await virsh('domjobinfo', name)) || undefined, { timeoutMs: 60_000, what: 'no libvirt job on the domain' });
    await expect(virsh('backup-dumpxml', name)).rejects.toThrow();
    expect((await readdir(scratchDir).catch(() => [] as string[])).filter((s) => s.startsWith('cairn-'))).toEqual([]);

    // Both restore points restore byte-identical (the disk did not change); the next backup works.
    const next = await cli([...args, '--json', 'backup', name, '--wait', '--timeout', '600'], {}, 660_000);
    expect(next.code, next.stderr).toBe(0);
    const nextId = (JSON.parse(next.stdout) as { restorePointId: string }).restorePointId;
    for (const [label, id] of [['after the kill', job.restorePointId!], ['next', nextId]] as const) {
      const to = join(dataDir, 'restores', `${label.replace(/ /g, '-')}.raw`);
      const r = await cli([...args, 'restore', id, '--disk', 'vdb', '--to', to]);
      expect(r.code, r.stderr).toBe(0);
      expect((await readFile(to)).equals(expected), `${label} restores to the disk`).toBe(true);
    }
    expect(await virsh('domjobinfo', name)).toMatch(/Job type:\s+None/);
    expect((await readdir(scratchDir).catch(() => [] as string[])).filter((s) => s.startsWith('cairn-'))).toEqual([]);

    // ---- a whole-VM restore whose mover is SIGKILLed mid-transfer ----------------------------
    const m3 = startMover('m3'); // the backup's victim is gone: two movers again
    await m3.ready;
    const newName = `${name}-r`;
    h.onClose(async () => { await virsh('destroy', newName).catch(() => undefined); await virsh('undefine', newName).catch(() => undefined); });
    const storage = join(dataDir, 'restores', 'vms');
    await mkdir(storage, { recursive: true, mode: 0o755 });
    for (const d of [dataDir, join(dataDir, 'restores'), storage]) await chmod(d, 0o755); // QEMU passes through to the images
    const restoreId = randomUUID();
    const rprogress: Array<{ worker: string; bytesDone: number }> = [];
    const rsub = stack.nc.subscribe(progressSubject(stack.site, restoreId));
    h.onClose(() => rsub.unsubscribe());
    void (async () => { for await (const m of rsub) rprogress.push(m.json()); })();
    // 16 MiB/s: the 224 MiB of both disks take long enough to be cut in the middle.
    const restoring = cli([...args, '--json', 'restore', nextId, '--vm', newName, '--host', 'lv', '--storage', storage, '--start', '--no-network',
      '--id', restoreId, '--bandwidth', '16MiB', '--timeout', '900'], {}, 960_000);
    const first = await waitFor(() => rprogress.find((p) => p.bytesDone > 0), { timeoutMs: 300_000, intervalMs: 10, what: 'restore progress' });
    const rvictim = movers.find((m) => m !== victim && first.worker.startsWith(`data-mover@${m.pid}-`));
    expect(rvictim, `no live mover has the pid of ${first.worker}`).toBeDefined();
    rvictim!.kill('SIGKILL');
    await rvictim!.exited;
    const restored = await restoring;
    expect(restored.code, restored.stdout + restored.stderr).toBe(0);
    const view = JSON.parse(restored.stdout) as RestoreJobView;
    const restoreStarts: string[] = [];
    for await (const r of stack.log.readStream(`restore-${restoreId}`)) if (r.event.type === 'RestoreStarted') restoreStarts.push((r.event.data as { worker: string }).worker);
    console.log(`libvirt mover-kill e2e: whole-VM restore ${view.state}; started by ${restoreStarts.join(', ')}`);
    expect(restoreStarts[0]).toBe(first.worker);
    expect(restoreStarts.length).toBeGreaterThan(1);
    expect(restoreStarts.at(-1)).not.toBe(first.worker);
    expect(view.vm).toMatchObject({ name: newName, started: true, libvirt: { host: 'lv', domain: newName } });
    expect((await readFile(join(storage, newName, 'vdb.raw'))).equals(expected), 'the data disk restored exactly').toBe(true);
    await waitFor(async () => (await readFile(view.vm!.serialLog, 'utf8').catch(() => '')).includes(image.marker) || undefined,
      { timeoutMs: 300_000, intervalMs: 250, what: `${image.marker} on ${view.vm!.serialLog}` });
  }, 1_500_000);
});
