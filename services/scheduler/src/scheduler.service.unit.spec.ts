// The scheduler's process manager over an in-memory log, with the coordinator and the data
// movers played by the test: phases in order, one job per slot, the per-host limit, phase
// timeouts, and retention.
import { describe, expect, it } from 'vitest';
import { newEvent, type Actor, type KnownEvent } from '@cairn/contracts';
import { InMemoryEventLog, activeTraceContext, handleCommand } from '@cairn/eventlog';
import { inSpan } from '@cairn/telemetry';
import { jobDecider, DEFAULT_TIMEOUTS, type TransferWork } from '@cairn/jobs';
import { schedulerConfig } from './scheduler.config.ts';
import { Scheduler, SchedulerRefusal, type SchedulerPorts } from './scheduler.service.ts';

const site = 'test';
const svc: Actor = { kind: 'service', id: 'fake' };
const user: Actor = { kind: 'user', id: 'alice' };

interface World {
  log: InMemoryEventLog;
  scheduler: Scheduler;
  calls: string[];
  work: TransferWork[];
  /** Every RequestSnapshot as the coordinator got it. */
  snapshots: Array<Parameters<SchedulerPorts['requestSnapshot']>[0]>;
  /** The trace active when each port was called (what the NATS adapters put in the headers). */
  portTraces: string[];
  now: { t: number };
  settle(): Promise<void>;
  jobEvents(jobId: string): Promise<KnownEvent[]>;
}

async function world(opts: { maxJobsPerHost?: number; maxJobsPerRepository?: number; snapshotOk?: boolean; snapshotTimeoutMs?: number } = {}): Promise<World> {
  const log = new InMemoryEventLog(site);
  const calls: string[] = [];
  const work: TransferWork[] = [];
  const snapshots: World['snapshots'] = [];
  const portTraces: string[] = [];
  const now = { t: Date.now() }; // events carry wall-clock times; the scheduler's clock moves on from there
  const append = async (streamId: string, type: string, data: unknown) => {
    await log.append(streamId, [newEvent(type as 'JobStarted', data as never, { site, actor: svc, streamId })], { expectedRevision: 'any' });
  };
  const ports: SchedulerPorts = {
    async requestSnapshot(input) {
      const { jobId, snapshotId } = input;
      snapshots.push(input);
      calls.push(`snapshot ${jobId}`);
      portTraces.push(`snapshot ${activeTraceContext()?.traceparent ?? 'none'}`);
      if (opts.snapshotOk === false) return; // the coordinator never answers with an event
      await append(`job-${jobId}`, 'SnapshotTaken', {
        jobId, snapshotId, nbd: { socket: '/x', exports: [{ disk: 'd0', exportName: 'e', sizeBytes: 1024, mode: 'full', reason: 'first' }] },
      });
    },
    async releaseSnapshot({ jobId, snapshotId, success }) {
      calls.push(`release ${jobId} ${success}`);
      await append(`job-${jobId}`, 'SnapshotReleased', { jobId, snapshotId, cause: 'job_ended' });
    },
    async enqueueTransfer(w) { work.push(w); calls.push(`transfer ${w.jobId}`); portTraces.push(`transfer ${activeTraceContext()?.traceparent ?? 'none'}`); },
  };
  // Every-minute policies below: the site allows them (the default minimum is 5 min).
  const config = schedulerConfig({ site, tickMs: 60_000, minScheduleIntervalMs: 60_000, retryBaseMs: 1, maxJobsPerHost: opts.maxJobsPerHost ?? 2, ...(opts.maxJobsPerRepository ? { maxJobsPerRepository: opts.maxJobsPerRepository } : {}), timeouts: { ...DEFAULT_TIMEOUTS, snapshot: opts.snapshotTimeoutMs ?? 600_000 } });
  const scheduler = new Scheduler(config, log, ports, () => new Date(now.t));
  for (const [vmId, host] of [['vm1', 'h1'], ['vm2', 'h1'], ['vm3', 'h2']] as const) {
    await append(`vm-${vmId}`, 'VmDiscovered', { vmId, name: vmId, hypervisor: { kind: 'qemu', host }, tags: ['prod'], disks: [{ name: 'd0', sizeBytes: 1024 }] });
  }
  await scheduler.start();
  scheduler.setLeader(true);
  const settle = async () => {
    for (let i = 0; i < 20; i++) {
      await new Promise((r) => setTimeout(r, 5));
      now.t += 10; // past the (1 ms) retry backoff
      for (const jobId of new Set(calls.map((c) => c.split(' ')[1]!))) await scheduler.drive(jobId);
    }
  };
  const jobEvents = async (jobId: string) => {
    const out: KnownEvent[] = [];
    for await (const r of log.readStream(`job-${jobId}`)) out.push(r.event);
    return out;
  };
  return { log, scheduler, calls, work, snapshots, portTraces, now, settle, jobEvents };
}

/** A data mover: commits the transfer it was given. */
async function commit(w: World, jobId: string, restorePointId: string) {
  await handleCommand(w.log, `job-${jobId}`, jobDecider, { kind: 'startTransfer', worker: 'm1' }, { meta: { site, actor: svc } });
  await handleCommand(w.log, `job-${jobId}`, jobDecider, {
    kind: 'commit',
    data: { restorePointId, jobId, vmId: 'vm1', parentId: null, disks: [{ name: 'd0', sizeBytes: 1024, bytesRead: 1024, bytesStored: 10, chunksNew: 1, chunksReused: 0 }] },
  }, { meta: { site, actor: svc } });
}

describe('scheduler process manager', () => {
  it('drives a manual backup through every phase, each event caused by the one before', async () => {
    const w = await world();
    const { jobId } = await w.scheduler.requestBackup({ vmId: 'vm1', mode: 'auto' }, user, 'cmd-1');
    await w.settle();
    expect(w.work.map((x) => x.jobId)).toEqual([jobId]);
    await commit(w, jobId, 'rp1');
    await w.settle();
    const events = await w.jobEvents(jobId);
    expect(events.map((e) => e.type)).toEqual([
      'JobRequested', 'JobStarted', 'SnapshotTaken', 'TransferQueued', 'TransferStarted', 'RestorePointCommitted', 'SnapshotReleased', 'JobCompleted',
    ]);
    expect(events[0]!.actor).toEqual(user);
    expect(events[0]!.causationId).toBe('cmd-1');
    const byId = new Map(events.map((e) => [e.id, e.type]));
    const completed = events.at(-1)!;
    expect(byId.get(completed.causationId!)).toBe('SnapshotReleased');
    expect(w.calls.filter((c) => c.startsWith('release'))).toEqual([`release ${jobId} true`]);
    await w.scheduler.stop();
  });

  it('continues the trace of the request in every step: its events, its commands and its work carry it', async () => {
    const w = await world();
    // The command arrives under a caller's trace (no tracer provider here: the context passes through as is).
    const caller = { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' };
    const { jobId } = await inSpan('test', 'RequestBackup', { parent: caller }, () => w.scheduler.requestBackup({ vmId: 'vm1', mode: 'auto' }, user, 'cmd-t'));
    await w.settle();
    await commit(w, jobId, 'rpt'); // the mover's events, written outside any span here, carry none
    await w.settle();
    const events = await w.jobEvents(jobId);
    const ours = events.filter((e) => !['SnapshotTaken', 'SnapshotReleased', 'TransferStarted', 'RestorePointCommitted'].includes(e.type));
    expect(ours.map((e) => e.type)).toEqual(['JobRequested', 'JobStarted', 'TransferQueued', 'JobCompleted']);
    for (const e of ours) expect(e.trace, e.type).toEqual(caller);
    expect(w.portTraces.map((t) => t.split(' ')[0])).toEqual(expect.arrayContaining(['snapshot', 'transfer']));
    expect(w.portTraces.every((t) => t.endsWith(caller.traceparent))).toBe(true);
    await w.scheduler.stop();
  });

  it('refuses an unknown VM and an unknown policy, writing nothing', async () => {
    const w = await world();
    await expect(w.scheduler.requestBackup({ vmId: 'nope', mode: 'auto' }, user, 'c')).rejects.toBeInstanceOf(SchedulerRefusal);
    await expect(w.scheduler.requestBackup({ vmId: 'vm1', policyId: 'p-x', mode: 'auto' }, user, 'c')).rejects.toThrow(/unknown policy/);
    expect(await w.log.headPosition()).toBe(3n);
    await w.scheduler.stop();
  });

  it('runs at most maxJobsPerHost jobs at once on one host; others wait, another host is free', async () => {
    const w = await world({ maxJobsPerHost: 1 });
    const a = await w.scheduler.requestBackup({ vmId: 'vm1', mode: 'auto' }, user, 'c1');
    const b = await w.scheduler.requestBackup({ vmId: 'vm2', mode: 'auto' }, user, 'c2');
    const c = await w.scheduler.requestBackup({ vmId: 'vm3', mode: 'auto' }, user, 'c3');
    for (const j of [a, b, c]) await w.scheduler.drive(j.jobId);
    await w.settle();
    expect(new Set(w.work.map((x) => x.jobId))).toEqual(new Set([a.jobId, c.jobId]));
    await commit(w, a.jobId, 'rpa');
    await w.settle();
    await w.scheduler.drive(b.jobId);
    await w.settle();
    expect(w.work.map((x) => x.jobId)).toContain(b.jobId);
    await w.scheduler.stop();
  });

  it('a tick drives no request whose host is full, and starts the oldest waiting one when a slot frees', async () => {
    const w = await world({ maxJobsPerHost: 1 });
    const tick = () => (w.scheduler as unknown as { tick(): Promise<void> }).tick();
    const driven: string[] = [];
    const drive = w.scheduler.drive.bind(w.scheduler);
    w.scheduler.drive = async (jobId) => { driven.push(jobId); return drive(jobId); };
    const a = await w.scheduler.requestBackup({ vmId: 'vm1', mode: 'auto' }, user, 'c1');
    const b = await w.scheduler.requestBackup({ vmId: 'vm2', mode: 'auto' }, user, 'c2');
    await tick();
    await w.settle();
    expect(w.work.map((x) => x.jobId)).toEqual([a.jobId]);
    driven.length = 0;
    await tick();
    expect(driven).not.toContain(b.jobId);
    await commit(w, a.jobId, 'rpa');
    await w.settle();
    await tick();
    expect(driven).toContain(b.jobId);
    await w.settle();
    expect(w.work.map((x) => x.jobId)).toEqual([a.jobId, b.jobId]);
    await w.scheduler.stop();
  });

  it('runs at most maxJobsPerRepository jobs at once into one repository, whatever the hosts; the others wait, queued not failed', async () => {
    const w = await world({ maxJobsPerHost: 4, maxJobsPerRepository: 1 });
    const a = await w.scheduler.requestBackup({ vmId: 'vm1', mode: 'auto' }, user, 'c1');
    const c = await w.scheduler.requestBackup({ vmId: 'vm3', mode: 'auto' }, user, 'c3'); // another host, the same (default) repository
    for (const j of [a, c]) await w.scheduler.drive(j.jobId);
    await w.settle();
    expect(w.work.map((x) => x.jobId)).toEqual([a.jobId]);
    expect((await w.jobEvents(c.jobId)).map((e) => e.type)).toEqual(['JobRequested']);
    expect(w.scheduler.health().maxJobsPerRepository).toBe(1);
    await commit(w, a.jobId, 'rpa');
    await w.settle();
    await w.scheduler.drive(c.jobId);
    await w.settle();
    expect(w.work.map((x) => x.jobId)).toEqual([a.jobId, c.jobId]);
    expect((await w.jobEvents(c.jobId)).some((e) => e.type === 'JobFailed')).toBe(false);
    await w.scheduler.stop();
  });

  it('queues a second backup of a VM that has one in flight: it starts once the first has ended and released its view', async () => {
    const w = await world({ maxJobsPerHost: 4 });
    const a = await w.scheduler.requestBackup({ vmId: 'vm1', mode: 'auto' }, user, 'c1');
    const b = await w.scheduler.requestBackup({ vmId: 'vm1', mode: 'full' }, user, 'c2');
    for (const j of [a, b]) await w.scheduler.drive(j.jobId);
    await w.settle();
    // Only the first asked for a view; the second waits, requested and not failed.
    expect(w.calls.filter((c) => c.startsWith('snapshot'))).toEqual([`snapshot ${a.jobId}`]);
    expect((await w.jobEvents(b.jobId)).map((e) => e.type)).toEqual(['JobRequested']);
    await commit(w, a.jobId, 'rpa');
    await w.settle();
    await w.scheduler.drive(b.jobId);
    await w.settle();
    expect((await w.jobEvents(a.jobId)).at(-1)!.type).toBe('JobCompleted');
    expect(w.calls.filter((c) => c.startsWith('snapshot'))).toEqual([`snapshot ${a.jobId}`, `snapshot ${b.jobId}`]);
    expect(w.work.map((x) => x.jobId)).toEqual([a.jobId, b.jobId]);
    expect((await w.jobEvents(b.jobId)).some((e) => e.type === 'JobFailed')).toBe(false);
    // The work carries the parent the mover builds on (none for the first), and where the job's stream stood.
    expect(w.work[0]!.parent).toBeNull();
    expect(w.work[1]!.parent).toEqual({ restorePointId: 'rpa', disks: [{ name: 'd0', sizeBytes: 1024 }] });
    expect(w.work[1]!.jobRevision).toBe(3); // JobRequested, JobStarted (with the snapshot asked), SnapshotTaken, TransferQueued
    // With the position of the event at that revision, learnt with it: the receivers' appends expect it without a head read.
    const positions = new Map<bigint, bigint>();
    for await (const r of w.log.readStream(`job-${b.jobId}`)) positions.set(r.revision, r.position);
    expect(w.work[1]!.jobPosition).toBe(Number(positions.get(3n)));
    expect(w.snapshots[1]!.jobRevision).toBe(1);
    expect(w.snapshots[1]!.jobPosition).toBe(Number(positions.get(1n)));
    await w.scheduler.stop();
  });

  it('names the parent in the snapshot request and the work; none when the newest point left is older than the chain\'s last backup', async () => {
    const w = await world({ maxJobsPerHost: 4 });
    const backup = async (rp: string) => {
      const { jobId } = await w.scheduler.requestBackup({ vmId: 'vm1', mode: 'auto' }, user, `c-${rp}`);
      await w.scheduler.drive(jobId);
      await w.settle();
      await commit(w, jobId, rp);
      await w.settle();
      return jobId;
    };
    const a = await backup('rpa');
    expect(w.snapshots.at(-1)!.parent).toEqual({ none: 'no earlier restore point of this VM in repository default' });
    await backup('rpb');
    const snapA = (await w.jobEvents(a)).find((e) => e.type === 'JobStarted')!.data as { snapshot: { snapshotId: string } };
    expect(w.snapshots.at(-1)!.parent).toEqual({ restorePointId: 'rpa', snapshotId: snapA.snapshot.snapshotId });
    expect(w.work.at(-1)!.parent).toEqual({ restorePointId: 'rpa', disks: [{ name: 'd0', sizeBytes: 1024 }] });
    expect(w.work.at(-1)!.fileIndex).toBe(true); // a manual job: indexed
    // rpb goes: rpa is left, but the manual chain's history restarted at rpb, so nothing is a sound base.
    await w.log.append('restorepoint-rpb', [newEvent('RestorePointExpired', { restorePointId: 'rpb', vmId: 'vm1', policyId: null, reason: 'test' }, { site, actor: svc, streamId: 'restorepoint-rpb' })], { expectedRevision: 'no_stream' });
    await backup('rpc');
    expect(w.snapshots.at(-1)!.parent).toMatchObject({ none: expect.stringContaining('(rpa) is older than the last backup of chain manual') });
    expect(w.work.at(-1)!.parent).toBeNull();
    await w.scheduler.stop();
  });

  it('fails a snapshot that never comes within its timeout, naming the phase', async () => {
    const w = await world({ snapshotOk: false, snapshotTimeoutMs: 60_000 });
    const { jobId } = await w.scheduler.requestBackup({ vmId: 'vm1', mode: 'auto' }, user, 'c');
    await w.settle();
    w.now.t += 61_000;
    await w.scheduler.drive(jobId);
    const last = (await w.jobEvents(jobId)).at(-1)!;
    expect(last.type).toBe('JobFailed');
    expect(last.data).toMatchObject({ phase: 'snapshot', reason: expect.stringMatching(/no snapshot within 60 s/) });
    await w.scheduler.stop();
  });

  it('starts a scheduled job only inside its policy backup window', async () => {
    const w = await world();
    const hm = (t: number) => new Date(t).toISOString().slice(11, 16);
    // A window that opens two hours from now, for an hour.
    const opens = w.now.t + 2 * 3600_000;
    await w.scheduler.createPolicy({
      name: 'windowed', selector: { names: ['vm3'] }, schedule: { cron: '* * * * *', timezone: 'UTC', window: { start: hm(opens), end: hm(opens + 3600_000) } },
      retention: { last: 5, daily: 0, weekly: 0, monthly: 0, yearly: 0 }, repository: 'default', keyRef: 'k', priority: 1,
    }, user, 'c');
    w.now.t += 60_000;
    await (w.scheduler as unknown as { tick(): Promise<void> }).tick();
    await w.settle();
    const requested: string[] = [];
    for await (const r of w.log.readAll()) if (r.event.type === 'JobRequested') requested.push(r.event.data.jobId);
    expect(requested).toHaveLength(1);
    expect((await w.jobEvents(requested[0]!)).map((e) => e.type)).toEqual(['JobRequested']);
    w.now.t = opens + 5 * 60_000;
    await w.scheduler.drive(requested[0]!);
    await w.settle();
    expect((await w.jobEvents(requested[0]!)).map((e) => e.type)).toContain('JobStarted');
    await w.scheduler.stop();
  });

  it('a VM removed from its hypervisor gets no scheduled job; discovered again, it does', async () => {
    const w = await world();
    await w.scheduler.createPolicy({
      name: 'vm3-only', selector: { names: ['vm3'] }, schedule: { cron: '* * * * *', timezone: 'UTC' },
      retention: { last: 1, daily: 0, weekly: 0, monthly: 0, yearly: 0 }, repository: 'default', keyRef: 'k', priority: 1,
    }, user, 'c');
    const meta = { site, actor: svc, streamId: 'vm-vm3' };
    await w.log.append('vm-vm3', [newEvent('VmRemoved', { vmId: 'vm3', name: 'vm3', hypervisor: { kind: 'qemu', host: 'h2' } }, meta)], { expectedRevision: 'any' });
    for (let i = 0; i < 200 && w.scheduler.health().vms === 3; i++) await new Promise((r) => setTimeout(r, 5));
    expect(w.scheduler.health().vms).toBe(2);
    const requested = async () => { let n = 0; for await (const r of w.log.readAll()) if (r.event.type === 'JobRequested') n++; return n; };
    w.now.t += 60_000;
    await (w.scheduler as unknown as { tick(): Promise<void> }).tick();
    expect(await requested()).toBe(0);
    await w.log.append('vm-vm3', [newEvent('VmDiscovered', { vmId: 'vm3', name: 'vm3', hypervisor: { kind: 'qemu', host: 'h2' }, tags: [], disks: [] }, meta)], { expectedRevision: 'any' });
    for (let i = 0; i < 200 && w.scheduler.health().vms === 2; i++) await new Promise((r) => setTimeout(r, 5));
    w.now.t += 60_000;
    await (w.scheduler as unknown as { tick(): Promise<void> }).tick();
    expect(await requested()).toBe(1);
  });

  it('turns a due slot into one job per selected VM, once, and expires what retention lets go', async () => {
    const w = await world();
    const { policyId } = await w.scheduler.createPolicy({
      name: 'every-minute', selector: { tags: ['prod'], hypervisor: 'h2' }, schedule: { cron: '* * * * *', timezone: 'UTC' },
      retention: { last: 1, daily: 0, weekly: 0, monthly: 0, yearly: 0 }, repository: 'default', keyRef: 'k', priority: 1,
    }, user, 'c');
    await expect(w.scheduler.createPolicy({
      name: 'bad', selector: {}, schedule: { cron: 'nope', timezone: 'UTC' },
      retention: { last: 0, daily: 0, weekly: 0, monthly: 0, yearly: 0 }, repository: 'elsewhere', keyRef: 'k', priority: 1,
    }, user, 'c')).rejects.toMatchObject({ code: 'invalid_command' });
    const jobsFor = async () => {
      const ids = new Set<string>();
      for await (const r of w.log.readAll()) if (r.event.type === 'JobRequested') ids.add(r.event.data.jobId);
      return [...ids];
    };
    for (const minute of [1, 2]) {
      w.now.t += 60_000;
      await (w.scheduler as unknown as { tick(): Promise<void> }).tick();
      await (w.scheduler as unknown as { tick(): Promise<void> }).tick(); // a second look at the same slot adds nothing
      const ids = await jobsFor();
      expect(ids).toHaveLength(minute);
      const jobId = ids.at(-1)!;
      await w.settle();
      await w.scheduler.drive(jobId);
      await w.settle();
      await commit(w, jobId, `rp${minute}`);
      await w.settle();
    }
    const expired: string[] = [];
    for await (const r of w.log.readAll()) if (r.event.type === 'RestorePointExpired') expired.push(r.event.data.restorePointId);
    expect(expired).toEqual(['rp1']);
    expect(policyId).toBeTruthy();
    await w.scheduler.stop();
  });

  it('a paused policy schedules no job until resumed; a deleted one none at all, its restore points kept', async () => {
    const w = await world();
    const tick = () => (w.scheduler as unknown as { tick(): Promise<void> }).tick();
    const { policyId } = await w.scheduler.createPolicy({
      name: 'pausable', selector: { names: ['vm3'] }, schedule: { cron: '* * * * *', timezone: 'UTC' },
      retention: { last: 1, daily: 0, weekly: 0, monthly: 0, yearly: 0 }, repository: 'default', keyRef: 'k', priority: 1,
    }, user, 'c');
    const requested = async () => {
      const ids: string[] = [];
      for await (const r of w.log.readAll()) if (r.event.type === 'JobRequested') ids.push(r.event.data.jobId);
      return ids;
    };
    await w.scheduler.changePolicyState('pause', policyId, user, 'c');
    await w.scheduler.changePolicyState('pause', policyId, user, 'c'); // twice: a no-op
    w.now.t += 60_000;
    await tick();
    expect(await requested()).toEqual([]);
    await w.scheduler.changePolicyState('resume', policyId, user, 'c');
    w.now.t += 60_000;
    await tick();
    const [jobId] = await requested();
    expect(jobId).toBeDefined();
    await w.settle();
    await w.scheduler.drive(jobId!);
    await w.settle();
    await commit(w, jobId!, 'rp-kept');
    await w.settle();
    await w.scheduler.changePolicyState('delete', policyId, user, 'c');
    await expect(w.scheduler.changePolicyState('pause', policyId, user, 'c')).rejects.toMatchObject({ code: 'not_found' });
    for (let i = 0; i < 3; i++) {
      w.now.t += 60_000;
      await tick();
    }
    expect(await requested()).toHaveLength(1);
    const types: string[] = [];
    for await (const r of w.log.readAll()) types.push(r.event.type);
    expect(types.filter((t) => t.startsWith('Policy'))).toEqual(['PolicyCreated', 'PolicyPaused', 'PolicyResumed', 'PolicyDeleted']);
    expect(types).not.toContain('RestorePointExpired');
    await w.scheduler.stop();
  });

  it('retention does not expire a restore point while it is locked; it expires the unlocked ones', async () => {
    const w = await world();
    await w.scheduler.createPolicy({
      name: 'every-minute', selector: { tags: ['prod'], hypervisor: 'h2' }, schedule: { cron: '* * * * *', timezone: 'UTC' },
      retention: { last: 1, daily: 0, weekly: 0, monthly: 0, yearly: 0 }, repository: 'default', keyRef: 'k', priority: 1,
    }, user, 'c');
    // rp1 is locked (as an immutable policy's data mover does at commit) until tomorrow.
    await w.log.append('restorepoint-rp1', [newEvent('RestorePointLocked', { restorePointId: 'rp1', retainUntil: new Date(w.now.t + 86_400_000).toISOString(), objectsLocked: 3 }, { site, actor: svc, streamId: 'restorepoint-rp1' })], { expectedRevision: 'any' });
    const seen = new Set<string>();
    for (const minute of [1, 2, 3]) {
      w.now.t += 60_000;
      await (w.scheduler as unknown as { tick(): Promise<void> }).tick();
      const ids: string[] = [];
      for await (const r of w.log.readAll()) if (r.event.type === 'JobRequested' && !seen.has(r.event.data.jobId)) ids.push(r.event.data.jobId);
      const jobId = ids.at(-1)!;
      seen.add(jobId);
      await w.settle();
      await w.scheduler.drive(jobId);
      await w.settle();
      await commit(w, jobId, `rp${minute}`);
      await w.settle();
    }
    const expired: string[] = [];
    for await (const r of w.log.readAll()) if (r.event.type === 'RestorePointExpired') expired.push(r.event.data.restorePointId);
    expect(expired).toEqual(['rp2']);
    await w.scheduler.stop();
  });

  it('a standby taking over from a dead leader still requests the slot that came due while the lease lapsed', async () => {
    const log = new InMemoryEventLog(site);
    const noop: SchedulerPorts = { requestSnapshot: async () => undefined, releaseSnapshot: async () => undefined, enqueueTransfer: async () => undefined };
    const config = schedulerConfig({ site, tickMs: 1000, minScheduleIntervalMs: 60_000, leaseTtlMs: 10_000, retryBaseMs: 1 });
    const now = { t: Date.now() };
    await log.append('vm-vm1', [newEvent('VmDiscovered', { vmId: 'vm1', name: 'vm1', hypervisor: { kind: 'qemu', host: 'h1' }, tags: [], disks: [{ name: 'd0', sizeBytes: 1024 }] }, { site, actor: svc, streamId: 'vm-vm1' })], { expectedRevision: 'any' });
    const a = new Scheduler(config, log, noop, () => new Date(now.t));
    const b = new Scheduler(config, log, noop, () => new Date(now.t));
    await a.start();
    await b.start();
    a.setLeader(true);
    await a.createPolicy({
      name: 'every-minute', selector: { names: ['vm1'] }, schedule: { cron: '* * * * *', timezone: 'UTC' },
      retention: { last: 1, daily: 0, weekly: 0, monthly: 0, yearly: 0 }, repository: 'default', keyRef: 'k', priority: 1,
    }, user, 'c');
    for (let i = 0; i < 200 && b.health().policies === 0; i++) await new Promise((r) => setTimeout(r, 5)); // the standby folded it
    expect(b.health().policies).toBe(1);
    const slot = Math.ceil((now.t + 2000) / 60_000) * 60_000;
    now.t = slot - 500;
    await (a as unknown as { tick(): Promise<void> }).tick(); // the leader looks just before the slot
    // It dies; its lease lapses 10 s after its last renewal, and the standby takes over.
    a.setLeader(false);
    await a.stop();
    now.t = slot + 10_000;
    b.setLeader(true);
    await (b as unknown as { tick(): Promise<void> }).tick();
    const slots: string[] = [];
    for await (const r of log.readAll()) if (r.event.type === 'JobRequested') slots.push(r.event.data.slot ?? '');
    expect(slots).toEqual([new Date(slot).toISOString()]);
    await b.stop();
  });
});
