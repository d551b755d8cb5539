// One contract for every catalogue store (SQLite and PostgreSQL): the same history projected,
// then every query the API asks answered identically — list-by-VM paged with cursors,
// latest-per-VM, searches of the timeline, jobs, stats — plus idempotent replay, a failing
// batch rolled back, a schema version change emptying the store, and a projector rebuild.
// Each store's spec calls `catalogueStoreContract` with a harness that opens that store.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newEvent, type CairnEvent, type EventDataMap, type EventType, type RecordedEvent } from '@cairn/contracts';
import { InMemoryEventLog } from '@cairn/eventlog';
import { pino } from 'pino';
import type { CatalogueBackend, CatalogueStore } from './catalogue-store.port.ts';
import { CatalogueReadModel } from './catalogue.read-model.ts';
import { CatalogueProjector } from './catalogue.projector.ts';

export interface CatalogueStoreHarness {
  /** A backend on a store of its own (empty the first time it is opened). */
  backend(): Promise<CatalogueBackend>;
  /** Writes another layout version into the store's meta table (as an older build would have). */
  setSchemaVersion(store: CatalogueStore, version: string): Promise<void>;
  dispose(): Promise<void>;
}

const site = 'site-a';
let clock = Date.parse('2026-03-01T00:00:00Z');

function ev<K extends EventType>(type: K, data: EventDataMap[K], streamId: string, actor = 'scheduler@site-a'): CairnEvent {
  clock += 60_000;
  return newEvent(type, data, {
    site, streamId, actor: { kind: actor.startsWith('alice') ? 'user' : 'service', id: actor }, time: new Date(clock), causationId: null,
    correlationId: streamId.startsWith('job-') ? streamId.slice(4) : streamId,
  });
}

function vm(vmId: string, name: string): CairnEvent {
  return ev('VmDiscovered', { vmId, name, hypervisor: { kind: 'qemu', host: 'host-1' }, tags: ['prod'], disks: [{ name: 'vda', sizeBytes: 4096 }] }, `vm-${vmId}`);
}

function backup(jobId: string, vmId: string, parentId: string | null): CairnEvent[] {
  const s = `job-${jobId}`;
  return [
    ev('JobRequested', { jobId, vmId, policyId: 'p1', mode: 'auto', trigger: 'schedule' }, s),
    ev('JobStarted', { jobId, attempt: 1 }, s),
    ev('RestorePointCommitted', {
      restorePointId: `rp-${jobId}`, jobId, vmId, parentId,
      disks: [{ name: 'vda', sizeBytes: 4096, bytesRead: 1000, bytesStored: 400, chunksNew: 2, chunksReused: 3 }],
    }, s),
    ev('JobCompleted', { jobId, restorePointId: `rp-${jobId}`, bytesRead: 1000, bytesStored: 400, durationMs: 50 }, s),
  ];
}

/** 3 VMs; 12 backups of vm1 and 3 of vm2 (one restore point of vm1 expired), one failed job of vm3. */
export function contractHistory(): CairnEvent[] {
  clock = Date.parse('2026-03-01T00:00:00Z');
  const events: CairnEvent[] = [vm('vm1', 'web-1'), vm('vm2', 'db-1'), vm('vm3', 'Cache-1')];
  events.push(ev('PolicyCreated', {
    policyId: 'p1', name: 'nightly', selector: { tags: ['prod'] }, schedule: { cron: '0 2 * * *', timezone: 'UTC' },
    retention: { daily: 7, weekly: 4, monthly: 0, yearly: 0, last: 3 }, repository: 'local', keyRef: 'default', priority: 10,
  }, 'policy-p1', 'alice'));
  for (let i = 0; i < 12; i++) events.push(...backup(`a${String(i).padStart(2, '0')}`, 'vm1', i ? `rp-a${String(i - 1).padStart(2, '0')}` : null));
  for (let i = 0; i < 3; i++) events.push(...backup(`b${i}`, 'vm2', null));
  events.push(ev('RestorePointExpired', { restorePointId: 'rp-a00', vmId: 'vm1', policyId: 'p1', reason: 'beyond last 3' }, 'restorepoint-rp-a00'));
  events.push(
    ev('JobRequested', { jobId: 'c0', vmId: 'vm3', policyId: 'p1', mode: 'auto', trigger: 'manual' }, 'job-c0', 'alice'),
    ev('JobStarted', { jobId: 'c0', attempt: 1 }, 'job-c0'),
    ev('JobFailed', { jobId: 'c0', phase: 'snapshot', reason: 'guest agent silent', retryable: false }, 'job-c0'),
  );
  return events;
}

const recorded = (events: CairnEvent[], from = 1n): RecordedEvent[] => events.map((event, i) => ({ event, position: from + BigInt(i), revision: 0n }));

export function catalogueStoreContract(name: string, open: () => Promise<CatalogueStoreHarness>, options: { skip?: string } = {}): void {
  describe.skipIf(options.skip !== undefined)(`catalogue store contract: ${name}${options.skip ? ` (skipped: ${options.skip})` : ''}`, () => {
    let harness: CatalogueStoreHarness;
    let backend: CatalogueBackend;
    let store: CatalogueStore;
    let read: CatalogueReadModel;
    const history = contractHistory();

    beforeAll(async () => {
      harness = await open();
      backend = await harness.backend();
      store = await backend.openLive();
      read = new CatalogueReadModel(() => store);
      // In three batches, as a live projection would.
      const all = recorded(history);
      expect(await store.apply(all.slice(0, 10))).toBe(10);
      expect(await store.apply(all.slice(10, 40))).toBe(30);
      expect(await store.apply(all.slice(40))).toBe(all.length - 40);
    });

    afterAll(async () => {
      await store?.close();
      await harness?.dispose();
    });

    it('moves the checkpoint with the batches', async () => {
      expect(await store.position()).toBe(BigInt(history.length));
    });

    it('lists a VM\'s restore points newest first, page by page with cursors, each once', async () => {
      const seen: string[] = [];
      let after: string | undefined;
      let pages = 0;
      do {
        const page = await read.restorePointPage({ vmId: 'vm1', limit: 5, ...(after ? { after } : {}) });
        seen.push(...page.items.map((r) => r.restorePointId));
        after = page.next ?? undefined;
        pages++;
      } while (after);
      expect(pages).toBe(3);
      expect(seen).toEqual(Array.from({ length: 11 }, (_, i) => `rp-a${String(11 - i).padStart(2, '0')}`));
      const withExpired = await read.listRestorePoints({ vmId: 'vm1', includeExpired: true, limit: 100 });
      expect(withExpired.at(-1)).toMatchObject({ restorePointId: 'rp-a00', expiredAt: expect.any(String), expiryReason: 'beyond last 3', kind: 'full' });
      const rp = await read.getRestorePoint('rp-a05');
      expect(rp).toMatchObject({
        vmId: 'vm1', jobId: 'a05', policyId: 'p1', parentId: 'rp-a04', kind: 'incremental', sizeBytes: 4096, bytesRead: 1000, bytesStored: 400,
        savedBytes: 600, disks: [{ name: 'vda', sizeBytes: 4096, bytesRead: 1000, bytesStored: 400, chunksNew: 2, chunksReused: 3 }], lock: null, damage: null,
      });
    });

    it('answers the latest restore point and count per VM, VMs ordered by name byte-wise', async () => {
      const vms = await read.listVms({});
      expect(vms.map((v) => [v.name, v.restorePoints])).toEqual([['Cache-1', 0], ['db-1', 3], ['web-1', 11]]);
      // (a hostile VM joins later in the suite)
      const web = vms.find((v) => v.vmId === 'vm1')!;
      expect(web.lastBackupAt).toBe((await read.getRestorePoint('rp-a11')).createdAt);
      expect(web.disks).toEqual([{ name: 'vda', sizeBytes: 4096, attachedAt: expect.any(String), detachedAt: null }]);
      const first = await read.vmPage({ limit: 2 });
      const rest = await read.vmPage({ limit: 2, after: first.next! });
      expect([...first.items, ...rest.items].map((v) => v.vmId)).toEqual(['vm3', 'vm2', 'vm1']);
      expect(rest.next).toBeNull();
    });

    it('searches the audit timeline by type, actor, stream, correlation and time', async () => {
      expect((await read.auditTimeline({ type: 'RestorePointCommitted', limit: 100 })).length).toBe(15);
      expect((await read.auditTimeline({ actor: 'alice', limit: 100 })).map((e) => e.type)).toEqual(['PolicyCreated', 'JobRequested']);
      expect((await read.auditTimeline({ correlationId: 'c0' })).map((e) => e.type)).toEqual(['JobRequested', 'JobStarted', 'JobFailed']);
      expect((await read.auditTimeline({ streamId: 'restorepoint-rp-a00' })).map((e) => e.data)).toEqual([expect.objectContaining({ reason: 'beyond last 3' })]);
      const all = await read.auditTimeline({ limit: 1000 });
      const mid = all[30]!;
      // The same instant written with another offset compares as the same instant.
      const shifted = new Date(Date.parse(mid.time)).toISOString().replace('Z', '+00:00');
      const since = await read.auditTimeline({ from: shifted, limit: 1000 });
      expect(since[0]!.position).toBe(mid.position);
      expect(since.length).toBe(all.length - 30);
      const page = await read.auditPage({ afterPosition: 5, limit: 3 });
      expect(page.items.map((e) => e.position)).toEqual([6, 7, 8]);
      const next = await read.auditPage({ afterPosition: 5, limit: 3, after: page.next! });
      expect(next.items.map((e) => e.position)).toEqual([9, 10, 11]);
      await expect(read.vmPage({ after: page.next! })).rejects.toThrow(/cursor|another list/);
    });

    it('lists and details jobs by state, VM and kind', async () => {
      const completed = await read.listJobs({ state: 'completed', limit: 100 });
      expect(completed).toHaveLength(15);
      expect(completed[0]).toMatchObject({ jobId: 'b2', vmId: 'vm2', state: 'completed', restorePointId: 'rp-b2', bytesRead: 1000, durationMs: 50 });
      const failed = await read.listJobs({ state: 'failed' });
      expect(failed).toEqual([expect.objectContaining({ jobId: 'c0', failure: { phase: 'snapshot', reason: 'guest agent silent', retryable: false } })]);
      const vm2 = await read.jobPage({ vmId: 'vm2', limit: 2 });
      const vm2rest = await read.jobPage({ vmId: 'vm2', limit: 2, after: vm2.next! });
      expect([...vm2.items, ...vm2rest.items].map((j) => j.jobId)).toEqual(['b2', 'b1', 'b0']);
      const job = await read.getJob('a03');
      expect(job.phases.map((p) => [p.phase, p.state])).toEqual([['schedule', 'done'], ['transfer', 'done'], ['commit', 'done']]);
      expect(job.events.map((e) => e.type)).toEqual(['JobRequested', 'JobStarted', 'RestorePointCommitted', 'JobCompleted']);
      await expect(read.getJob('nope')).rejects.toThrow(/no job nope/);
      expect((await read.listPolicies({})).map((p) => [p.policyId, p.version])).toEqual([['p1', 1]]);
    });

    it('counts exactly in the stats', async () => {
      expect(await read.stats()).toEqual({
        position: history.length,
        jobsByState: { requested: 0, running: 0, completed: 15, failed: 1, cancelled: 0 },
        runningByPhase: { schedule: 0, snapshot: 0, transfer: 0, commit: 0, release: 0 },
        restorePoints: { total: 15, live: 14, expired: 1 },
        bytesRead: 15_000, bytesStored: 6_000, liveBytesRead: 14_000, liveBytesStored: 5_600,
        completed: { jobs: 15, bytesRead: 15_000, durationMs: 750 },
        vms: 3,
        testRestores: { running: 0, passed: 0, failed: 0, refused: 0 },
        restorePointsBootTested: { passed: 0, failed: 0, damaged: 0 },
      });
    });

    it('skips a replayed batch: applying the log again changes nothing', async () => {
      const before = await read.stats();
      const timeline = await read.auditTimeline({ limit: 1000 });
      expect(await store.apply(recorded(history))).toBe(0);
      expect(await store.apply(recorded(history.slice(20), 21n))).toBe(0);
      expect(await read.stats()).toEqual(before);
      expect(await read.auditTimeline({ limit: 1000 })).toEqual(timeline);
    });

    it('rolls a failing batch back, checkpoint included', async () => {
      const at = await store.position();
      const ok = ev('VmPowerStateChanged', { vmId: 'vm1', state: 'running' }, 'vm-vm1');
      const bad = { ...ev('VmPowerStateChanged', { vmId: 'vm1', state: 'shutoff' }, 'vm-vm1'), id: null as never };
      await expect(store.apply([{ event: ok, position: at + 1n, revision: 0n }, { event: bad, position: at + 2n, revision: 0n }]))
        .rejects.toThrow(new RegExp(`VmPowerStateChanged .* at position ${at + 2n}`));
      expect(await store.position()).toBe(at);
      expect(await read.auditTimeline({ afterPosition: Number(at) })).toEqual([]);
      expect((await read.getVm('vm1')).powerState).toBeNull();
    });

    it('keeps hostile text exactly: quotes, backslashes, placeholders and statement separators', async () => {
      const at = await store.position();
      const name = `o'brien \\ "x" ?; DROP TABLE vms; -- $1 \u00e9\u{1F600}`;
      const hostile = ev('VmDiscovered', { vmId: 'vm-x', name, hypervisor: { kind: 'qemu', host: "h'1" }, tags: ["it's", '\\n'], disks: [{ name: 'vd?a', sizeBytes: 1 }] }, 'vm-vm-x');
      expect(await store.apply([{ event: hostile, position: at + 1n, revision: 0n }])).toBe(1);
      expect(await read.getVm('vm-x')).toMatchObject({ name, hypervisor: { host: "h'1" }, tags: ["it's", '\\n'], disks: [{ name: 'vd?a' }] });
      expect((await read.auditTimeline({ afterPosition: Number(at) }))[0]!.data).toMatchObject({ name });
    });

    it('empties a store written by another layout version, so the log is replayed into it', async () => {
      const other = await harness.backend();
      const first = await other.openLive();
      await first.apply(recorded(history.slice(0, 4)));
      await harness.setSchemaVersion(first, '9');
      await first.close();
      const reopened = await other.openLive();
      try {
        expect(await reopened.position()).toBe(0n);
        expect(await new CatalogueReadModel(() => reopened).listVms({})).toEqual([]);
        expect(await reopened.apply(recorded(history.slice(0, 4)))).toBe(4);
      } finally {
        await reopened.close();
      }
    });

    it('keeps the stats\' running totals equal to a full recount after creates, deletes, expiry, test restores and a rebuild', async () => {
      const log = new InMemoryEventLog(site);
      const projector = new CatalogueProjector({ log, backend: await harness.backend(), logger: pino({ level: 'silent' }) });
      await projector.start();
      const view = new CatalogueReadModel(() => projector.current);
      const tr = (id: string, rp: string) => ev('TestRestoreStarted', { testRestoreId: id, restorePointId: rp, vmId: 'vm1', checks: ['tcp:22'], policyId: 'p1' }, `testrestore-${id}`);
      const passed = (id: string, rp: string) => ev('TestRestorePassed', { testRestoreId: id, restorePointId: rp, vmId: 'vm1', results: [{ check: 'tcp:22', ok: true, detail: 'answered' }], screenshot: null, durationMs: 10 }, `testrestore-${id}`);
      const failed = (id: string, rp: string) => ev('TestRestoreFailed', {
        testRestoreId: id, restorePointId: rp, vmId: 'vm1', check: 'tcp:22', reason: 'no answer', consoleTail: '', results: [{ check: 'tcp:22', ok: false, detail: 'no answer' }], screenshot: null, durationMs: 20,
      }, `testrestore-${id}`);
      const steps: CairnEvent[][] = [
        history,
        // A test restore passes, a later one fails (the newest counts), one runs, one is refused.
        [tr('t1', 'rp-a05'), passed('t1', 'rp-a05'), tr('t2', 'rp-a05'), failed('t2', 'rp-a05'), tr('t3', 'rp-a06'), passed('t3', 'rp-a06'), tr('t4', 'rp-a07'),
          ev('TestRestoreRefused', { testRestoreId: 't5', restorePointId: 'rp-a06', vmId: 'vm1', policyId: 'p1', reason: 'busy' }, 'testrestore-t5')],
        // Deleted after approval, expired, found damaged; a second expiry of the same point changes nothing.
        [ev('RestorePointDeleted', { restorePointId: 'rp-a06', approvalId: 'ap1', requestedBy: 'alice', approvedBy: 'bob' }, 'restorepoint-rp-a06', 'alice'),
          ev('RestorePointExpired', { restorePointId: 'rp-a05', vmId: 'vm1', policyId: 'p1', reason: 'retention' }, 'restorepoint-rp-a05'),
          ev('RestorePointExpired', { restorePointId: 'rp-a05', vmId: 'vm1', policyId: 'p1', reason: 'again' }, 'restorepoint-rp-a05'),
          ev('RestorePointDamaged', { restorePointId: 'rp-b1', vmId: 'vm2', verifyId: 'v1', damaged: [{ kind: 'chunk', id: 'c1', damage: 'authentication' }], damagedCount: 1 }, 'restorepoint-rp-b1')],
        // Jobs running in a phase, cancelled, and a restore job (not a backup: not counted).
        [ev('JobRequested', { jobId: 'd0', vmId: 'vm2', policyId: 'p1', mode: 'auto', trigger: 'schedule' }, 'job-d0'), ev('JobStarted', { jobId: 'd0', attempt: 1 }, 'job-d0'),
          ev('SnapshotRequested', { jobId: 'd0', vmId: 'vm2', snapshotId: 's-d0' }, 'job-d0'),
          ev('JobRequested', { jobId: 'd1', vmId: 'vm2', policyId: 'p1', mode: 'auto', trigger: 'schedule' }, 'job-d1'),
          ev('JobCancelled', { jobId: 'd1', reason: 'operator asked' }, 'job-d1'),
          ev('RestoreRequested', { restoreId: 'r1', restorePointId: 'rp-b2', repository: 'local', ownTarget: false,
            target: { kind: 'file', disk: 'vda', path: '/restore/db.raw', format: 'raw', overwrite: false } }, 'restore-r1'),
          ev('RestoreCompleted', { restoreId: 'r1', disks: [{ disk: 'vda', path: '/restore/db.raw', sizeBytes: 4096 }], attempts: 1, durationMs: 99 }, 'restore-r1'),
          ...backup('e0', 'vm3', null), vm('vm4', 'new-1'), ev('VmRemoved', { vmId: 'vm4', name: 'new-1', hypervisor: { kind: 'qemu', host: 'host-1' } }, 'vm-vm4')],
      ];
      try {
        let appended = 0;
        for (const step of steps) {
          for (const e of step) await log.append(e.streamId, [e], { expectedRevision: 'any' });
          appended += step.length;
          await projector.waitForPosition(BigInt(appended));
          expect(await view.stats()).toEqual(await view.recountStats());
        }
        const stats = await view.stats();
        expect(stats).toMatchObject({
          jobsByState: { requested: 0, running: 1, completed: 16, failed: 1, cancelled: 1 },
          runningByPhase: { snapshot: 1 },
          restorePoints: { total: 16, live: 13, expired: 3 },
          completed: { jobs: 16, bytesRead: 16_000, durationMs: 800 },
          vms: 4,
          testRestores: { running: 1, passed: 2, failed: 1, refused: 1 },
          // rp-a05 (newest failed) and rp-a06 (passed) are gone; rp-b1 is damaged.
          restorePointsBootTested: { passed: 0, failed: 0, damaged: 1 },
        });
        await projector.rebuild();
        expect(await view.stats()).toEqual(stats);
        expect(await view.recountStats()).toEqual(stats);
      } finally {
        await projector.stop();
      }
    });

    it('rebuilds through the projector into a fresh store and swaps it in, equal to the live one', async () => {
      const log = new InMemoryEventLog(site);
      for (const e of history) await log.append(e.streamId, [e], { expectedRevision: 'any' });
      const projector = new CatalogueProjector({ log, backend: await harness.backend(), logger: pino({ level: 'silent' }) });
      await projector.start();
      try {
        await projector.waitForPosition(BigInt(history.length));
        const view = new CatalogueReadModel(() => projector.current);
        const before = { stats: await view.stats(), rps: await view.listRestorePoints({ includeExpired: true, limit: 100 }), audit: await view.auditTimeline({ limit: 1000 }) };
        expect(before.stats.restorePoints).toEqual({ total: 15, live: 14, expired: 1 });
        const outcome = await projector.rebuild();
        expect(outcome).toMatchObject({ events: history.length, position: BigInt(history.length) });
        expect({ stats: await view.stats(), rps: await view.listRestorePoints({ includeExpired: true, limit: 100 }), audit: await view.auditTimeline({ limit: 1000 }) })
          .toEqual(before);
        expect(await projector.status()).toMatchObject({ projecting: true, rebuilding: false, standby: false });
      } finally {
        await projector.stop();
      }
    });
  });
}
