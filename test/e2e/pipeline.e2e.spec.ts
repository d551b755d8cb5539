// The product path end to end, with real NATS and real QEMU: a policy created through the
// CLI backs up a live VM on schedule, full then incremental; both restore points restore to
// exactly the disk at their snapshot instants; the log shows every phase; bad input is refused.
import { access, readdir, writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useHarness, waitFor } from '@cairn/testing';
import { CatalogueClient } from '@cairn/catalogue-client';
import { startDemoVm, startStack, DEMO_BLOCK } from '@cairn/cli';
import { checkRestoredDemoImage, cli, jobsWhere } from './e2e-helpers.ts';

// This file's policies run every few seconds: allow it (a site's default minimum is 5 min), in this
// process and the `cairn` processes it starts.
process.env['CAIRN_MIN_SCHEDULE_INTERVAL_MS'] = '1000';

const PHASES = ['JobRequested', 'JobStarted', 'SnapshotTaken', 'TransferQueued', 'TransferStarted', 'RestorePointCommitted', 'SnapshotReleased', 'JobCompleted'];

describe('backup pipeline (real NATS, real QEMU)', () => {
  const h = useHarness();

  it('a CLI policy backs up the running VM on schedule, full then incremental, and each restore point restores exactly', async () => {
    const dataDir = await h.tmpDir('cairn-e2e-');
    const vm = await startDemoVm(join(dataDir, 'demo'), 'demo', 32 * 1024 * 1024);
    h.onClose(() => vm.stop());
    const stack = await startStack({ dataDir, qemu: [{ qmpSocket: vm.qmpPath }] });
    h.onClose(() => stack.stop());
    const catalogue = new CatalogueClient(stack.nc, { site: stack.site });
    await waitFor(async () => (await catalogue.query('vm.list', {})).items.some((v) => v.name === 'demo'), { what: 'demo VM in the catalogue' });
    const args = ['--data', dataDir];

    // Bad input first: each refused with a clear message, nothing created.
    const badCron = await cli([...args, 'policy', 'create', '--name', 'x', '--vm', 'demo', '--cron', '61 * * * *', '--timezone', 'UTC']);
    expect(badCron.code).toBe(2);
    expect(badCron.stderr).toMatch(/cron "61 \* \* \* \*" is invalid/);
    const badRepo = await cli([...args, 'policy', 'create', '--name', 'x', '--vm', 'demo', '--cron', '0 2 * * *', '--timezone', 'UTC', '--repository', 'offsite']);
    expect(badRepo.code).toBe(2);
    expect(badRepo.stderr).toMatch(/repository "offsite" does not exist/);
    const badTz = await cli([...args, 'policy', 'create', '--name', 'x', '--vm', 'demo', '--cron', '0 2 * * *', '--timezone', 'Mars/Olympus']);
    expect(badTz.stderr).toMatch(/not an IANA time zone/);
    const unknownVm = await cli([...args, 'backup', 'no-such-vm']);
    expect(unknownVm.code).toBe(3);
    expect(unknownVm.stderr).toMatch(/unknown VM "no-such-vm"/);
    expect((await catalogue.query('policy.list', {})).items).toHaveLength(0);
    expect((await catalogue.query('job.list', {})).items).toHaveLength(0);

    // The workload writes all along; a policy every 12 s.
    vm.startWriting(100);
    const created = await cli([...args, '--json', 'policy', 'create', '--name', 'often', '--vm', 'demo', '--cron', '*/12 * * * * *', '--timezone', 'UTC', '--keep-last', '10']);
    expect(created.code, created.stderr).toBe(0);
    const { policyId } = JSON.parse(created.stdout) as { policyId: string };

    const done = await waitFor(async () => {
      const jobs = await jobsWhere(catalogue, (j) => j.policyId === policyId && j.state === 'completed');
      return jobs.length >= 2 ? jobs.sort((a, b) => a.requestedAt.localeCompare(b.requestedAt)).slice(0, 2) : undefined;
    }, { timeoutMs: 120_000, intervalMs: 500, what: 'two scheduled backups' });
    await vm.stopWriting();

    const [first, second] = done as [typeof done[0], typeof done[0]];
    expect(first.trigger).toBe('schedule');
    const rp1 = await catalogue.query('restorePoint.get', { restorePointId: first.restorePointId! });
    const rp2 = await catalogue.query('restorePoint.get', { restorePointId: second.restorePointId! });
    expect(rp1.kind).toBe('full');
    expect(rp2.kind).toBe('incremental');
    expect(rp2.parentId).toBe(rp1.restorePointId);
    // The incremental read only what the workload wrote in between (64 KiB blocks), not the disk.
    const job2 = await catalogue.query('job.get', { jobId: second.jobId });
    const taken = job2.events.find((e) => e.type === 'SnapshotTaken')!.data as { nbd: { exports: Array<{ mode: string }> } };
    expect(taken.nbd.exports[0]!.mode).toBe('incremental');
    const writesBetween = vm.writes.length; // an upper bound on distinct blocks dirtied
    expect(rp2.bytesRead).toBeGreaterThan(0);
    expect(rp2.bytesRead).toBeLessThanOrEqual(writesBetween * DEMO_BLOCK);
    expect(rp2.bytesRead).toBeLessThan(rp1.bytesRead);

    // Each restore point restores to the disk exactly at its snapshot instant.
    let lastPrefix = -1;
    for (const rp of [rp1, rp2]) {
      const target = join(dataDir, 'restores', `${rp.restorePointId}.raw`);
      const r = await cli([...args, 'restore', rp.restorePointId, '--to', target]);
      expect(r.code, r.stderr).toBe(0);
      const check = await checkRestoredDemoImage(target, vm.writes);
      expect(check, `${rp.restorePointId} (${rp.kind}): ${check.reason}`).toMatchObject({ ok: true });
      expect(check.prefix!).toBeGreaterThan(lastPrefix);
      lastPrefix = check.prefix!;
    }


    // Restore onto an existing file without --force: refused, file untouched.
    const existing = join(dataDir, 'keep.raw');
    await writeFile(existing, 'precious');
    const clobber = await cli([...args, 'restore', rp1.restorePointId, '--to', existing]);
    expect(clobber.code).toBe(4);
    expect(clobber.stderr).toMatch(/exists; nothing was changed/);
    expect(await readFile(existing, 'utf8')).toBe('precious');

    // Every phase is in the job's stream with actor, correlation and causation.
    for (const job of [first, second]) {
      const detail = await catalogue.query('job.get', { jobId: job.jobId });
      const types = detail.events.map((e) => e.type);
      for (const p of PHASES) expect(types, `${job.jobId} lacks ${p}`).toContain(p);
      for (const e of detail.events) {
        expect(e.correlationId).toBe(job.jobId);
        expect(e.actor.id.length).toBeGreaterThan(0);
        if (e.type !== 'JobRequested') expect(e.causationId, `${e.type} has no causation`).toBeTruthy();
      }
      const ids = new Set(detail.events.map((e) => e.eventId));
      for (const e of detail.events) if (e.causationId && e.type !== 'JobRequested') expect(ids.has(e.causationId) || e.causationId.length > 0).toBe(true);
    }

    // The audit trail names who did what, and its hash chain is intact.
    const byOperator = await cli([...args, '--json', 'audit', '--type', 'PolicyCreated']);
    expect(byOperator.code, byOperator.stderr).toBe(0);
    expect(JSON.parse(byOperator.stdout)).toEqual([expect.objectContaining({ type: 'PolicyCreated', actor: expect.objectContaining({ kind: 'user' }) })]);
    const verified = await waitFor(async () => {
      const r = await cli([...args, '--json', 'audit', 'verify']);
      const v = JSON.parse(r.stdout || '{}') as { ok?: boolean; count?: number };
      return r.code === 0 && v.ok && (v.count ?? 0) > 20 ? v : undefined;
    }, { timeoutMs: 60_000, intervalMs: 1000, what: 'an intact audit chain over the jobs' });
    expect(verified.ok).toBe(true);

    // The catalogue dropped and rebuilt from the log answers as before.
    const before = await catalogue.query('job.list', { limit: 500 });
    const rebuilt = await cli([...args, 'catalogue', 'rebuild']);
    expect(rebuilt.code, rebuilt.stderr).toBe(0);
    const after = await catalogue.query('job.list', { limit: 500 });
    const settled = (l: typeof before) => l.items.filter((j) => ['completed', 'failed'].includes(j.state) && j.requestedAt <= second.requestedAt);
    expect(settled(after)).toEqual(settled(before));
  }, 300_000);

  it('`cairn up --demo --once` on a fresh data directory backs up the demo VM and proves the restore', async () => {
    const dataDir = await h.tmpDir('cairn-up-');
    const r = await cli(['--data', dataDir, 'up', '--demo', '--once'], {}, 300_000);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    // Labelled by order; the kind after the job says what each was (fresh directory: full, then incremental).
    expect(r.stdout).toMatch(/backup {2}first +job .*: full,/);
    expect(r.stdout).toMatch(/backup {2}second +job .*: incremental,/);
    expect(r.stdout).toMatch(/verify {2}the restored disk is the VM's disk at the snapshot instant/);
    // The restored copy that proved it is not left behind.
    expect(await readdir(join(dataDir, 'restores'))).toEqual([]);
    // It stopped cleanly: the state file other commands would find is gone.
    await expect(access(join(dataDir, 'stack.json'))).rejects.toThrow();
  }, 300_000);
});
