// A failure in a phase ends the job with JobFailed (phase and reason) and still releases its
// snapshot, with real NATS and real QEMU: a repository that refuses chunk writes fails the
// transfer (no restore point appears, and the next backup still holds the failed job's
// changes); a VM whose QEMU died fails the snapshot, and `backup --wait` and `job watch` of that
// job exit 6.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useHarness, waitFor } from '@cairn/testing';
import { CatalogueClient } from '@cairn/catalogue-client';
import { startDemoVm, startStack } from '@cairn/cli';
import { checkRestoredDemoImage, cli, faultyBackend, pidsOf, waitForJobEnd, waitForJobEvent } from './e2e-helpers.ts';

// Where the repository keeps chunks (libs/repository/src/format/layout.ts).
const CHUNKS = 'chunks/';

describe('a failed phase ends the job with JobFailed and releases its snapshot (real NATS, real QEMU)', () => {
  const h = useHarness();

  /** `cairn backup <vm>` through the CLI; the job id it printed. */
  async function backup(dataDir: string, vm: string): Promise<string> {
    const r = await cli(['--data', dataDir, '--json', 'backup', vm]);
    expect(r.code, r.stderr).toBe(0);
    return (JSON.parse(r.stdout) as { jobId: string }).jobId;
  }

  it('transfer: a repository refusing chunk writes fails the job in phase transfer, no restore point appears, and the next backup still has its changes', async () => {
    const dataDir = await h.tmpDir('cairn-e2e-fail-');
    const vm = await startDemoVm(join(dataDir, 'demo'), 'demo', 32 * 1024 * 1024);
    h.onClose(() => vm.stop());
    let refuseChunks = false;
    const stack = await startStack({
      dataDir, qemu: [{ qmpSocket: vm.qmpPath }],
      wrapBackend: (b) => faultyBackend(b, (key) => refuseChunks && key.startsWith(CHUNKS)),
    });
    h.onClose(() => stack.stop());
    const catalogue = new CatalogueClient(stack.nc, { site: stack.site });
    await waitFor(async () => (await catalogue.query('vm.list', {})).items.some((v) => v.name === 'demo'), { what: 'demo VM in the catalogue' });

    // A healthy first backup, so the failing one is an incremental with a parent.
    await vm.write(10);
    const first = await waitForJobEnd(catalogue, await backup(dataDir, 'demo'));
    expect(first.state, JSON.stringify(first.failure)).toBe('completed');

    // Changes, then a backup while the repository refuses every chunk.
    await vm.write(15);
    refuseChunks = true;
    const failedId = await backup(dataDir, 'demo');
    const failed = await waitForJobEnd(catalogue, failedId, 180_000);
    expect(failed.state).toBe('failed');
    expect(failed.failure?.phase).toBe('transfer');
    expect(failed.failure?.reason).toMatch(/injected fault: .* refuses to store chunks\//);
    // Its snapshot is released after the failure.
    const released = await waitForJobEvent(catalogue, failedId, 'SnapshotReleased');
    const types = released.events.map((e) => e.type);
    // A permanent backend error is not worth a second delivery: one attempt, then the failure.
    expect(types.filter((t) => t === 'TransferStarted')).toHaveLength(1);
    expect(failed.failure?.reason).not.toMatch(/after \d+ attempts/);
    expect(types).not.toContain('RestorePointCommitted');
    expect(types.indexOf('SnapshotReleased')).toBeGreaterThan(types.indexOf('JobFailed'));
    const jobFailed = released.events.find((e) => e.type === 'JobFailed')!;
    expect(jobFailed.data).toMatchObject({ phase: 'transfer' });
    expect(released.events.filter((e) => e.type === 'JobFailed')).toHaveLength(1);
    // Nothing of it is visible in the repository.
    const points = await stack.repository.listRestorePoints();
    expect(points.filter((p) => p.labels?.['jobId'] === failedId)).toEqual([]);
    expect(points).toHaveLength(1);

    // The repository heals; more changes; the next backup holds both sets of changes.
    refuseChunks = false;
    await vm.write(10);
    const nextId = await backup(dataDir, 'demo');
    const next = await waitForJobEnd(catalogue, nextId);
    expect(next.state, JSON.stringify(next.failure)).toBe('completed');
    const target = join(dataDir, 'restores', 'after-failure.raw');
    const r = await cli(['--data', dataDir, 'restore', next.restorePointId!, '--to', target]);
    expect(r.code, r.stderr).toBe(0);
    const check = await checkRestoredDemoImage(target, vm.writes);
    expect(check, check.reason).toMatchObject({ ok: true, prefix: vm.writes.length });
  }, 300_000);

  it('snapshot: backing up a VM whose QEMU was killed fails the job in phase snapshot with a reason', async () => {
    const dataDir = await h.tmpDir('cairn-e2e-fail-');
    const vm = await startDemoVm(join(dataDir, 'demo'), 'demo', 16 * 1024 * 1024);
    let killed = false;
    // A dead QEMU cannot be asked to quit (that would wait for its QMP timeout).
    h.onClose(() => (killed ? undefined : vm.stop()));
    const stack = await startStack({ dataDir, qemu: [{ qmpSocket: vm.qmpPath }] });
    h.onClose(() => stack.stop());
    const catalogue = new CatalogueClient(stack.nc, { site: stack.site });
    await waitFor(async () => (await catalogue.query('vm.list', {})).items.some((v) => v.name === 'demo'), { what: 'demo VM in the catalogue' });

    const pids = await pidsOf(vm.qmpPath);
    expect(pids).toHaveLength(1);
    process.kill(pids[0]!, 'SIGKILL');
    killed = true;
    await waitFor(async () => (await pidsOf(vm.qmpPath)).length === 0, { what: 'QEMU gone' });

    // `backup --wait` and `job watch` of the failed job exit 6 (the README's "job failed").
    const waited = await cli(['--data', dataDir, '--json', 'backup', 'demo', '--wait', '--timeout', '180'], {}, 240_000);
    expect(waited.code, waited.stdout + waited.stderr).toBe(6);
    const jobId = (JSON.parse(waited.stdout) as { jobId: string; state: string }).jobId;
    expect((JSON.parse(waited.stdout) as { state: string }).state).toBe('failed');
    const watched = await cli(['--data', dataDir, 'job', 'watch', jobId]);
    expect(watched.code, watched.stdout + watched.stderr).toBe(6);
    expect(watched.stdout).toMatch(/failed in snapshot/);
    const failed = await waitForJobEnd(catalogue, jobId, 180_000);
    expect(failed.state).toBe('failed');
    expect(failed.failure?.phase).toBe('snapshot');
    expect(failed.failure?.reason.length).toBeGreaterThan(0);
    const types = failed.events.map((e) => e.type);
    expect(types).toContain('JobStarted'); // which asked for the snapshot
    expect(types).not.toContain('TransferQueued');
    expect(types.filter((t) => t === 'JobFailed')).toHaveLength(1);
    expect(await stack.repository.listRestorePoints()).toEqual([]);
  }, 300_000);
});
