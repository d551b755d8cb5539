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
