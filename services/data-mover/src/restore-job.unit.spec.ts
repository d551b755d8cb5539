// A restore request appends without reading its stream first (it expects none): a retry under
// the same id, or another request under it, must still meet what the stream holds.
import { describe, expect, it } from 'vitest';
import { InMemoryEventLog } from '@cairn/eventlog';
import type { KnownEvent, RequestRestoreV1, RestoreWork } from '@cairn/contracts';
import { RestoreRefused, type DataMover, type MoverLogger } from './data-mover.service.ts';
import { RestoreJobs } from './restore-job.ts';

const SITE = 'site-a';
const noLog = { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined } as unknown as MoverLogger;

function jobs(log: InMemoryEventLog, queued: RestoreWork[]) {
  return new RestoreJobs({
    site: SITE, actor: { kind: 'service', id: 'data-mover' },
    enqueue: async (w) => { queued.push(w); },
    publishProgress: () => undefined,
  }, log, {} as DataMover, noLog);
}

const request = (path: string): RequestRestoreV1 => ({
  restoreId: 'r-1', restorePointId: 'rp-1', target: { kind: 'file', disk: 'disk0', path, format: 'raw', overwrite: false },
});

async function events(log: InMemoryEventLog, streamId: string): Promise<KnownEvent[]> {
  const out: KnownEvent[] = [];
  for await (const r of log.readStream(streamId)) out.push(r.event);
  return out;
}

describe('RestoreJobs.request', () => {
  it('the same request twice under one id is one RestoreRequested; the retry queues the work again without saying where the stream was', async () => {
    const log = new InMemoryEventLog(SITE);
    const queued: RestoreWork[] = [];
    const j = jobs(log, queued);
    const actor = { kind: 'user' as const, id: 'admin' };
    expect(await j.request(request('/tmp/a.raw'), actor, true, 'c-1')).toEqual({ restoreId: 'r-1' });
    expect(await j.request(request('/tmp/a.raw'), actor, true, 'c-2')).toEqual({ restoreId: 'r-1' });
    expect((await events(log, 'restore-r-1')).map((e) => e.type)).toEqual(['RestoreRequested']);
    expect(queued).toHaveLength(2);
    expect(queued[0]!.requested?.revision).toBe(0);
    expect(queued[1]!.requested).toBeUndefined();
  });

  it('another request under an id already used is refused as a conflict, and the stream keeps the first', async () => {
    const log = new InMemoryEventLog(SITE);
    const queued: RestoreWork[] = [];
    const j = jobs(log, queued);
    const actor = { kind: 'user' as const, id: 'admin' };
    await j.request(request('/tmp/a.raw'), actor, true, 'c-1');
    await expect(j.request(request('/tmp/b.raw'), actor, true, 'c-2')).rejects.toBeInstanceOf(RestoreRefused);
    const recorded = await events(log, 'restore-r-1');
    expect(recorded).toHaveLength(1);
    expect(recorded[0]!.type === 'RestoreRequested' && recorded[0]!.data.target).toMatchObject({ path: '/tmp/a.raw' });
    expect(queued).toHaveLength(1);
  });
});

describe('RestoreJobs: the source opened at the request', () => {
  const manifest = { disks: [{ name: 'disk0', sizeBytes: 1024 }] };
  function fakeMover(restoreSource: () => Promise<unknown>) {
    const repo = {
      location: '/repo',
      restoreDisk: async () => ({ sizeBytes: 1024, chunksRead: 1, chunksZero: 0, timings: { writeMs: 1, syncMs: 0, finishMs: 0 } }),
    };
    let opens = 0;
    const mover = {
      worker: 'mover-1',
      whileBusy: <T>(f: () => Promise<T>) => f(),
      restoreSource: async () => { opens++; await restoreSource(); return { repo, source: 'local', manifest }; },
      checkRestoreTarget: async (p: string) => p,
      restoreThrottle: () => undefined,
    } as unknown as DataMover;
    return { mover, opens: () => opens };
  }
  const jobsOn = (log: InMemoryEventLog, queued: RestoreWork[], mover: DataMover) => new RestoreJobs({
    site: SITE, actor: { kind: 'service', id: 'data-mover' }, enqueue: async (w) => { queued.push(w); }, publishProgress: () => undefined,
  }, log, mover, noLog);

  it('is the one the work plans and writes on: one manifest read per restore, not one at the plan and one after RestoreStarted', async () => {
    const log = new InMemoryEventLog(SITE);
    const queued: RestoreWork[] = [];
    const { mover, opens } = fakeMover(async () => undefined);
    const j = jobsOn(log, queued, mover);
    await j.request(request('/tmp/one.raw'), { kind: 'user', id: 'admin' }, true, 'c-1');
    expect(await j.run(queued[0]!, () => undefined)).toBe('completed');
    expect(opens()).toBe(1);
    expect((await events(log, 'restore-r-1')).map((e) => e.type)).toEqual(['RestoreRequested', 'RestoreStarted', 'DiskRestored', 'RestoreCompleted']);
    // A redelivery (another attempt, or another mover) opens the source itself.
    const again = new InMemoryEventLog(SITE);
    const queued2: RestoreWork[] = [];
    const other = fakeMover(async () => undefined);
    const j2 = jobsOn(again, queued2, other.mover);
    await j2.request(request('/tmp/two.raw'), { kind: 'user', id: 'admin' }, true, 'c-2');
    const fresh = jobsOn(again, [], other.mover);
    expect(await fresh.run(queued2[0]!, () => undefined)).toBe('completed');
    expect(other.opens()).toBe(2);
  });

  it('a restore point the request could not open fails the job as not found, as a plan that opens it does', async () => {
    const log = new InMemoryEventLog(SITE);
    const queued: RestoreWork[] = [];
    const { mover } = fakeMover(async () => { throw new RestoreRefused('not_found', 'no restore point rp-1'); });
    const j = jobsOn(log, queued, mover);
    await j.request(request('/tmp/three.raw'), { kind: 'user', id: 'admin' }, true, 'c-1');
    await expect(j.run(queued[0]!, () => undefined)).rejects.toMatchObject({ code: 'not_found' });
  });
});
