// Bandwidth limits on real transfers (issue 21): qemu-nbd serving a 32 MiB disk, read by
// runTransfer into a directory repository. Lower bounds only (a loaded machine is slower,
// never faster): a transfer limited to 20 MiB/s takes at least its bytes ÷ 20 MiB/s; two jobs
// on one host with a 20 MiB/s host limit take at least their bytes together ÷ 20 MiB/s (each
// alone would be allowed 20 MiB/s); a restore pays for every chunk it writes, and a restore
// job asked for with its own 20 MiB/s (RequestRestore bandwidthBytesPerSec) holds to it on a
// data mover with no host or site limit.
import { execFile, spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { useHarness, waitFor } from '@cairn/testing';
import { InMemoryEventLog } from '@cairn/eventlog';
import type { KnownEvent, RestoreWork } from '@cairn/contracts';
import { DirectoryBackend, initRepository, type Repository } from '@cairn/repository';
import { DataMover } from './data-mover.service.ts';
import { RestoreJobs } from './restore-job.ts';
import { runTransfer } from './transfer.ts';
import { TransferBandwidth } from './bandwidth.ts';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const LIMIT = 20 * MiB;
const SIZE = 32 * MiB;
/** setTimeout resolves whole milliseconds: the one rounding a bound may lose. */
const TIMER_MS = 5;

describe('bandwidth limits of transfers (real qemu-nbd)', () => {
  const h = useHarness();
  let dir: string;
  let socket: string;
  let repo: Repository;

  beforeAll(async () => {
    dir = await h.tmpDir();
    const image = join(dir, 'disk.qcow2');
    await run('qemu-img', ['create', '-f', 'qcow2', image, String(SIZE)]);
    await run('qemu-io', ['-f', 'qcow2', '-c', `write -P 0x5a 0 ${SIZE}`, image]);
    repo = await initRepository(new DirectoryBackend(join(dir, 'repo'), { createRoot: true }), { passphrase: 'pw', kdf: { N: 1024 } });
    h.onClose(() => repo.close());
    socket = join(dir, 'nbd.sock');
    const server = spawn('qemu-nbd', ['-r', '-f', 'qcow2', '-t', '-e', '8', '-x', 'disk0', '--socket', socket, image], { stdio: 'ignore' });
    h.onClose(() => server.kill('SIGKILL'));
    await waitFor(() => run('nbdinfo', [`nbd+unix:///disk0?socket=${socket}`]).then(() => true), { what: 'qemu-nbd' });
  }, 120_000);

  const transfer = (jobId: string, bandwidth: TransferBandwidth, jobLimit?: number) => {
    const throttle = bandwidth.forJob(jobLimit);
    return runTransfer({
      jobId, vm: { id: 'vm1', name: 'demo' }, mode: 'full', parent: null,
      nbd: { socket, exports: [{ disk: 'disk0', exportName: 'disk0', sizeBytes: SIZE, mode: 'full', reason: 'test' }] },
    }, { repository: repo, ...(throttle ? { throttle } : {}) });
  };

  it('a backup limited to 20 MiB/s takes at least its bytes ÷ 20 MiB/s', async () => {
    const t0 = performance.now();
    const r = await transfer('job-limited', new TransferBandwidth(), LIMIT);
    const ms = performance.now() - t0;
    expect(r.disks[0]!.bytesRead).toBe(SIZE);
    expect(ms).toBeGreaterThanOrEqual((SIZE / LIMIT) * 1000 - TIMER_MS);
  });

  it('two limited jobs on one host share the host limit', async () => {
    // Each job may go at 20 MiB/s; the host (this mover process) allows 20 MiB/s for both.
    const host = new TransferBandwidth({ hostBytesPerSec: LIMIT });
    const t0 = performance.now();
    const [a, b] = await Promise.all([transfer('job-a', host, LIMIT), transfer('job-b', host, LIMIT)]);
    const ms = performance.now() - t0;
    const bytes = a.disks[0]!.bytesRead + b.disks[0]!.bytesRead;
    expect(bytes).toBe(2 * SIZE);
    expect(ms).toBeGreaterThanOrEqual((bytes / LIMIT) * 1000 - TIMER_MS);
  });

  it('a restore under the host limit takes at least its written bytes ÷ the limit', async () => {
    const { restorePointId } = await transfer('job-restore-source', new TransferBandwidth());
    const throttle = new TransferBandwidth({ hostBytesPerSec: LIMIT }).forJob()!;
    let paid = 0;
    const t0 = performance.now();
    await repo.restoreDisk(restorePointId, 'disk0', join(dir, 'restored.raw'), { throttle: (n) => { paid += n; return throttle.take(n); } });
    const ms = performance.now() - t0;
    expect(paid).toBe(SIZE);
    expect(ms).toBeGreaterThanOrEqual((SIZE / LIMIT) * 1000 - TIMER_MS);
  });

  it('a restore job with its own 20 MiB/s limit takes at least its bytes ÷ 20 MiB/s, with no host or site limit', async () => {
    const { restorePointId } = await transfer('job-restore-job-source', new TransferBandwidth());
    const roots = join(dir, 'restores');
    await mkdir(roots, { recursive: true });
    const actor = { kind: 'service' as const, id: 'data-mover@t' };
    const log = new InMemoryEventLog('t');
    const mover = new DataMover({ site: 't', actor, restoreRoots: [roots], connections: 1 }, log, new Map([['default', repo]]), { publish: () => undefined });
    expect(mover.restoreThrottle()).toBeUndefined(); // nothing limits a job that asks for nothing here
    // A job's work counts as running while it runs (a scheduled verify waits for it), and not after.
    let during = -1;
    expect(await mover.whileBusy(async () => { during = mover.jobsRunning; return 'x'; })).toBe('x');
    expect([during, mover.jobsRunning]).toEqual([1, 0]);
    await expect(mover.whileBusy(async () => { throw new Error('boom'); })).rejects.toThrow('boom');
    expect(mover.jobsRunning).toBe(0);
    const queued: RestoreWork[] = [];
    const jobs = new RestoreJobs({ site: 't', actor, enqueue: async (w) => { queued.push(w); }, publishProgress: () => undefined }, log, mover,
      { info: () => undefined, warn: () => undefined });
    const { restoreId } = await jobs.request({
      restorePointId, target: { kind: 'file', disk: 'disk0', path: join(roots, 'limited.raw'), format: 'raw', overwrite: false }, bandwidthBytesPerSec: LIMIT,
    }, { kind: 'user', id: 'alice' }, false, 'cmd-limited');
    expect(queued[0]!.bandwidthBytesPerSec).toBe(LIMIT);
    const t0 = performance.now();
    expect(await jobs.run(queued[0]!, () => undefined)).toBe('completed');
    const ms = performance.now() - t0;
    const events: KnownEvent[] = [];
    for await (const r of log.readStream(`restore-${restoreId}`)) events.push(r.event);
    expect(events.find((e) => e.type === 'RestoreRequested')!.data).toMatchObject({ bandwidthBytesPerSec: LIMIT });
    expect(events.find((e) => e.type === 'DiskRestored')!.data).toMatchObject({ sizeBytes: SIZE });
    expect(ms).toBeGreaterThanOrEqual((SIZE / LIMIT) * 1000 - TIMER_MS);
  });
});
