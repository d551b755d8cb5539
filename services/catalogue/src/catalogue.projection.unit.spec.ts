// Given/when/then specifications of the catalogue projection: given events already in the log,
// when one more arrives, then the read models answer this (against an in-memory SQLite).
import { describe, expect, it } from 'vitest';
import { newEvent, type CairnEvent, type EventDataMap, type EventType, type RecordedEvent } from '@cairn/contracts';
import { CatalogueDb, SqliteCatalogueStore } from './catalogue-db.adapter.ts';
import { CatalogueReadModel, NotFoundError } from './catalogue.read-model.ts';
import { projectEvent } from './catalogue.projection.ts';

const site = 'site-a';
let clock = Date.parse('2026-01-01T00:00:00Z');

function ev<K extends EventType>(type: K, data: EventDataMap[K], streamId: string, extra: Partial<CairnEvent> = {}): CairnEvent {
  clock += 1000;
  return {
    ...newEvent(type, data, {
      site, streamId, actor: { kind: 'service', id: 'scheduler@site-a' }, time: new Date(clock), causationId: null,
      correlationId: streamId.startsWith('job-') ? streamId.slice(4) : streamId,
    }),
    ...extra,
  };
}

function given(...history: CairnEvent[]) {
  const db = CatalogueDb.open(':memory:');
  const store = new SqliteCatalogueStore(db);
  const read = new CatalogueReadModel(() => store);
  let position = 0n;
  const record = (event: CairnEvent): RecordedEvent => ({ event, position: ++position, revision: 0n });
  db.apply(history.map(record));
  return {
    when(...events: CairnEvent[]) {
      db.apply(events.map(record));
      return { async then(check: (read: CatalogueReadModel, db: CatalogueDb) => void | Promise<void>) { try { await check(read, db); } finally { db.close(); } } };
    },
  };
}

const vmA = { vmId: 'vm1', name: 'web-1', hypervisor: { kind: 'qemu' as const, host: 'host-1' }, tags: ['prod'], disks: [{ name: 'vda', sizeBytes: 1024 }] };
const policy = {
  policyId: 'p1', name: 'nightly', selector: { tags: ['prod'] }, schedule: { cron: '0 2 * * *', timezone: 'UTC' },
  retention: { daily: 7, weekly: 4, monthly: 0, yearly: 0, last: 3 }, repository: 'local', keyRef: 'default', priority: 10,
};
const requested = ev('JobRequested', { jobId: 'j1', vmId: 'vm1', policyId: 'p1', mode: 'auto', trigger: 'schedule', slot: '2026-01-01T02:00:00.000Z' }, 'job-j1');
const started = ev('JobStarted', { jobId: 'j1', attempt: 1 }, 'job-j1');
const snapRequested = ev('SnapshotRequested', { jobId: 'j1', vmId: 'vm1', snapshotId: 's1' }, 'job-j1');
const snapTaken = ev('SnapshotTaken', {
  jobId: 'j1', snapshotId: 's1',
  nbd: { socket: '/tmp/nbd.sock', exports: [{ disk: 'vda', exportName: 'vda', sizeBytes: 1024, mode: 'full', reason: 'no parent' }] },
}, 'job-j1');
const queued = ev('TransferQueued', { jobId: 'j1', snapshotId: 's1', queue: 'transfer' }, 'job-j1');
const transferStarted = ev('TransferStarted', { jobId: 'j1', worker: 'data-mover@h1#1' }, 'job-j1');
const committed = ev('RestorePointCommitted', {
  restorePointId: 'rp1', jobId: 'j1', vmId: 'vm1', parentId: null,
  disks: [{ name: 'vda', sizeBytes: 1024, bytesRead: 800, bytesStored: 300, chunksNew: 3, chunksReused: 5 }],
}, 'job-j1');
const released = ev('SnapshotReleased', { jobId: 'j1', snapshotId: 's1', cause: 'job_ended' }, 'job-j1');
const completed = ev('JobCompleted', { jobId: 'j1', restorePointId: 'rp1', bytesRead: 800, bytesStored: 300, durationMs: 5000 }, 'job-j1');

describe('catalogue projection: VMs and disks', () => {
  it('a discovered VM is listed with its disks', async () => {
    await given().when(ev('VmDiscovered', vmA, 'vm-vm1')).then(async (read) => {
      const [vm] = (await read.listVms());
      expect(vm).toMatchObject({ vmId: 'vm1', name: 'web-1', site, hypervisor: { kind: 'qemu', host: 'host-1' }, tags: ['prod'], restorePoints: 0, lastBackupAt: null });
      expect(vm?.disks).toEqual([expect.objectContaining({ name: 'vda', sizeBytes: 1024, detachedAt: null })]);
    });
  });

  it('a disk attached then detached stays listed with its detach time', async () => {
    const attached = ev('DiskAttached', { vmId: 'vm1', disk: { name: 'vdb', sizeBytes: 2048 } }, 'vm-vm1');
    const detached = ev('DiskDetached', { vmId: 'vm1', disk: 'vdb' }, 'vm-vm1');
    await given(ev('VmDiscovered', vmA, 'vm-vm1'), attached).when(detached).then(async (read) => {
      const vdb = (await read.getVm('vm1')).disks.find((d) => d.name === 'vdb');
      expect(vdb).toEqual({ name: 'vdb', sizeBytes: 2048, attachedAt: attached.time, detachedAt: detached.time });
    });
  });

  it('a new discovery replaces name and tags and detaches disks no longer listed', async () => {
    const again = ev('VmDiscovered', { ...vmA, name: 'web-1b', tags: [], disks: [{ name: 'vdc', sizeBytes: 10 }] }, 'vm-vm1');
    await given(ev('VmDiscovered', vmA, 'vm-vm1')).when(again).then(async (read) => {
      const vm = (await read.getVm('vm1'));
      expect(vm.name).toBe('web-1b');
      expect(vm.tags).toEqual([]);
      expect(vm.disks.map((d) => [d.name, d.detachedAt])).toEqual([['vda', again.time], ['vdc', null]]);
    });
  });

  it('power state changes; a removed VM stays listed as removed until it is discovered again', async () => {
    const off = ev('VmPowerStateChanged', { vmId: 'vm1', state: 'stopped' }, 'vm-vm1');
    const removed = ev('VmRemoved', { vmId: 'vm1', name: 'web-1', hypervisor: vmA.hypervisor }, 'vm-vm1');
    await given(ev('VmDiscovered', vmA, 'vm-vm1'), ev('VmPowerStateChanged', { vmId: 'vm1', state: 'running' }, 'vm-vm1')).when(off).then(async (read) => {
      expect((await read.getVm('vm1'))).toMatchObject({ powerState: 'stopped', removedAt: null, updatedAt: off.time });
    });
    await given(ev('VmDiscovered', vmA, 'vm-vm1'), off).when(removed).then(async (read) => {
      expect((await read.listVms())).toEqual([expect.objectContaining({ vmId: 'vm1', powerState: null, removedAt: removed.time })]);
    });
    await given(ev('VmDiscovered', vmA, 'vm-vm1'), removed).when(ev('VmDiscovered', vmA, 'vm-vm1')).then(async (read) => {
      expect((await read.getVm('vm1')).removedAt).toBeNull();
    });
  });

  it('an unknown VM is a not-found error', async () => {
    await given().when().then(async (read) => { await expect(read.getVm('nope')).rejects.toThrow(NotFoundError); });
  });
});

describe('catalogue projection: jobs and phases', () => {
  it('a requested job is listed as requested with its schedule phase running', async () => {
    await given().when(requested).then(async (read) => {
      const job = (await read.getJob('j1'));
      expect(job).toMatchObject({ state: 'requested', vmId: 'vm1', policyId: 'p1', mode: 'auto', trigger: 'schedule', attempt: 0, requestedAt: requested.time });
      expect(job.phases).toEqual([{ phase: 'schedule', state: 'running', startedAt: requested.time, endedAt: null, detail: 'schedule, slot 2026-01-01T02:00:00.000Z' }]);
    });
  });

  it('a whole successful job has every phase done with its times, bytes and events', async () => {
    await given(requested, started, snapRequested, snapTaken, queued, transferStarted, committed, released).when(completed).then(async (read) => {
      const job = (await read.getJob('j1'));
      expect(job).toMatchObject({
        state: 'completed', attempt: 1, startedAt: started.time, endedAt: completed.time, snapshotId: 's1',
        worker: 'data-mover@h1#1', restorePointId: 'rp1', bytesRead: 800, bytesStored: 300, durationMs: 5000, failure: null,
      });
      expect(job.phases.map((p) => [p.phase, p.state, p.startedAt, p.endedAt])).toEqual([
        ['schedule', 'done', requested.time, started.time],
        ['snapshot', 'done', snapRequested.time, snapTaken.time],
        ['transfer', 'done', queued.time, committed.time],
        ['commit', 'done', committed.time, committed.time],
        ['release', 'done', released.time, released.time],
      ]);
      expect(job.phases.find((p) => p.phase === 'snapshot')?.detail).toBe('vda: full (no parent)');
      expect(job.events.map((e) => e.type)).toEqual([
        'JobRequested', 'JobStarted', 'SnapshotRequested', 'SnapshotTaken', 'TransferQueued', 'TransferStarted',
        'RestorePointCommitted', 'SnapshotReleased', 'JobCompleted',
      ]);
    });
  });

  it('a job started by one JobStarted v2 (the snapshot asked with it) reads as one of an older log', async () => {
    const startedV2 = { ...ev('JobStarted', { jobId: 'j1', attempt: 1, snapshot: { vmId: 'vm1', snapshotId: 's1' } }, 'job-j1'), time: started.time };
    const rest = [snapTaken, queued, transferStarted, committed, released, completed];
    const { events: oldEvents, ...old } = await new Promise<Awaited<ReturnType<CatalogueReadModel['getJob']>>>((done) => {
      void given(requested, started, { ...snapRequested, time: started.time }).when(...rest).then(async (read) => { done(await read.getJob('j1')); });
    });
    await given(requested, startedV2).when(...rest).then(async (read) => {
      const { events, ...job } = await read.getJob('j1');
      expect(job).toEqual(old);
      expect(job.phases.find((p) => p.phase === 'snapshot')).toMatchObject({ state: 'done', startedAt: started.time });
      expect(events.map((e) => e.type)).toEqual(oldEvents.map((e) => e.type).filter((t) => t !== 'SnapshotRequested'));
    });
  });

  it('a failed job records the phase and reason and leaves no phase running', async () => {
    const failed = ev('JobFailed', { jobId: 'j1', phase: 'transfer', reason: 'NBD connection reset', retryable: true }, 'job-j1');
    await given(requested, started, snapRequested, snapTaken, queued).when(failed).then(async (read) => {
      const job = (await read.getJob('j1'));
      expect(job.state).toBe('failed');
      expect(job.failure).toEqual({ phase: 'transfer', reason: 'NBD connection reset', retryable: true });
      expect(job.phases.find((p) => p.phase === 'transfer')).toMatchObject({ state: 'failed', endedAt: failed.time, detail: 'NBD connection reset' });
      expect(job.phases.filter((p) => p.state === 'running')).toEqual([]);
    });
  });

  it('a JobFailed written at v1 is read through its upcaster', async () => {
    const v1 = ev('JobFailed', { jobId: 'j1', phase: 'snapshot', reason: 'x', retryable: false }, 'job-j1', {
      schemaVersion: 1, data: { jobId: 'j1', step: 'snapshot', error: 'guest agent timeout' },
    });
    await given(requested, started).when(v1).then(async (read) => {
      expect((await read.getJob('j1')).failure).toEqual({ phase: 'snapshot', reason: 'guest agent timeout', retryable: false });
    });
  });

  it('a cancelled job keeps its reason', async () => {
    await given(requested, started, snapRequested).when(ev('JobCancelled', { jobId: 'j1', reason: 'operator asked' }, 'job-j1')).then(async (read) => {
      const job = (await read.getJob('j1'));
      expect(job).toMatchObject({ state: 'cancelled', cancelReason: 'operator asked' });
      expect(job.phases.find((p) => p.phase === 'snapshot')).toMatchObject({ state: 'failed', detail: 'cancelled: operator asked' });
    });
  });

  it('a late JobStarted does not reopen a job that ended', async () => {
    await given(requested, started, completed).when(ev('JobStarted', { jobId: 'j1', attempt: 2 }, 'job-j1')).then(async (read) => {
      expect((await read.getJob('j1'))).toMatchObject({ state: 'completed', attempt: 1 });
    });
  });

  it('jobs filter by state and VM, newest first, limited', async () => {
    const r2 = ev('JobRequested', { jobId: 'j2', vmId: 'vm2', policyId: null, mode: 'full', trigger: 'manual' }, 'job-j2');
    const r3 = ev('JobRequested', { jobId: 'j3', vmId: 'vm1', policyId: null, mode: 'full', trigger: 'manual' }, 'job-j3');
    await given(requested, started, completed, r2).when(r3).then(async (read) => {
      expect((await read.listJobs({})).map((j) => j.jobId)).toEqual(['j3', 'j2', 'j1']);
      expect((await read.listJobs({ state: 'requested' })).map((j) => j.jobId)).toEqual(['j3', 'j2']);
      expect((await read.listJobs({ vmId: 'vm1' })).map((j) => j.jobId)).toEqual(['j3', 'j1']);
      expect((await read.listJobs({ limit: 1 })).map((j) => j.jobId)).toEqual(['j3']);
    });
  });

  it('lists page through cursors: every job once, newest first, filters kept; a foreign cursor is refused', async () => {
    const many = Array.from({ length: 25 }, (_, i) =>
      ev('JobRequested', { jobId: `m${String(i).padStart(2, '0')}`, vmId: i % 2 ? 'vm1' : 'vm2', policyId: null, mode: 'full', trigger: 'manual' }, `job-m${i}`));
    await given(...many.slice(0, 24)).when(many[24]!).then(async (read) => {
      const seen: string[] = [];
      let after: string | undefined;
      for (let pages = 1; ; pages++) {
        const page = (await read.jobPage({ limit: 7, ...(after ? { after } : {}) }));
        seen.push(...page.items.map((j) => j.jobId));
        if (page.next === null) { expect(pages).toBe(4); break; }
        after = page.next;
      }
      expect(seen).toEqual(many.map((e) => (e.data as { jobId: string }).jobId).reverse());
      const vm1 = (await read.jobPage({ vmId: 'vm1', limit: 5 }));
      const rest = (await read.jobPage({ vmId: 'vm1', after: vm1.next! }));
      expect([...vm1.items, ...rest.items].map((j) => j.vmId)).toEqual(Array(12).fill('vm1'));
      expect(rest.next).toBeNull();
      // VMs page by name; a jobs cursor means nothing there.
      await expect(read.vmPage({ after: vm1.next! })).rejects.toThrow(/another list/);
      await expect(read.jobPage({ after: 'bm90LWEtY3Vyc29y' })).rejects.toThrow(/not one this list handed out|another list/);
    });
  });
});

describe('catalogue projection: restore jobs', () => {
  const target = { kind: 'file' as const, disk: 'vda', path: '/restore/web.raw', format: 'raw' as const, overwrite: false };
  const rRequested = ev('RestoreRequested', { restoreId: 'r1', restorePointId: 'rp1', repository: 'local', target, ownTarget: false }, 'restore-r1');
  const rStarted = ev('RestoreStarted', {
    restoreId: 'r1', worker: 'data-mover@h2#1', attempt: 1, source: 'local', sourceLocation: '/repo',
    disks: [{ disk: 'vda', path: '/restore/web.raw', partialPath: '/restore/web.raw.cairn-restore-r1', format: 'raw', sizeBytes: 1024 }],
  }, 'restore-r1');
  const rProgress = ev('RestoreProgressed', { restoreId: 'r1', disk: 'vda', bytesDone: 512, bytesTotal: 1024 }, 'restore-r1');
  const rCompleted = ev('RestoreCompleted', { restoreId: 'r1', disks: [{ disk: 'vda', path: '/restore/web.raw', sizeBytes: 1024 }], attempts: 1, durationMs: 2500 }, 'restore-r1');
  const backup = [requested, started, snapRequested, snapTaken, queued, transferStarted, committed, released, completed];

  it('a restore job is a job of kind restore: the VM of its restore point, its worker, phases, progress and events', async () => {
    await given(...backup, rRequested, rStarted).when(rProgress).then(async (read) => {
      const job = (await read.getJob('r1'));
      expect(job).toMatchObject({ kind: 'restore', vmId: 'vm1', state: 'running', mode: 'file', restorePointId: 'rp1', worker: 'data-mover@h2#1', attempt: 1 });
      expect(job.phases.map((p) => [p.phase, p.state, p.detail])).toEqual([
        ['schedule', 'done', 'attempt 1'],
        ['transfer', 'running', 'vda: 512 B of 1.0 KiB written'],
      ]);
      expect(job.events.map((e) => e.type)).toEqual(['RestoreRequested', 'RestoreStarted', 'RestoreProgressed']);
    });
    await given(...backup, rRequested, rStarted, rProgress).when(rCompleted).then(async (read) => {
      expect((await read.getJob('r1'))).toMatchObject({ state: 'completed', endedAt: rCompleted.time, durationMs: 2500, bytesRead: 1024, failure: null });
      expect((await read.getJob('r1')).phases.at(-1)).toMatchObject({ phase: 'transfer', state: 'done', detail: 'vda to /restore/web.raw' });
      // Listed beside backups, filtered by kind; the backup metrics count backups only.
      expect((await read.listJobs({})).map((j) => [j.jobId, j.kind])).toEqual([['r1', 'restore'], ['j1', 'backup']]);
      expect((await read.listJobs({ kind: 'restore' })).map((j) => j.jobId)).toEqual(['r1']);
      expect((await read.listJobs({ kind: 'backup', vmId: 'vm1' })).map((j) => j.jobId)).toEqual(['j1']);
      expect((await read.stats()).completed.jobs).toBe(1);
    });
  });

  it('a restore refused before any mover took it failed in its schedule phase, with the reason', async () => {
    const failed = ev('RestoreFailed', { restoreId: 'r1', code: 'conflict', reason: '/restore/web.raw exists' }, 'restore-r1');
    await given(rRequested).when(failed).then(async (read) => {
      const job = (await read.getJob('r1'));
      expect(job).toMatchObject({ kind: 'restore', vmId: '', state: 'failed', failure: { phase: 'schedule', reason: '/restore/web.raw exists', retryable: false } });
      expect(job.phases.filter((p) => p.state === 'running')).toEqual([]);
    });
  });
});

describe('catalogue projection: restore points', () => {
  it('a committed restore point carries sizes, bytes, savings, policy and site', async () => {
    await given(ev('VmDiscovered', vmA, 'vm-vm1'), requested, started).when(committed).then(async (read) => {
      expect((await read.getRestorePoint('rp1'))).toEqual({
        restorePointId: 'rp1', jobId: 'j1', vmId: 'vm1', policyId: 'p1', site, createdAt: committed.time, parentId: null,
        kind: 'full', sizeBytes: 1024, bytesRead: 800, bytesStored: 300, changedBytes: 800, savedBytes: 500,
        disks: [{ name: 'vda', sizeBytes: 1024, bytesRead: 800, bytesStored: 300, chunksNew: 3, chunksReused: 5 }],
        expiredAt: null, expiryReason: null, lastTestRestore: null, damage: null, lock: null,
      });
      expect((await read.getVm('vm1'))).toMatchObject({ lastBackupAt: committed.time, restorePoints: 1 });
    });
  });

  it('a restore point shows the consistency and VM configuration its snapshot recorded', async () => {
    const taken = ev('SnapshotTaken', {
      jobId: 'j1', snapshotId: 's1', nbd: { socket: '/run/x.sock', exports: [{ disk: 'vda', exportName: 'e', sizeBytes: 1024, mode: 'full', reason: 'first' }] },
      consistency: { level: 'application', reason: 'file systems frozen' }, vmConfig: { kind: 'libvirt', domainXml: '<domain/>' },
    }, 'job-j1');
    await given(ev('VmDiscovered', vmA, 'vm-vm1'), requested, started, taken).when(committed).then(async (read) => {
      expect((await read.getRestorePoint('rp1'))).toMatchObject({
        consistency: 'application', consistencyReason: 'file systems frozen', vmConfig: { kind: 'libvirt', domainXml: '<domain/>' },
      });
    });
  });

  it('an incremental names its parent; an expired point leaves the default list', async () => {
    const inc = ev('RestorePointCommitted', {
      restorePointId: 'rp2', jobId: 'j2', vmId: 'vm1', parentId: 'rp1',
      disks: [{ name: 'vda', sizeBytes: 1024, bytesRead: 64, bytesStored: 64, chunksNew: 1, chunksReused: 7 }],
    }, 'job-j2');
    const expired = ev('RestorePointExpired', { restorePointId: 'rp1', vmId: 'vm1', policyId: 'p1', reason: 'beyond last 1' }, 'restorepoint-rp1');
    await given(committed, inc).when(expired).then(async (read) => {
      expect((await read.getRestorePoint('rp2'))).toMatchObject({ kind: 'incremental', parentId: 'rp1', changedBytes: 64 });
      expect((await read.listRestorePoints({ vmId: 'vm1' })).map((r) => r.restorePointId)).toEqual(['rp2']);
      expect((await read.listRestorePoints({ includeExpired: true })).map((r) => [r.restorePointId, r.expiryReason])).toEqual([['rp2', null], ['rp1', 'beyond last 1']]);
    });
  });
});

describe('catalogue projection: policies', () => {
  it('created, updated and deleted policies keep their version and times', async () => {
    const created = ev('PolicyCreated', policy, 'policy-p1');
    const updated = ev('PolicyUpdated', { ...policy, priority: 20 }, 'policy-p1');
    const deleted = ev('PolicyDeleted', { policyId: 'p1' }, 'policy-p1');
    await given(created, updated).when(deleted).then(async (read) => {
      expect((await read.listPolicies({}))).toEqual([]);
      expect((await read.getPolicy('p1'))).toEqual({ ...policy, site: 'site-a', priority: 20, version: 2, createdAt: created.time, updatedAt: deleted.time, deletedAt: deleted.time, pausedAt: null });
      expect((await read.listPolicies({ includeDeleted: true }))).toHaveLength(1);
    });
  });

  it('the view carries every field of the policy, so that an edit built from it loses none', async () => {
    const full = { ...policy, immutable: true, bandwidthBytesPerSec: 4096, quiesce: 'required' as const, fileIndex: false, rpoMinutes: 90 };
    await given().when(ev('PolicyCreated', full, 'policy-p1')).then(async (read) => {
      const { version: _v, createdAt: _c, updatedAt: _u, deletedAt: _d, pausedAt: _p, site, ...fields } = (await read.getPolicy('p1'));
      expect(fields).toEqual(full);
      expect(site).toBe('site-a');
    });
  });

  it('a paused policy shows since when until it is resumed', async () => {
    const created = ev('PolicyCreated', policy, 'policy-p1');
    const paused = ev('PolicyPaused', { policyId: 'p1' }, 'policy-p1');
    const resumed = ev('PolicyResumed', { policyId: 'p1' }, 'policy-p1');
    await given(created).when(paused).then(async (read) => {
      expect((await read.listPolicies({}))).toEqual([expect.objectContaining({ policyId: 'p1', pausedAt: paused.time, deletedAt: null })]);
    });
    await given(created, paused).when(resumed).then(async (read) => {
      expect((await read.getPolicy('p1'))).toMatchObject({ pausedAt: null, updatedAt: resumed.time });
    });
  });
});

describe('catalogue projection: audit timeline and checkpoint', () => {
  it('every event joins the timeline, and filters select by correlation, actor, type and time', async () => {
    const byUser = ev('PolicyCreated', policy, 'policy-p1', { actor: { kind: 'user', id: 'alice' } });
    await given(requested, started).when(byUser).then(async (read) => {
      expect((await read.auditTimeline({})).map((e) => e.position)).toEqual([1, 2, 3]);
      expect((await read.auditTimeline({ correlationId: 'j1' })).map((e) => e.type)).toEqual(['JobRequested', 'JobStarted']);
      expect((await read.auditTimeline({ actor: 'alice' }))).toEqual([expect.objectContaining({ type: 'PolicyCreated', eventId: byUser.id, actor: { kind: 'user', id: 'alice' } })]);
      expect((await read.auditTimeline({ type: 'JobStarted' })).map((e) => e.position)).toEqual([2]);
      expect((await read.auditTimeline({ from: started.time })).map((e) => e.position)).toEqual([2, 3]);
      expect((await read.auditTimeline({ to: started.time.replace('Z', '+00:00') })).map((e) => e.position)).toEqual([1, 2]);
      expect((await read.auditTimeline({ afterPosition: 2 })).map((e) => e.position)).toEqual([3]);
    });
  });

  it('an event type this build does not know is kept in the timeline and changes nothing else', async () => {
    const future = { ...ev('JobStarted', { jobId: 'j1', attempt: 1 }, 'job-j1'), type: 'JobTeleported', data: { to: 'mars' } };
    expect(projectEvent({ event: future, position: 9n, revision: 0n })).toHaveLength(1);
    await given(requested).when(future).then(async (read) => {
      expect((await read.auditTimeline({ type: 'JobTeleported' }))).toEqual([expect.objectContaining({ data: { to: 'mars' } })]);
      expect((await read.getJob('j1')).state).toBe('requested');
    });
  });

  it('events at or before the checkpoint are skipped, so a replayed batch changes nothing', async () => {
    const db = CatalogueDb.open(':memory:');
    try {
      const batch: RecordedEvent[] = [requested, started].map((event, i) => ({ event, position: BigInt(i + 1), revision: BigInt(i) }));
      expect(db.apply(batch)).toBe(2);
      expect(db.apply(batch)).toBe(0);
      expect(db.position()).toBe(2n);
      expect(await new CatalogueReadModel(() => new SqliteCatalogueStore(db)).auditTimeline({})).toHaveLength(2);
    } finally {
      db.close();
    }
  });

  it('a failing event rolls back its whole batch, checkpoint included', async () => {
    const db = CatalogueDb.open(':memory:');
    try {
      db.apply([requested, started].map((event, i) => ({ event, position: BigInt(i + 1), revision: BigInt(i) })));
      db.prepared('DROP TABLE jobs').run();
      const batch: RecordedEvent[] = [
        { event: ev('PolicyCreated', policy, 'policy-p1'), position: 3n, revision: 0n },
        { event: completed, position: 4n, revision: 2n },
      ];
      expect(() => db.apply(batch)).toThrow(/JobCompleted .* at position 4/);
      expect(db.position()).toBe(2n);
      const read = new CatalogueReadModel(() => new SqliteCatalogueStore(db));
      expect((await read.auditTimeline({}))).toHaveLength(2);
      expect((await read.listPolicies({}))).toEqual([]);
    } finally {
      db.close();
    }
  });

  it('a replica expired at its target leaves the list; another site\'s replica of it stays', async () => {
    const committed = (targetSite: string) => ev('ReplicaCommitted', {
      restorePointId: 'rp-1', vmId: 'vm1', vmName: 'web-1', jobId: null, policyId: null, sourceSite: 'site-a', targetSite, repositoryId: 'repo-1',
      sourceCommittedAt: '2026-01-01T00:00:00.000Z', disks: [{ name: 'vda', sizeBytes: 1024 }], chunksSent: 1, pagesSent: 1, bytesSent: 100,
    }, 'replica-rp-1');
    await given(committed('site-b'), committed('site-c'))
      .when(ev('ReplicaExpired', { restorePointId: 'rp-1', sourceSite: 'site-a', targetSite: 'site-b', reason: 'expired: keepLast 3' }, 'replica-rp-1'))
      .then(async (read) => {
        expect((await read.listReplicas({})).map((r) => [r.restorePointId, r.site])).toEqual([['rp-1', 'site-c']]);
      });
  });
});

describe('catalogue projection: test restores and damage', () => {
  const history = [ev('VmDiscovered', vmA, 'vm-vm1'), requested, started, snapRequested, snapTaken, queued, transferStarted, committed, released, completed];
  const trStarted = (id: string) => ev('TestRestoreStarted', { testRestoreId: id, restorePointId: 'rp1', vmId: 'vm1', checks: ['serial:UP', 'tcp:22'], policyId: 'p1' }, `testrestore-${id}`);
  const shot = { file: '/data/test-restores/screenshots/t.png', sha256: 'a'.repeat(64), bytes: 3000 };

  it('a test restore is listed running, then failed with its check; the restore point shows the newest one', async () => {
    await given(...history, trStarted('t1'), ev('TestRestorePassed', {
      testRestoreId: 't1', restorePointId: 'rp1', vmId: 'vm1', results: [{ check: 'serial:UP', ok: true, detail: 'after 9 s' }, { check: 'tcp:22', ok: true, detail: 'answered' }], screenshot: shot, durationMs: 30_000,
    }, 'testrestore-t1'), trStarted('t2')).when(ev('TestRestoreFailed', {
      testRestoreId: 't2', restorePointId: 'rp1', vmId: 'vm1', check: 'tcp:22', reason: 'no answer', consoleTail: 'UP',
      results: [{ check: 'serial:UP', ok: true, detail: 'after 9 s' }, { check: 'tcp:22', ok: false, detail: 'no answer' }], screenshot: null, durationMs: 200_000,
    }, 'testrestore-t2')).then(async (read) => {
      const { items } = (await read.testRestorePage({}));
      expect(items.map((t) => [t.testRestoreId, t.status, t.failedCheck])).toEqual([['t2', 'failed', 'tcp:22'], ['t1', 'passed', null]]);
      expect(items[1]).toMatchObject({ policyId: 'p1', checks: ['serial:UP', 'tcp:22'], durationMs: 30_000, screenshot: shot, endedAt: expect.any(String) });
      expect((await read.testRestorePage({ status: 'passed' })).items.map((t) => t.testRestoreId)).toEqual(['t1']);
      expect((await read.getRestorePoint('rp1')).lastTestRestore).toMatchObject({ testRestoreId: 't2', status: 'failed', failedCheck: 'tcp:22', durationMs: 200_000 });
      expect((await read.stats())).toMatchObject({ testRestores: { running: 0, passed: 1, failed: 1 }, restorePointsBootTested: { passed: 0, failed: 1, damaged: 0 } });
    });
  });

  it('a scheduled test restore the data mover refused is listed refused with why; the restore point keeps its newest one that ran', async () => {
    await given(...history, trStarted('t1'), ev('TestRestorePassed', {
      testRestoreId: 't1', restorePointId: 'rp1', vmId: 'vm1', results: [{ check: 'serial:UP', ok: true, detail: 'after 9 s' }], screenshot: null, durationMs: 30_000,
    }, 'testrestore-t1')).when(ev('TestRestoreRefused', {
      testRestoreId: 't2', restorePointId: 'rp1', vmId: 'vm1', policyId: 'p1', reason: 'no data mover answered within 30 s',
    }, 'testrestore-t2')).then(async (read) => {
      const { items } = await read.testRestorePage({});
      expect(items.map((t) => [t.testRestoreId, t.status, t.reason])).toEqual([['t2', 'refused', 'no data mover answered within 30 s'], ['t1', 'passed', null]]);
      expect(items[0]).toMatchObject({ policyId: 'p1', checks: [], results: [], failedCheck: null, durationMs: null, screenshot: null, endedAt: items[0]!.startedAt });
      expect((await read.testRestorePage({ status: 'refused' })).items.map((t) => t.testRestoreId)).toEqual(['t2']);
      // It did not run: it says nothing of the restore point, which stays boot-tested passed.
      expect((await read.getRestorePoint('rp1')).lastTestRestore).toMatchObject({ testRestoreId: 't1', status: 'passed' });
      expect(await read.stats()).toMatchObject({ testRestores: { running: 0, passed: 1, failed: 0, refused: 1 }, restorePointsBootTested: { passed: 1, failed: 0, damaged: 0 } });
    });
  });

  it('a restore point never tested says so; one found damaged is marked until a later verify checks it clean', async () => {
    await given(...history).when().then(async (read) => expect((await read.getRestorePoint('rp1'))).toMatchObject({ lastTestRestore: null, damage: null }));
    const damaged = ev('RestorePointDamaged', { restorePointId: 'rp1', vmId: 'vm1', verifyId: 'v1', damaged: [{ kind: 'chunk', id: 'c1', damage: 'authentication' }], damagedCount: 1 }, 'restorepoint-rp1');
    const verify = (verifyId: string, affected: string[]) => ev('VerifyCompleted', {
      verifyId, repository: 'default', restorePoints: ['rp1'], chunksTotal: 5, chunksChecked: 5, bytesChecked: 100, pagesChecked: 1,
      damagedCount: affected.length, damaged: [], affectedRestorePoints: affected, durationMs: 10,
    }, `verify-${verifyId}`);
    await given(...history, verify('v1', ['rp1'])).when(damaged).then(async (read) => {
      expect((await read.getRestorePoint('rp1')).damage).toMatchObject({ verifyId: 'v1', damagedCount: 1 });
      expect((await read.stats()).restorePointsBootTested?.damaged).toBe(1);
    });
    await given(...history, verify('v1', ['rp1']), damaged, verify('v2', ['rp1'])).when().then(async (read) => expect((await read.getRestorePoint('rp1')).damage).not.toBeNull());
    await given(...history, verify('v1', ['rp1']), damaged).when(verify('v3', [])).then(async (read) => expect((await read.getRestorePoint('rp1')).damage).toBeNull());
  });

  it('a lock shows until when and by which policy or act; only a longer lock replaces it', async () => {
    const locked = (until: string, actor: CairnEvent['actor'], causationId: string) =>
      ev('RestorePointLocked', { restorePointId: 'rp1', retainUntil: until, objectsLocked: 4 }, 'restorepoint-rp1', { actor, causationId });
    const byPolicy = locked('2026-02-01T00:00:00.000Z', { kind: 'service', id: 'data-mover@site-a' }, 'commit-rp1');
    await given(...history).when(byPolicy).then(async (read) => expect((await read.getRestorePoint('rp1')).lock).toEqual({
      until: '2026-02-01T00:00:00.000Z', at: byPolicy.time, source: 'policy', policyId: 'p1',
      actor: { kind: 'service', id: 'data-mover@site-a' }, causationId: 'commit-rp1',
    }));
    const byUser = locked('2026-06-01T00:00:00.000Z', { kind: 'user', id: 'alice' }, 'cmd-7');
    await given(...history, byPolicy).when(byUser).then(async (read) => expect((await read.getRestorePoint('rp1')).lock)
      .toMatchObject({ until: '2026-06-01T00:00:00.000Z', source: 'act', policyId: null, actor: { kind: 'user', id: 'alice' } }));
    await given(...history, byUser).when(byPolicy).then(async (read) => expect((await read.getRestorePoint('rp1')).lock).toMatchObject({ until: '2026-06-01T00:00:00.000Z', source: 'act' }));
  });
});
