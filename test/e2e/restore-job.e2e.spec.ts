// Restore as a job (issue 13), with two data movers as separate processes on real NATS: the
// mover that took the restore is SIGKILLed in the middle of it; JetStream redelivers the work
// to the other, which follows the recorded plan and completes. The restored file is byte-identical
// to the disk, nothing ever appears under the target name before the job completes, no
// temporary file is left, and `cairn job watch` follows the job to its end with progress; the
// API shows the job and refuses a second restore onto the same file with its reason; both are
// listed as restore jobs beside the backups (GET /v1/jobs, `cairn job list`).
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { progressSubject, type KnownEvent } from '@cairn/contracts';
import { useHarness, waitFor } from '@cairn/testing';
import { startStack } from '@cairn/cli';
import { CAIRN, cli, gatewayCall, ROOT, runService, sha256, type ServiceProcess } from './e2e-helpers.ts';

const MiB = 1024 * 1024;
const RANDOM_BYTES = 96 * MiB;
const DISK_BYTES = 128 * MiB; // the last 32 MiB are zeros: holes in the restored file
/** Read rate of each mover from the repository: the restore takes seconds, so it can be killed midway. */
const DOWNLOAD_LIMIT = 12 * MiB;

describe('restore job (real NATS, two movers as processes)', () => {
  const h = useHarness();

  it('a mover SIGKILLed mid-restore: redelivered, completed byte-identical, no half-written file under the target name', async () => {
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
      ], { CAIRN_REPO_PASSPHRASE: stack.passphrase, CAIRN_RESTORE_ROOTS: join(dataDir, 'restores') });
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
    const restoreId = randomUUID();
    // `cairn job watch` follows the job from before it exists (progress lines go to stderr when not a terminal).
    const watch = spawn(process.execPath, [CAIRN, '--data', dataDir, 'job', 'watch', restoreId], { cwd: ROOT, env: { ...process.env, CAIRN_LOG_LEVEL: 'warn' } });
    h.onClose(() => { if (watch.exitCode === null) watch.kill('SIGKILL'); });
    let watchOut = ''; let watchErr = '';
    watch.stdout.setEncoding('utf8').on('data', (d: string) => { watchOut += d; });
    watch.stderr.setEncoding('utf8').on('data', (d: string) => { watchErr += d; });
    const watchExit = new Promise<number>((res) => watch.once('close', (code) => res(code ?? -1)));

    await waitFor(() => /waiting for job/.test(watchErr) || undefined, { timeoutMs: 90_000, intervalMs: 50, what: '`cairn job watch` to start' });
    const r = await cli(['--data', dataDir, '--json', 'restore', restorePointId, '--disk', 'disk0', '--to', target, '--no-wait', '--id', restoreId]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ restoreId });
    const ofJob = () => events.filter((e) => e.streamId === `restore-${restoreId}`);

    // Watch the target name the whole time: the first file that appears under it must already be
    // the whole disk (renamed into place at the end), and stay the same file to the end.
    let first: { ino: number; sha: string; beforeEnd: boolean } | undefined;
    let watching = true;
    const watcher = (async () => {
      while (!first) {
        // Told to stop: one last look (the file may have appeared while this loop slept).
        const last = !watching;
        const ended = ofJob().some((e) => e.type === 'RestoreCompleted' || e.type === 'RestoreFailed');
        const st = await stat(target).catch(() => undefined);
        if (st) first = { ino: st.ino, sha: await sha256(target), beforeEnd: !ended };
        else if (last) break;
        else await new Promise((res) => setTimeout(res, 20));
      }
    })();
    const progress: Array<{ worker: string; bytesDone: number; bytesPlanned: number }> = [];
    const progressSub = stack.nc.subscribe(progressSubject(stack.site, restoreId));
    h.onClose(() => progressSub.unsubscribe());
    void (async () => { for await (const m of progressSub) progress.push(m.json()); })();

    const started = await waitFor(() => ofJob().find((e) => e.type === 'RestoreStarted'), { timeoutMs: 90_000, intervalMs: 20, what: 'RestoreStarted' })
      .catch((e: Error) => { throw new Error(`${e.message}; job events: ${JSON.stringify(ofJob().map((x) => [x.type, x.data]))}; movers: ${movers.map((m) => m.output().slice(-3000)).join('\n---\n')}`); });
    const worker = (started.data as { worker: string }).worker;
    const victim = movers.find((m) => worker.startsWith(`data-mover@${m.pid}-`));
    expect(victim, `no mover has the pid of ${worker}`).toBeDefined();
    await waitFor(() => progress.some((p) => p.worker === worker && p.bytesDone > 0 && p.bytesDone < p.bytesPlanned), { timeoutMs: 60_000, intervalMs: 10, what: `progress from ${worker}` });
    await waitFor(() => /following restore/.test(watchErr) || undefined, { timeoutMs: 60_000, intervalMs: 50, what: '`cairn job watch` to follow the job' });
    victim!.kill('SIGKILL');
    await victim!.exited;
    expect(ofJob().map((e) => e.type), 'the restore ended before its mover died').not.toContain('DiskRestored');
    expect(await stat(target).then(() => true, () => false), 'a half-written file under the target name').toBe(false);

    const end = await waitFor(() => ofJob().find((e) => e.type === 'RestoreCompleted' || e.type === 'RestoreFailed'), { timeoutMs: 240_000, intervalMs: 100, what: 'the restore to end' });
    watching = false;
    await watcher;
    expect(end.type, JSON.stringify(end.data)).toBe('RestoreCompleted');
    expect(first, 'the target never appeared').toBeDefined();
    expect(first!.sha, 'a half-written file appeared under the target name').toBe(await sha256(reference));
    expect((await stat(target)).ino, 'the file under the target name was replaced').toBe(first!.ino);

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

    expect(await watchExit, watchErr).toBe(0);
    expect(watchOut).toContain(`restored disk0 of ${restorePointId} to ${target}`);
    expect(watchErr).toMatch(/disk0 \[[#-]{20}\]/);

    // The API shows the job, and a refused one: its reason, and the existing file untouched.
    const api = (method: 'GET' | 'POST', path: string, body?: unknown) => gatewayCall(stack.gatewayUrl, stack.gatewayToken, method, path, body);
    const view = await api('GET', `/v1/restore-jobs/${restoreId}`);
    expect(view.status).toBe(200);
    expect(view.body).toMatchObject({ restoreId, state: 'completed', restorePointId, path: target, sizeBytes: DISK_BYTES, attempts: starts.length, source: 'local' });
    const posted = await api('POST', '/v1/restore-jobs', { restorePointId, target: { kind: 'file', disk: 'disk0', path: target, format: 'raw', overwrite: false } });
    expect(posted.status, JSON.stringify(posted.body)).toBe(202);
    const refused = await waitFor(async () => {
      const r = await api('GET', posted.body['href'] as string);
      return r.body['state'] === 'failed' ? r.body : undefined;
    }, { timeoutMs: 60_000, what: 'the second restore to be refused' });
    expect(refused['failure']).toMatchObject({ code: 'conflict', reason: expect.stringMatching(/exists/) });
    expect(await sha256(target)).toBe(await sha256(reference));
    expect((await api('GET', '/v1/restore-jobs/no-such-job')).status).toBe(404);

    // Both are jobs beside the backups in the catalogue: GET /v1/jobs and `cairn job list` (kind restore).
    const refusedId = posted.body['restoreId'] as string;
    type Listed = { jobId: string; kind: string; state: string; restorePointId: string | null; failure: { reason: string } | null };
    const listed = await waitFor(async () => {
      const r = await api('GET', '/v1/jobs?kind=restore');
      const items = (r.body['items'] ?? []) as Listed[];
      const ended = (id: string, state: string) => items.some((j) => j.jobId === id && j.state === state);
      return ended(restoreId, 'completed') && ended(refusedId, 'failed') ? items : undefined;
    }, { timeoutMs: 60_000, what: 'both restore jobs in GET /v1/jobs' });
    expect(listed.every((j) => j.kind === 'restore')).toBe(true);
    expect(listed.find((j) => j.jobId === refusedId)!.failure!.reason).toMatch(/exists/);
    const list = await cli(['--data', dataDir, '--json', 'job', 'list', '--kind', 'restore']);
    expect(list.code, list.stderr).toBe(0);
    expect(JSON.parse(list.stdout) as Listed[]).toEqual(expect.arrayContaining([expect.objectContaining({ jobId: restoreId, kind: 'restore', state: 'completed', restorePointId })]));
    const table = await cli(['--data', dataDir, 'job', 'list']);
    expect(table.stdout).toMatch(new RegExp(`${restoreId}\\s+restore\\s`));
  }, 400_000);
});
