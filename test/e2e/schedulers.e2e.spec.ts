// Two scheduler replicas as separate processes (real NATS, real QEMU): every due slot of a
// policy becomes exactly one job, and when the active one is SIGKILLed in the middle of a job
// the standby takes the lease, finishes that job once, and schedules the later slots.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Kvm } from '@nats-io/kv';
import { useHarness, waitFor } from '@cairn/testing';
import { CatalogueClient, type JobView } from '@cairn/catalogue-client';
import { startDemoVm, startStack } from '@cairn/cli';
import { cli, interceptPuts, jobsWhere, runService, waitForJobEnd, type ServiceProcess } from './e2e-helpers.ts';

// This file's policies run every few seconds: allow it (a site's default minimum is 5 min), in this
// process and the `cairn` processes it starts.
process.env['CAIRN_MIN_SCHEDULE_INTERVAL_MS'] = '1000';

const SLOT_MS = 10_000;

describe('two schedulers (real NATS, real QEMU)', () => {
  const h = useHarness();

  it('one job per slot; the active scheduler SIGKILLed mid-job: the other finishes the job once and schedules the next slots', async () => {
    const dataDir = await h.tmpDir('cairn-e2e-sched-');
    const vm = await startDemoVm(join(dataDir, 'demo'), 'demo', 32 * 1024 * 1024);
    h.onClose(() => vm.stop());
    // Every commit takes a moment, so a job is surely still running when its scheduler dies.
    const stack = await startStack({
      dataDir, qemu: [{ qmpSocket: vm.qmpPath }], without: ['scheduler'],
      wrapBackend: (b) => interceptPuts(b, (key) => key.startsWith('restore-points/') ? new Promise((r) => setTimeout(r, 3000)) : undefined),
    });
    h.onClose(() => stack.stop());
    const catalogue = new CatalogueClient(stack.nc, { site: stack.site });
    const schedulers = new Map<string, ServiceProcess>();
    for (const name of ['s1', 's2']) {
      const s = runService(name, ['--nats', stack.natsUrl, '--site', stack.site, '--data', join(dataDir, name), 'run', 'scheduler', '--lease-ms', '2000', '--instance', name]);
      h.onClose(async () => { s.kill(); await s.exited; });
      schedulers.set(name, s);
    }
    await Promise.all([...schedulers.values()].map((s) => s.ready));
    await waitFor(async () => (await catalogue.query('vm.list', {})).items.some((v) => v.name === 'demo'), { what: 'demo VM in the catalogue' });
    const leases = await new Kvm(stack.nc).open(`cairn_leases_${stack.site}`);
    const holder = async () => {
      const e = await leases.get('scheduler');
      return e && e.operation === 'PUT' ? (e.json<{ holder: string }>()).holder : undefined;
    };
    await waitFor(holder, { what: 'a scheduler holding the lease' });

    vm.startWriting(100);
    const created = await cli(['--data', dataDir, '--json', 'policy', 'create', '--name', 'often', '--vm', 'demo', '--cron', '*/10 * * * * *', '--timezone', 'UTC', '--keep-last', '20']);
    expect(created.code, created.stderr).toBe(0);
    const { policyId } = JSON.parse(created.stdout) as { policyId: string };
    const ofPolicy = (j: JobView) => j.policyId === policyId;

    // The first job that has started: kill the scheduler holding the lease, at once.
    const victimJob = await waitFor(async () => (await jobsWhere(catalogue, (j) => ofPolicy(j) && j.state === 'running'))[0],
      { timeoutMs: 90_000, intervalMs: 100, what: 'a scheduled job running' });
    const killedName = (await holder())!;
    const killed = schedulers.get(killedName)!;
    const survivor = [...schedulers.values()].find((s) => s !== killed)!;
    killed.kill('SIGKILL');
    const killedAt = new Date().toISOString();
    await killed.exited;
    const atKill = await catalogue.query('job.get', { jobId: victimJob.jobId });
    expect(atKill.state, 'the job ended before its scheduler died').toBe('running');

    // The survivor takes the lease and the job ends once (completed, or failed with a reason).
    await waitFor(async () => (await holder()) === survivor.name, { timeoutMs: 30_000, what: `${survivor.name} to take the lease` });
    const ended = await waitForJobEnd(catalogue, victimJob.jobId);
    if (ended.state === 'failed') expect(ended.failure?.reason.length).toBeGreaterThan(0);
    else expect(ended.state).toBe('completed');
    const endEvent = ended.events.find((e) => e.type === 'JobCompleted' || e.type === 'JobFailed')!;
    expect(endEvent.time > killedAt, 'the job ended after its scheduler was killed').toBe(true);

    // A later slot, requested after the takeover, runs to the end under the survivor.
    const later = await waitFor(async () => (await jobsWhere(catalogue, (j) => ofPolicy(j) && j.requestedAt > killedAt && j.state === 'completed'))[0],
      { timeoutMs: 90_000, intervalMs: 250, what: 'a later slot completed by the survivor' });
    expect(later.trigger).toBe('schedule');
    expect(await holder()).toBe(survivor.name);
    await vm.stopWriting();

    // Exactly one job per slot, and no slot between the first and the last went missing.
    const jobs = await jobsWhere(catalogue, ofPolicy);
    const bySlot = new Map<string, JobView[]>();
    for (const j of jobs) bySlot.set(j.slot!, [...(bySlot.get(j.slot!) ?? []), j]);
    for (const [slot, js] of bySlot) expect(js, `slot ${slot}`).toHaveLength(1);
    const slots = [...bySlot.keys()].map(Date.parse).sort((a, b) => a - b);
    for (let i = 1; i < slots.length; i++) expect(slots[i]! - slots[i - 1]!, `slot after ${new Date(slots[i - 1]!).toISOString()} missing`).toBe(SLOT_MS);

    // The job that lost its scheduler happened once: one start, one end, at most one restore point.
    const victim = await catalogue.query('job.get', { jobId: victimJob.jobId });
    const count = (t: string) => victim.events.filter((e) => e.type === t).length;
    expect(count('JobRequested')).toBe(1);
    expect(count('JobStarted')).toBe(1);
    expect(count('JobCompleted') + count('JobFailed')).toBe(1);
    expect(count('RestorePointCommitted')).toBeLessThanOrEqual(1);
    const points = (await stack.repository.listRestorePoints()).filter((p) => p.labels?.['jobId'] === victimJob.jobId);
    expect(points).toHaveLength(victim.state === 'completed' ? 1 : 0);
  }, 300_000);
});
