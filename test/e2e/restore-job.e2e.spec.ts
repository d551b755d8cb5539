// Restore as a job (issue 13), with two data movers as separate processes on real NATS: the
// mover that took the restore is SIGKILLed in the middle of it; JetStream redelivers the work
// to the other, which follows the recorded plan and completes. The restored file is byte-identical
// to the disk, nothing ever appears under the target name before the job completes, no
// temporary file is left, and `cairn job watch` follows the job to its end with progress.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { progressSubject, type KnownEvent } from '@cairn/contracts';
import { useHarness, waitFor } from '@cairn/testing';
import { startStack } from '@cairn/cli';
import { cli, runService, type ServiceProcess } from './e2e-helpers.ts';

const MiB = 1024 * 1024;
const RANDOM_BYTES = 96 * MiB;
const DISK_BYTES = 128 * MiB; // the last 32 MiB are zeros: holes in the restored file
/** Read rate of each mover from the repository: the restore takes seconds, so it can be killed midway. */
const DOWNLOAD_LIMIT = 12 * MiB;

async function sha256(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const b of createReadStream(file)) h.update(b as Buffer);
  return h.digest('hex');
}

describe('restore job (real NATS, two movers as processes)', () => {
  const h = useHarness();

  it('a mover SIGKILLed mid-restore: redelivered, completed byte-identical, nothing under the target name before the end', async () => {
    const dataDir = await h.tmpDir('cairn-e2e-restore-job-');
    const stack = await startStack({ dataDir, without: ['data-mover'] });
    h.onClose(() => stack.stop());
    const image = Buffer.alloc(DISK_BYTES);
    randomBytes(RANDOM_BYTES).copy(image, 0);
    const reference = join(dataDir, 'reference.raw');
    await writeFile(reference, image);
    const cs = stack.repository.chunkSize;
    const extents = [];
    for (let off = 0; off < RANDOM_BYTES; off += cs) extents.push({ offset: off, data: image.subarray(off, Math.min(off + cs, DISK_BYTES)) });
    const { restorePointId } = await stack.repository.writeRestorePoint({ vm: { id: 'vm-r', name: 'restore-me' }, disks: [{ name: 'disk0', sizeBytes: DISK_BYTES, extents }] });

    const movers: ServiceProcess[] = [];
    for (const name of ['m1', 'm2']) {
      const m = runService(name, [
        '--nats', stack.natsUrl, '--site', stack.site, '--data', join(dataDir, name),
        'run', 'data-mover', '--repo', join(dataDir, 'repository'), '--ack-wait-ms', '3000', '--download-limit', String(DOWNLOAD_LIMIT),
      ], { CAIRN_REPO_PASSPHRASE: stack.passphrase });
      h.onClose(async () => { m.kill(); await m.exited; });
      movers.push(m);
    }
    await Promise.all(movers.map((m) => m.ready));

    const events: KnownEvent[] = [];
    const sub = stack.log.subscribe({ from: 'end', category: 'restore' });
    h.onClose(() => sub.stop());
    void (async () => { for await (const r of sub) events.push(r.event); })();

    const outDir = join(dataDir, 'restores');
    const target = join(outDir, 'disk0.raw');
    const r = await cli(['--data', dataDir, '--json', 'restore', restorePointId, '--disk', 'disk0', '--to', target, '--no-wait']);
    expect(r.code, r.stderr).toBe(0);
    const { restoreId } = JSON.parse(r.stdout) as { restoreId: string };
    const ofJob = () => events.filter((e) => e.streamId === `restore-${restoreId}`);

    // Watch the target name the whole time: it must not exist before RestoreCompleted.
    const seenEarly: string[] = [];
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const done = ofJob().some((e) => e.type === 'RestoreCompleted' || e.type === 'RestoreFailed');
        const exists = await stat(target).then(() => true, () => false);
        if (exists && !done && !ofJob().some((e) => e.type === 'RestoreCompleted')) seenEarly.push(new Date().toISOString());
        if (done) return;
        await new Promise((res) => setTimeout(res, 20));
      }
    })();
    // `cairn job watch` follows it from the start (its progress lines go to stderr when not a terminal).
    const watch = cli(['--data', dataDir, 'job', 'watch', restoreId], {}, 300_000);

    const progress: Array<{ worker: string; bytesDone: number; bytesPlanned: number }> = [];
    const progressSub = stack.nc.subscribe(progressSubject(stack.site, restoreId));
    h.onClose(() => progressSub.unsubscribe());
    void (async () => { for await (const m of progressSub) progress.push(m.json()); })();

    const started = await waitFor(() => ofJob().find((e) => e.type === 'RestoreStarted'), { timeoutMs: 90_000, intervalMs: 20, what: 'RestoreStarted' });
    const worker = (started.data as { worker: string }).worker;
    const victim = movers.find((m) => worker.startsWith(`data-mover@${m.pid}-`));
    expect(victim, `no mover has the pid of ${worker}`).toBeDefined();
    await waitFor(() => progress.some((p) => p.worker === worker && p.bytesDone > 0 && p.bytesDone < p.bytesPlanned), { timeoutMs: 60_000, intervalMs: 10, what: `progress from ${worker}` });
    victim!.kill('SIGKILL');
    await victim!.exited;
    expect(ofJob().map((e) => e.type), 'the restore ended before its mover died').not.toContain('DiskRestored');
    expect(await stat(target).then(() => true, () => false), 'a half-written file under the target name').toBe(false);

    const end = await waitFor(() => ofJob().find((e) => e.type === 'RestoreCompleted' || e.type === 'RestoreFailed'), { timeoutMs: 240_000, intervalMs: 100, what: 'the restore to end' });
    watching = false;
    await watcher;
    expect(end.type, JSON.stringify(end.data)).toBe('RestoreCompleted');
    expect(seenEarly, 'the target name existed before the job completed').toEqual([]);

    const starts = ofJob().filter((e) => e.type === 'RestoreStarted').map((e) => e.data as { worker: string; attempt: number; disks: Array<{ path: string; partialPath: string }> });
    expect(starts.length).toBeGreaterThanOrEqual(2);
    expect(starts[0]!.worker).toBe(worker);
    const survivor = movers.find((m) => m !== victim)!;
    expect(starts.at(-1)!.worker.startsWith(`data-mover@${survivor.pid}-`)).toBe(true);
    expect(starts.at(-1)!.attempt).toBe(starts.length);
    // The plan was decided once: every attempt wrote the same temporary file to the same target.
    expect(new Set(starts.map((s) => JSON.stringify(s.disks))).size).toBe(1);
    expect(ofJob().filter((e) => e.type === 'DiskRestored')).toHaveLength(1);
    expect(ofJob().some((e) => e.type === 'RestoreProgressed')).toBe(true);

    // Byte-identical, sparse where the disk is zero, and nothing else left in the directory.
    expect(await sha256(target)).toBe(await sha256(reference));
    const st = await stat(target);
    expect(st.size).toBe(DISK_BYTES);
    expect(st.blocks * 512).toBeLessThan(DISK_BYTES);
    expect(await readdir(outDir)).toEqual(['disk0.raw']);

    const w = await watch;
    expect(w.code, w.stderr).toBe(0);
    expect(w.stdout).toContain(`restored disk0 of ${restorePointId} to ${target}`);
    expect(w.stderr).toMatch(/disk0 \[[#-]{20}\]/);
  }, 400_000);
});
