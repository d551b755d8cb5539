// The one contract suite every event log adapter runs (in a few lines, see the *.spec.ts
// files beside the adapters). It states the port's promises as tests.
import { describe, expect, it } from 'vitest';
import { InvalidEventError, newEvent, type CairnEvent, type KnownEvent } from '@cairn/contracts';
import { EventTooLargeError, InvalidRecordError, WrongExpectedRevisionError, type InvalidRecord } from '../errors.ts';
import type { EventLog, EventSubscription, Recorded } from '../event-log.port.ts';
import { InMemoryCheckpointStore } from '../checkpoint-store.ts';
import { resetProjection, runProjection } from '../projection-runner.ts';

export interface EventLogFixture {
  readonly log: EventLog;
  /** A second writer on the same log through its own connection (races). */
  readonly otherLog: EventLog;
  /** Stores bytes as a record of the stream, bypassing every check of the adapter. */
  writeRaw(streamId: string, payload: Uint8Array): Promise<void>;
  /** Restarts the server under the log (kill, start); omitted where not applicable. */
  restartServer?: () => Promise<void>;
}

const actor = { kind: 'service' as const, id: 'contract-test' };
let counter = 0;
const uniq = () => `${Date.now().toString(36)}${(counter++).toString(36)}`;

function requested(site: string, jobId: string): CairnEvent {
  return newEvent('JobRequested', { jobId, vmId: 'vm-1', policyId: null, mode: 'auto', trigger: 'manual' }, { site, actor, streamId: `job-${jobId}` });
}
function started(site: string, jobId: string, attempt = 1): CairnEvent {
  return newEvent('JobStarted', { jobId, attempt }, { site, actor, streamId: `job-${jobId}` });
}
function discovered(site: string, vmId: string): CairnEvent {
  return newEvent('VmDiscovered', { vmId, name: vmId, hypervisor: { kind: 'qemu', host: 'h1' }, tags: [], disks: [] }, { site, actor, streamId: `vm-${vmId}` });
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** Takes `n` events from a subscription (bounded: fails instead of hanging). */
async function take(sub: EventSubscription, n: number, timeoutMs = 20_000): Promise<Recorded[]> {
  const out: Recorded[] = [];
  const it = sub[Symbol.asyncIterator]();
  const deadline = Date.now() + timeoutMs;
  while (out.length < n) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`subscription delivered ${out.length} of ${n} events in ${timeoutMs} ms`);
    let timer: NodeJS.Timeout | undefined;
    const next = await Promise.race([
      it.next(),
      new Promise<'timeout'>((r) => { timer = setTimeout(() => r('timeout'), left); }),
    ]);
    clearTimeout(timer);
    if (next === 'timeout') continue;
    if (next.done) throw new Error(`subscription ended after ${out.length} of ${n} events`);
    out.push(next.value);
  }
  return out;
}

export function eventLogContract(name: string, makeFixture: () => Promise<EventLogFixture>): void {
  describe(`event log contract: ${name}`, () => {
    it('appends to a stream and reads it back with revisions 0..n-1; a stream never written reads empty', async () => {
      const { log } = await makeFixture();
      const id = uniq();
      const first = await log.append(`job-${id}`, [requested(log.site, id)], { expectedRevision: 'no_stream' });
      expect(first.nextRevision).toBe(0n);
      const second = await log.append(`job-${id}`, [started(log.site, id), started(log.site, id, 2)], { expectedRevision: 0n });
      expect(second.nextRevision).toBe(2n);
      expect(second.position).toBeGreaterThan(first.position);
      const read = await collect(log.readStream(`job-${id}`));
      expect(read.map((r) => [r.revision, r.event.type])).toEqual([[0n, 'JobRequested'], [1n, 'JobStarted'], [2n, 'JobStarted']]);
      expect(read.at(-1)!.position).toBe(second.position);
      const tail = await collect(log.readStream(`job-${id}`, { fromRevision: 1n, maxCount: 1 }));
      expect(tail.map((r) => r.revision)).toEqual([1n]);
      expect(await collect(log.readStream(`job-never${id}`))).toEqual([]);
    });

    it('lets exactly one of two writers racing at the same revision win; the other gets WrongExpectedRevisionError', async () => {
      const { log, otherLog } = await makeFixture();
      const id = uniq();
      await log.append(`job-${id}`, [requested(log.site, id)], { expectedRevision: 'no_stream' });
      const results = await Promise.allSettled([
        log.append(`job-${id}`, [started(log.site, id, 1)], { expectedRevision: 0n }),
        otherLog.append(`job-${id}`, [started(log.site, id, 2)], { expectedRevision: 0n }),
      ]);
      const won = results.filter((r) => r.status === 'fulfilled');
      const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(won).toHaveLength(1);
      expect(lost).toHaveLength(1);
      const err = lost[0]!.reason as WrongExpectedRevisionError;
      expect(err).toBeInstanceOf(WrongExpectedRevisionError);
      expect(err.expected).toBe(0n);
      expect(err.actual).toBe(1n);
      expect(await collect(log.readStream(`job-${id}`))).toHaveLength(2);
      // the other expectations
      await expect(log.append(`job-${id}`, [started(log.site, id, 3)], { expectedRevision: 'no_stream' })).rejects.toMatchObject({ actual: 1n });
      await expect(log.append(`job-x${id}`, [requested(log.site, `x${id}`)], { expectedRevision: 'stream_exists' })).rejects.toMatchObject({ actual: 'no_stream' });
      await log.append(`job-${id}`, [started(log.site, id, 4)], { expectedRevision: 'stream_exists' });
      const any = await log.append(`job-${id}`, [started(log.site, id, 5)], { expectedRevision: 'any' });
      expect(any.nextRevision).toBe(3n);
    });

    it('stores an append retried with the same event ids once, and completes a batch cut short', async () => {
      const { log, otherLog } = await makeFixture();
      const id = uniq();
      const batch = [requested(log.site, id), started(log.site, id)];
      const a = await log.append(`job-${id}`, batch, { expectedRevision: 'no_stream' });
      const b = await otherLog.append(`job-${id}`, batch, { expectedRevision: 'no_stream' });
      expect(b).toEqual(a);
      const c = await log.append(`job-${id}`, [batch[1]!], { expectedRevision: 0n });
      expect(c).toEqual(a);
      const more = started(log.site, id, 2);
      await log.append(`job-${id}`, [more], { expectedRevision: 'any' });
      await log.append(`job-${id}`, [more], { expectedRevision: 'any' });
      expect((await collect(log.readStream(`job-${id}`))).map((r) => r.event.id)).toEqual([...batch.map((e) => e.id), more.id]);

      // a crash after the first event of a batch: the retry writes only the rest
      const id2 = uniq();
      const batch2 = [requested(log.site, id2), started(log.site, id2), started(log.site, id2, 2)];
      await log.append(`job-${id2}`, [batch2[0]!], { expectedRevision: 'no_stream' });
      const done = await log.append(`job-${id2}`, batch2, { expectedRevision: 'no_stream' });
      expect(done.nextRevision).toBe(2n);
      expect((await collect(log.readStream(`job-${id2}`))).map((r) => r.event.id)).toEqual(batch2.map((e) => e.id));
    });

    it('refuses an invalid or misplaced event before writing anything', async () => {
      const { log } = await makeFixture();
      const id = uniq();
      const bad = { ...requested(log.site, id), data: { jobId: id } };
      await expect(log.append(`job-${id}`, [requested(log.site, id), bad], { expectedRevision: 'no_stream' })).rejects.toBeInstanceOf(InvalidEventError);
      await expect(log.append(`job-other${id}`, [requested(log.site, id)], { expectedRevision: 'any' })).rejects.toMatchObject({ code: 'wrong_stream' });
      const foreign = newEvent('JobStarted', { jobId: id, attempt: 1 }, { site: 'elsewhere', actor, streamId: `job-${id}` });
      await expect(log.append(`job-${id}`, [foreign], { expectedRevision: 'any' })).rejects.toMatchObject({ code: 'wrong_stream' });
      expect(await collect(log.readStream(`job-${id}`))).toEqual([]);
    });

    it('reads everything after position N: exactly those events, in order', async () => {
      const { log } = await makeFixture();
      const start = await log.headPosition();
      const written: CairnEvent[] = [];
      for (let i = 0; i < 5; i++) {
        const id = uniq();
        const evs = [requested(log.site, id), started(log.site, id)];
        await log.append(`job-${id}`, evs, { expectedRevision: 'no_stream' });
        const vm = discovered(log.site, `v${id}`);
        await log.append(`vm-v${id}`, [vm], { expectedRevision: 'any' });
        written.push(...evs, vm);
      }
      const all = await collect(log.readAll({ fromPosition: start }));
      expect(all.map((r) => r.event.id)).toEqual(written.map((e) => e.id));
      for (let i = 1; i < all.length; i++) expect(all[i]!.position).toBeGreaterThan(all[i - 1]!.position);
      const n = all[6]!.position;
      const after = await collect(log.readAll({ fromPosition: n }));
      expect(after.map((r) => r.event.id)).toEqual(written.slice(7).map((e) => e.id));
      const page = await collect(log.readAll({ fromPosition: n, maxCount: 2 }));
      expect(page.map((r) => r.event.id)).toEqual(written.slice(7, 9).map((e) => e.id));
      expect(await collect(log.readAll({ fromPosition: await log.headPosition() }))).toEqual([]);
      // One category only; none after the last of it, none of a category never written.
      const vms = await collect(log.readAll({ fromPosition: start, category: 'vm' }));
      expect(vms.map((r) => r.event.id)).toEqual(written.filter((e) => e.streamId.startsWith('vm-')).map((e) => e.id));
      const lastJob = uniq();
      await log.append(`job-${lastJob}`, [requested(log.site, lastJob)], { expectedRevision: 'no_stream' });
      expect(await collect(log.readAll({ fromPosition: vms[vms.length - 1]!.position, category: 'vm' }))).toEqual([]);
      expect(await collect(log.readAll({ fromPosition: start, category: 'nosuch' }))).toEqual([]);
    });

    it('subscribes from position 0: history, then live events, no gap, no duplicate (across a server restart where there is one)', async () => {
      const fx = await makeFixture();
      const { log } = fx;
      const expected: string[] = [];
      const write = async (k: number) => {
        for (let i = 0; i < k; i++) {
          const id = uniq();
          const evs = [requested(log.site, id), started(log.site, id)];
          await log.append(`job-${id}`, evs, { expectedRevision: 'no_stream' });
          expected.push(...evs.map((e) => e.id));
        }
      };
      const head0 = await log.headPosition();
      await write(3);
      const sub = log.subscribe({ from: head0 });
      const got = await take(sub, 6);
      await write(2);
      got.push(...await take(sub, 4));
      if (fx.restartServer) {
        await write(1);
        await fx.restartServer();
        await write(2);
        got.push(...await take(sub, 6));
      }
      await write(1);
      got.push(...await take(sub, 2));
      await sub.stop();
      expect(got.map((r) => r.event.id)).toEqual(expected);
      for (let i = 1; i < got.length; i++) expect(got[i]!.position).toBeGreaterThan(got[i - 1]!.position);
      expect(sub.position).toBe(got.at(-1)!.position);

      // 'end' and a category filter
      const vms = log.subscribe({ from: 'end', category: 'vm' });
      const it = vms[Symbol.asyncIterator]();
      const first = it.next();
      await new Promise((r) => setTimeout(r, 300));
      const id = uniq();
      await log.append(`job-${id}`, [requested(log.site, id)], { expectedRevision: 'no_stream' });
      const vm = discovered(log.site, `v${id}`);
      await log.append(`vm-v${id}`, [vm], { expectedRevision: 'no_stream' });
      expect((await first).value?.event.id).toBe(vm.id);
      await vms.stop();
      expect((await it.next()).done).toBe(true);
    });

    it('rebuilds a dropped projection from the log to the same state as the live one', async () => {
      const { log } = await makeFixture();
      const checkpoints = new InMemoryCheckpointStore();
      const from = await log.headPosition();
      type Model = Map<string, { status: string; events: number }>;
      const project = (model: Model) => (r: Recorded) => {
        const e: KnownEvent = r.event;
        if (r.position <= from) return;
        const row = model.get(e.streamId) ?? { status: 'none', events: 0 };
        row.events++;
        if (e.type === 'JobRequested') row.status = 'requested';
        if (e.type === 'JobStarted') row.status = `started#${e.data.attempt}`;
        model.set(e.streamId, row);
      };
      const live: Model = new Map();
      const running = await runProjection({ name: 'jobs', log, checkpointStore: checkpoints, category: 'job', handle: project(live) });
      let last = 0n;
      for (let i = 0; i < 4; i++) {
        const id = uniq();
        await log.append(`job-${id}`, [requested(log.site, id)], { expectedRevision: 'no_stream' });
        last = (await log.append(`job-${id}`, [started(log.site, id, i + 1)], { expectedRevision: 0n })).position;
      }
      await running.waitForPosition(last);
      await running.stop();
      expect(await checkpoints.load('jobs')).toBe(last);
      expect(live.size).toBe(4);

      await resetProjection('jobs', checkpoints);
      const rebuilt: Model = new Map();
      const again = await runProjection({ name: 'jobs', log, checkpointStore: checkpoints, category: 'job', handle: project(rebuilt) });
      await again.waitForPosition(last);
      await again.stop();
      expect(rebuilt).toEqual(live);
    });

    it('reads an event stored in an old schema version upcast to the current one', async () => {
      const { log, writeRaw } = await makeFixture();
      const id = uniq();
      await log.append(`job-${id}`, [requested(log.site, id)], { expectedRevision: 'no_stream' });
      const v1 = { ...started(log.site, id), type: 'JobFailed', schemaVersion: 1, data: { jobId: id, step: 'snapshot', error: 'qmp timeout' } };
      await writeRaw(`job-${id}`, new TextEncoder().encode(JSON.stringify(v1)));
      const read = await collect(log.readStream(`job-${id}`));
      expect(read.map((r) => r.revision)).toEqual([0n, 1n]);
      const failed = read[1]!.event;
      expect(failed.schemaVersion).toBe(2);
      expect(failed.data).toEqual({ jobId: id, phase: 'snapshot', reason: 'qmp timeout', retryable: false });
      // and the stream goes on at the next revision
      expect((await log.append(`job-${id}`, [started(log.site, id)], { expectedRevision: 1n })).nextRevision).toBe(2n);
    });

    it('reports unreadable records (bad JSON, a future schema version) and refuses an oversize event, losing nothing', async () => {
      const { log, writeRaw } = await makeFixture();
      const from = await log.headPosition();
      const id = uniq();
      const before = requested(log.site, id);
      await log.append(`job-${id}`, [before], { expectedRevision: 'no_stream' });
      await writeRaw(`job-${id}`, new TextEncoder().encode('{"id": "oops", not json'));
      const future = { ...started(log.site, id), schemaVersion: 99 };
      await writeRaw(`job-${id}`, new TextEncoder().encode(JSON.stringify(future)));
      const huge = newEvent('JobCancelled', { jobId: id, reason: 'x'.repeat(4000) }, { site: log.site, actor, streamId: `job-${id}` });
      const oversize = newEvent('MessageDeadLettered', {
        consumer: 'c', subject: 's', reason: 'x'.repeat(4000), deliveries: 1, payloadPreview: '', payloadBytes: 0,
        headers: Object.fromEntries(Array.from({ length: 400 }, (_, i) => [`h${i}`, ['y'.repeat(4000)]])),
      }, { site: log.site, actor, streamId: `deadletter-${id}` });
      await expect(log.append(`deadletter-${id}`, [oversize], { expectedRevision: 'any' })).rejects.toBeInstanceOf(EventTooLargeError);
      const after = huge;
      await log.append(`job-${id}`, [after], { expectedRevision: 'any' });

      const bad: InvalidRecord[] = [];
      const all = await collect(log.readAll({ fromPosition: from, onInvalid: (r) => { bad.push(r); } }));
      expect(all.map((r) => r.event.id)).toEqual([before.id, after.id]);
      expect(bad.map((r) => r.error.code)).toEqual(['malformed_json', 'unknown_version']);
      expect(bad[1]!.error.message).toContain('newer than this build knows');
      expect(new TextDecoder().decode(bad[0]!.payload)).toContain('not json');
      expect(bad[0]!.position).toBeGreaterThan(all[0]!.position);
      expect(all[1]!.revision).toBe(3n);

      const streamBad: InvalidRecord[] = [];
      const stream = await collect(log.readStream(`job-${id}`, { onInvalid: (r) => { streamBad.push(r); } }));
      expect(stream.map((r) => r.event.id)).toEqual([before.id, after.id]);
      expect(streamBad).toHaveLength(2);

      await expect(collect(log.readAll({ fromPosition: from }))).rejects.toBeInstanceOf(InvalidRecordError);

      const subBad: InvalidRecord[] = [];
      const sub = log.subscribe({ from, onInvalid: (r) => { subBad.push(r); } });
      const got = await take(sub, 2);
      await sub.stop();
      expect(got.map((r) => r.event.id)).toEqual([before.id, after.id]);
      expect(subBad.map((r) => r.error.code)).toEqual(['malformed_json', 'unknown_version']);
      // without a hook, the subscription ends at the bad record with the typed error (after the good one before it)
      const strict = log.subscribe({ from });
      const strictIt = strict[Symbol.asyncIterator]();
      expect((await strictIt.next()).value?.event.id).toBe(before.id);
      await expect(strictIt.next()).rejects.toBeInstanceOf(InvalidRecordError);
      await strict.stop();
      expect(await collect(log.readStream(`deadletter-${id}`))).toEqual([]);
    });
  });
}
