// The catalogue's `stats` aggregates are exact however many jobs and restore points there are:
// 1,500 completed backups (beyond the 1,000 a list query answers), failed and running jobs in
// known phases, expired restore points; checked against sums computed here from the events.
import { describe, expect, it } from 'vitest';
import { newEvent, type CairnEvent, type EventDataMap, type EventType, type RecordedEvent } from '@cairn/contracts';
import { CatalogueDb, SqliteCatalogueStore } from './catalogue-db.adapter.ts';
import { CatalogueReadModel } from './catalogue.read-model.ts';
import { CatalogueQueryHandlers } from './catalogue-queries.handlers.ts';

const site = 'site-a';
let clock = Date.parse('2026-01-01T00:00:00Z');

function ev<K extends EventType>(type: K, data: EventDataMap[K], streamId: string): CairnEvent {
  clock += 1000;
  return newEvent(type, data, {
    site, streamId, actor: { kind: 'service', id: 'scheduler@site-a' }, time: new Date(clock), causationId: null,
    correlationId: streamId.startsWith('job-') ? streamId.slice(4) : streamId,
  });
}

function job(jobId: string, until: 'snapshot' | 'transfer' | 'failed' | 'completed', read = 0, stored = 0, durationMs = 0): CairnEvent[] {
  const s = `job-${jobId}`;
  const out = [
    ev('JobRequested', { jobId, vmId: 'vm1', policyId: null, mode: 'auto', trigger: 'manual' }, s),
    ev('JobStarted', { jobId, attempt: 1 }, s),
    ev('SnapshotRequested', { jobId, vmId: 'vm1', snapshotId: `s-${jobId}` }, s),
  ];
  if (until === 'snapshot') return out;
  if (until === 'failed') return [...out, ev('JobFailed', { jobId, phase: 'snapshot', reason: 'gone', retryable: false }, s)];
  out.push(
    ev('SnapshotTaken', { jobId, snapshotId: `s-${jobId}`, nbd: { socket: '/run/x.sock', exports: [{ disk: 'vda', exportName: 'vda', sizeBytes: 8192, mode: 'full', reason: 't' }] } }, s),
    ev('TransferQueued', { jobId, snapshotId: `s-${jobId}`, queue: 'transfer' }, s),
    ev('TransferStarted', { jobId, worker: 'dm@1' }, s),
  );
  if (until === 'transfer') return out;
  return [
    ...out,
    ev('RestorePointCommitted', { restorePointId: `rp-${jobId}`, jobId, vmId: 'vm1', parentId: null, disks: [{ name: 'vda', sizeBytes: 8192, bytesRead: read, bytesStored: stored, chunksNew: 1, chunksReused: 1 }] }, s),
    ev('SnapshotReleased', { jobId, snapshotId: `s-${jobId}`, cause: 'job_ended' }, s),
    ev('JobCompleted', { jobId, restorePointId: `rp-${jobId}`, bytesRead: read, bytesStored: stored, durationMs }, s),
  ];
}

describe('catalogue.stats', () => {
  it('counts and sums exactly over 1,500 completed jobs, failed and running ones, and expired restore points', async () => {
    const db = CatalogueDb.open(':memory:');
    const store = new SqliteCatalogueStore(db);
    const read = new CatalogueReadModel(() => store);
    let position = 0n;
    const apply = (events: CairnEvent[]) => db.apply(events.map((event): RecordedEvent => ({ event, position: ++position, revision: 0n })));
    apply([ev('VmDiscovered', { vmId: 'vm1', name: 'web-1', hypervisor: { kind: 'qemu', host: 'h1' }, tags: [], disks: [{ name: 'vda', sizeBytes: 8192 }] }, 'vm-vm1')]);

    let read_ = 0; let stored = 0; let duration = 0; let liveRead = 0; let liveStored = 0;
    for (let i = 0; i < 1500; i++) {
      const r = 1_000_000 + i * 7; const s = 300_000 + i * 3; const d = 1000 + i;
      read_ += r; stored += s; duration += d;
      const events = job(`c${i}`, 'completed', r, s, d);
      if (i % 100 === 0) events.push(ev('RestorePointExpired', { restorePointId: `rp-c${i}`, vmId: 'vm1', policyId: 'p1', reason: 'retention' }, `restorepoint-rp-c${i}`));
      else { liveRead += r; liveStored += s; }
      apply(events);
    }
    for (let i = 0; i < 12; i++) apply(job(`f${i}`, 'failed'));
    for (let i = 0; i < 3; i++) apply(job(`s${i}`, 'snapshot'));
    for (let i = 0; i < 5; i++) apply(job(`t${i}`, 'transfer'));

    const stats = await read.stats();
    expect(stats).toEqual({
      position: Number(position),
      jobsByState: { requested: 0, running: 8, completed: 1500, failed: 12, cancelled: 0 },
      runningByPhase: { schedule: 0, snapshot: 3, transfer: 5, commit: 0, release: 0 },
      restorePoints: { total: 1500, live: 1485, expired: 15 },
      bytesRead: read_, bytesStored: stored, liveBytesRead: liveRead, liveBytesStored: liveStored,
      completed: { jobs: 1500, bytesRead: read_, durationMs: duration },
      vms: 1,
      testRestores: { running: 0, passed: 0, failed: 0, refused: 0 }, restorePointsBootTested: { passed: 0, failed: 0, damaged: 0 },
    });
    const handlers = new CatalogueQueryHandlers(read, { status: () => Promise.reject(new Error('unused')), rebuild: () => Promise.reject(new Error('unused')) });
    // What a list query gives (how /metrics counted before): capped at 1,000.
    expect(await handlers.handle('job.list', { state: 'completed', limit: 1000 })).toMatchObject({ ok: true, result: { items: { length: 1000 } } });
    expect(await handlers.handle('job.list', { state: 'completed', limit: 1001 })).toMatchObject({ ok: false });

    // The running totals agree with sums over every row.
    expect(await read.recountStats()).toEqual(stats);
    // The stats query answers the same through the handlers.
    expect(await handlers.handle('catalogue.stats', {})).toEqual({ ok: true, result: stats });
    expect(await handlers.handle('catalogue.stats', { extra: 1 })).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    db.close();
  });

  it('is all zeros on an empty catalogue', async () => {
    const db = CatalogueDb.open(':memory:');
    expect(await new CatalogueReadModel(() => new SqliteCatalogueStore(db)).stats()).toMatchObject({
      position: 0, jobsByState: { completed: 0, running: 0 }, restorePoints: { total: 0, live: 0, expired: 0 }, bytesRead: 0, bytesStored: 0,
      completed: { jobs: 0, bytesRead: 0, durationMs: 0 }, vms: 0,
    });
    db.close();
  });
});
