// The projector on the in-memory event log: catch-up in batches, restart after a failure,
// unreadable entries kept in order, and a rebuild that ends equal to a fresh projection
// even while events keep being appended.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { newEvent, type CairnEvent } from '@cairn/contracts';
import { InMemoryEventLog } from '@cairn/eventlog';
import { pino } from 'pino';
import { CatalogueDb } from './catalogue-db.adapter.ts';
import { CatalogueProjector } from './catalogue.projector.ts';
import { CatalogueReadModel } from './catalogue.read-model.ts';

const site = 'site-a';
const logger = pino({ level: 'silent' });
const projectors: CatalogueProjector[] = [];

function jobEvents(jobId: string): CairnEvent[] {
  const m = { site, actor: { kind: 'service' as const, id: 'test' }, streamId: `job-${jobId}`, correlationId: jobId };
  return [
    newEvent('JobRequested', { jobId, vmId: 'vm1', policyId: null, mode: 'full', trigger: 'manual' }, m),
    newEvent('JobStarted', { jobId, attempt: 1 }, m),
    newEvent('JobCancelled', { jobId, reason: 'test' }, m),
  ];
}

async function appendJobs(log: InMemoryEventLog, from: number, count: number): Promise<void> {
  for (let i = from; i < from + count; i++) await log.append(`job-j${i}`, jobEvents(`j${i}`), { expectedRevision: 'no_stream' });
}

function projector(log: InMemoryEventLog, options: { retryDelayMs?: number } = {}): CatalogueProjector {
  const p = new CatalogueProjector({ log, path: ':memory:', logger, ...options });
  projectors.push(p);
  return p;
}

const everything = async (p: CatalogueProjector) => {
  const read = new CatalogueReadModel(() => p.current);
  return { jobs: await read.listJobs({ limit: 1000 }), audit: await read.auditTimeline({ limit: 1000 }) };
};

afterEach(async () => {
  for (const p of projectors.splice(0)) await p.stop();
  vi.restoreAllMocks();
});

describe('CatalogueProjector', () => {
  it('catches up on a long log in batched transactions, then follows new events', async () => {
    const log = new InMemoryEventLog(site);
    await appendJobs(log, 0, 400);
    const apply = vi.spyOn(CatalogueDb.prototype, 'apply');
    const p = projector(log);
    await p.start();
    await p.waitForPosition(1200n);
    expect(apply.mock.calls.length).toBeLessThan(1200);
    expect(apply.mock.calls.reduce((n, [batch]) => n + batch.length, 0)).toBe(1200);
    await appendJobs(log, 400, 1);
    await p.waitForPosition(1203n);
    expect((await everything(p)).jobs).toHaveLength(401);
  });

  it('restarts after a failed batch and loses nothing', async () => {
    const log = new InMemoryEventLog(site);
    await appendJobs(log, 0, 3);
    const original = CatalogueDb.prototype.apply;
    vi.spyOn(CatalogueDb.prototype, 'apply').mockImplementationOnce(() => { throw new Error('disk full'); })
      .mockImplementation(function (this: CatalogueDb, events) { return original.call(this, events); });
    const p = projector(log, { retryDelayMs: 10 });
    await p.start();
    await p.waitForPosition(9n);
    expect(await p.status()).toMatchObject({ projecting: true, lastError: 'disk full' });
    expect((await everything(p)).audit.map((e) => e.position)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('keeps an unreadable entry in the timeline, in order, live and after a rebuild', async () => {
    const log = new InMemoryEventLog(site);
    await appendJobs(log, 0, 1);
    log.store.appendRaw('job-jx', new TextEncoder().encode('{"type":"NoSuchEvent","id":"bad-1"}'));
    await appendJobs(log, 1, 1);
    const p = projector(log);
    await p.start();
    await p.waitForPosition(7n);
    const live = await everything(p);
    expect(live.audit.map((e) => e.type)).toEqual(['JobRequested', 'JobStarted', 'JobCancelled', 'NoSuchEvent', 'JobRequested', 'JobStarted', 'JobCancelled']);
    expect(await p.rebuild()).toMatchObject({ events: 7, position: 7n });
    expect(await everything(p)).toEqual(live);
  });

  it('a rebuild while events keep arriving ends equal to a fresh projection of the whole log', async () => {
    const log = new InMemoryEventLog(site);
    await appendJobs(log, 0, 200);
    const p = projector(log);
    await p.start();
    await p.waitForPosition(600n);
    const [outcome] = await Promise.all([p.rebuild(), appendJobs(log, 200, 50)]);
    expect(outcome.position).toBeGreaterThanOrEqual(600n);
    await p.waitForPosition(750n);
    const fresh = projector(log);
    await fresh.start();
    await fresh.waitForPosition(750n);
    expect(await everything(p)).toEqual(await everything(fresh));
    expect(await p.status()).toMatchObject({ projecting: true, rebuilding: false, position: 750n });
  });
});
