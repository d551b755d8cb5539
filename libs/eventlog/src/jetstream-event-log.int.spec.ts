import { describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { eventSubject, newEvent } from '@cairn/contracts';
import { useHarness } from '@cairn/testing';
import { eventLogContract } from './testing/event-log.contract.ts';
import { JetStreamEventLog, REVISION_HEADER } from './jetstream-event-log.adapter.ts';
import { EventTooLargeError, WrongExpectedRevisionError } from './errors.ts';
import { decodeRecord } from './codec.ts';

const h = useHarness();
let server: Awaited<ReturnType<typeof h.nats>> | undefined;
let sites = 0;

async function client(url: string): Promise<NatsConnection> {
  const nc = await connect({ servers: url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  h.onClose(() => nc.close());
  return nc;
}

eventLogContract('NATS JetStream', async () => {
  server ??= await h.nats({ domain: 'site-a' });
  const site = `site-${++sites}`;
  const nc = await client(server.url);
  const log = await JetStreamEventLog.open({ nc, site });
  const otherLog = await JetStreamEventLog.open({ nc: await client(server.url), site });
  const js = jetstream(nc);
  const s = server;
  return {
    log,
    otherLog,
    writeRaw: async (streamId, payload) => { await js.publish(eventSubject(site, streamId), payload); },
    restartServer: async () => { await s.kill('SIGKILL'); await s.start(); },
  };
});

describe('JetStream event log specifics', () => {
  const actor = { kind: 'service' as const, id: 'js-test' };

  it('stores a repeated event once even after the duplicate window has passed', async () => {
    server ??= await h.nats({ domain: 'site-a' });
    const nc = await client(server.url);
    const log = await JetStreamEventLog.open({ nc, site: 'site-window', duplicateWindowMs: 1_000 });
    const e = newEvent('JobStarted', { jobId: 'w', attempt: 1 }, { site: 'site-window', actor, streamId: 'job-w' });
    const first = await log.append('job-w', [e], { expectedRevision: 'any' });
    await new Promise((r) => setTimeout(r, 1_500));
    expect(await log.append('job-w', [e], { expectedRevision: 'any' })).toEqual(first);
    expect(await log.append('job-w', [e], { expectedRevision: 'no_stream' })).toEqual(first);
    expect(await log.headPosition()).toBe(first.position);
  });

  it('refuses an event larger than the server accepts before sending it', async () => {
    const small = await h.nats({ maxPayload: 4096 });
    const nc = await client(small.url);
    const log = await JetStreamEventLog.open({ nc, site: 'site-small' });
    const e = newEvent('JobCancelled', { jobId: 's', reason: 'x'.repeat(4000) }, { site: 'site-small', actor, streamId: 'job-s' });
    const err = await log.append('job-s', [e], { expectedRevision: 'any' }).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(EventTooLargeError);
    expect((err as EventTooLargeError).maxBytes).toBe(4096 - 512);
    expect(await log.headPosition()).toBe(0n);
  });

  it('appends on a head it knows without reading it; a head moved on by another client is refused by the server and read', async () => {
    server ??= await h.nats({ domain: 'site-a' });
    const site = 'site-heads';
    const [a, b] = [await JetStreamEventLog.open({ nc: await client(server.url), site }), await JetStreamEventLog.open({ nc: await client(server.url), site })];
    // Every read of a subject's last message, whoever sends it.
    const watcher = await client(server.url);
    let reads = 0;
    watcher.subscribe('$JS.>', { callback: (_e, m) => { if (/\.(MSG|DIRECT)\.GET\./.test(m.subject)) reads++; } });
    await watcher.flush();
    const e = (n: number) => newEvent('JobStarted', { jobId: 'h', attempt: n }, { site, actor, streamId: 'job-h' });
    const settle = async () => { await watcher.flush(); await new Promise((r) => setTimeout(r, 50)); };
    // A new stream, then the revision a wrote: no read.
    const e0 = e(1);
    const first = await a.append('job-h', [e0], { expectedRevision: 'no_stream' });
    expect(await a.append('job-h', [e(2)], { expectedRevision: 0n })).toMatchObject({ nextRevision: 1n });
    await settle();
    expect(reads).toBe(0);
    // A repeat of the first append (its answer lost) is still recognised: the same result.
    expect(await a.append('job-h', [e0], { expectedRevision: 'no_stream' })).toEqual(first);
    // b has not seen the stream: it reads the head once.
    await b.append('job-h', [e(3)], { expectedRevision: 1n });
    await settle();
    const afterB = reads;
    expect(afterB).toBeGreaterThan(0);
    // a's knowledge (revision 1) is stale: the server refuses the publish, a reads and reports the conflict.
    const err = await a.append('job-h', [e(4)], { expectedRevision: 1n }).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(WrongExpectedRevisionError);
    expect((err as WrongExpectedRevisionError).actual).toBe(2n);
    await settle();
    expect(reads).toBeGreaterThan(afterB);
    // Having read it, a appends at revision 2 without reading again.
    const beforeLast = reads;
    expect(await a.append('job-h', [e(5)], { expectedRevision: 2n })).toMatchObject({ nextRevision: 3n });
    await settle();
    expect(reads).toBe(beforeLast);
    const types: bigint[] = [];
    for await (const r of b.readStream('job-h')) types.push(r.revision);
    expect(types).toEqual([0n, 1n, 2n, 3n]);
  });

  it('reads a stream\'s last event alone; a core subscriber of its subject gets each append with its revision, and a refused one too', async () => {
    server ??= await h.nats({ domain: 'site-a' });
    const site = 'site-last';
    const [a, b] = [await JetStreamEventLog.open({ nc: await client(server.url), site }), await JetStreamEventLog.open({ nc: await client(server.url), site })];
    const watcher = await client(server.url);
    const pushed: Array<{ revision: string | undefined; id: string | undefined }> = [];
    watcher.subscribe(eventSubject(site, 'job-l'), { callback: (_e, m) => {
      const d = decodeRecord(m.data, 0n, m.subject);
      pushed.push({ revision: m.headers?.get(REVISION_HEADER), id: d.ok ? d.event.id : undefined });
    } });
    await watcher.flush();
    expect(await a.lastEvent('job-l')).toBeUndefined();
    const e = (n: number) => newEvent('JobStarted', { jobId: 'l', attempt: n }, { site, actor, streamId: 'job-l' });
    const [e0, e1, stale] = [e(1), e(2), e(3)];
    await a.append('job-l', [e0], { expectedRevision: 'no_stream' });
    await b.append('job-l', [e1], { expectedRevision: 0n });
    // Refused by JetStream (revision 1 is taken), yet published on the subject all the same.
    await expect(a.append('job-l', [stale], { expectedRevision: 0n })).rejects.toBeInstanceOf(WrongExpectedRevisionError);
    await watcher.flush();
    await new Promise((r) => setTimeout(r, 50));
    expect(pushed).toEqual([{ revision: '0', id: e0.id }, { revision: '1', id: e1.id }, { revision: '1', id: stale.id }]);
    const last = await b.lastEvent('job-l');
    expect(last?.revision).toBe(1n);
    expect(last?.event.id).toBe(e1.id);
  });

  it('an append expecting no stream on a stream that exists is refused without writing', async () => {
    server ??= await h.nats({ domain: 'site-a' });
    const site = 'site-exists';
    const [a, b] = [await JetStreamEventLog.open({ nc: await client(server.url), site }), await JetStreamEventLog.open({ nc: await client(server.url), site })];
    await a.append('job-x', [newEvent('JobStarted', { jobId: 'x', attempt: 1 }, { site, actor, streamId: 'job-x' })], { expectedRevision: 'no_stream' });
    const err = await b.append('job-x', [newEvent('JobStarted', { jobId: 'x', attempt: 2 }, { site, actor, streamId: 'job-x' })], { expectedRevision: 'no_stream' }).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(WrongExpectedRevisionError);
    const seen: bigint[] = [];
    for await (const r of b.readStream('job-x')) seen.push(r.revision);
    expect(seen).toEqual([0n]);
  });

  it('reads a short stream back from its last message, without a consumer over the rest of the log (issue 19)', async () => {
    server ??= await h.nats({ domain: 'site-a' });
    const site = 'site-chain';
    const log = await JetStreamEventLog.open({ nc: await client(server.url), site });
    const watcher = await client(server.url);
    let consumers = 0;
    let gets = 0;
    watcher.subscribe('$JS.>', { callback: (_e, m) => {
      if (/\.CONSUMER\.CREATE\./.test(m.subject)) consumers++;
      if (/\.(MSG|DIRECT)\.GET\./.test(m.subject)) gets++;
    } });
    await watcher.flush();
    const settle = async () => { await watcher.flush(); await new Promise((r) => setTimeout(r, 50)); };
    const job = (i: number) => newEvent('JobStarted', { jobId: `u${i}`, attempt: 1 }, { site, actor, streamId: `job-u${i}` });
    const mine = (n: number) => newEvent('JobStarted', { jobId: 'mine', attempt: n }, { site, actor, streamId: 'job-mine' });
    // Three events of one stream among 600 of others (each its own stream, as restore points are).
    for (let i = 0; i < 600; i++) {
      await log.append(`job-u${i}`, [job(i)], { expectedRevision: 'no_stream' });
      if (i === 100) await log.append('job-mine', [mine(1)], { expectedRevision: 'no_stream' });
      if (i === 300) await log.append('job-mine', [mine(2), mine(3)], { expectedRevision: 0n });
    }
    await settle();
    const [c0, g0] = [consumers, gets];
    const read: number[] = [];
    for await (const r of log.readStream('job-mine')) read.push((r.event.data as { attempt: number }).attempt);
    expect(read).toEqual([1, 2, 3]);
    await settle();
    // Its last message, then the two before it by sequence: no consumer, nothing else read.
    expect(consumers - c0).toBe(0);
    expect(gets - g0).toBe(3);
    const revisions: bigint[] = [];
    for await (const r of log.readStream('job-mine', { fromRevision: 1n })) revisions.push(r.revision);
    expect(revisions).toEqual([1n, 2n]);

    // A message written around this adapter (no per-subject expectation) breaks the chain: read
    // through a consumer as before, every event in order.
    await jetstream(watcher).publish(eventSubject(site, 'job-mine'), JSON.stringify(mine(4)));
    await log.append('job-mine', [mine(5)], { expectedRevision: 'any' });
    await settle();
    const c1 = consumers;
    const all: number[] = [];
    for await (const r of log.readStream('job-mine')) all.push((r.event.data as { attempt: number }).attempt);
    expect(all).toEqual([1, 2, 3, 4, 5]);
    await settle();
    expect(consumers - c1).toBe(1);
  });

  it('follows a few-streams category from the start by reading its streams, then from the head, in log order (issue 19)', async () => {
    server ??= await h.nats({ domain: 'site-a' });
    const site = 'site-few';
    const log = await JetStreamEventLog.open({ nc: await client(server.url), site });
    const watcher = await client(server.url);
    const starts: number[] = [];
    watcher.subscribe('$JS.API.CONSUMER.CREATE.>', { callback: (_e, m) => {
      starts.push((JSON.parse(m.string()) as { config: { opt_start_seq?: number } }).config.opt_start_seq ?? 0);
    } });
    await watcher.flush();
    const job = (i: number) => newEvent('JobStarted', { jobId: `f${i}`, attempt: 1 }, { site, actor, streamId: `job-f${i}` });
    const user = (id: string, first: boolean) => first
      ? newEvent('UserCreated', { userId: id, roles: ['auditor'] }, { site, actor, streamId: `user-${id}` })
      : newEvent('UserRolesChanged', { userId: id, roles: ['operator'] }, { site, actor, streamId: `user-${id}` });
    // Two streams of the category among 300 events of another, appended in between.
    for (let i = 0; i < 300; i++) {
      await log.append(`job-f${i}`, [job(i)], { expectedRevision: 'no_stream' });
      if (i === 10) await log.append('user-a', [user('a', true)], { expectedRevision: 'no_stream' });
      if (i === 20) await log.append('user-b', [user('b', true)], { expectedRevision: 'no_stream' });
      if (i === 200) await log.append('user-a', [user('a', false), user('a', false)], { expectedRevision: 0n });
    }
    const head = await log.headPosition();
    const take = async (it: AsyncIterator<{ event: { streamId: string }; revision: bigint; position: bigint }>, n: number) => {
      const out: string[] = [];
      while (out.length < n) {
        const { value: r, done } = await it.next();
        if (done) break;
        out.push(`${r.event.streamId}@${r.revision}:${r.position}`);
      }
      return out;
    };
    const plain = log.subscribe({ from: 'start', category: 'user' });
    const expected = await take(plain[Symbol.asyncIterator](), 4);
    await plain.stop();
    await watcher.flush();
    starts.length = 0;
    const few = log.subscribe({ from: 'start', category: 'user', fewStreams: true });
    const fewIt = few[Symbol.asyncIterator]();
    expect(await take(fewIt, 4)).toEqual(expected);
    expect(expected.map((x) => x.split(':')[0])).toEqual(['user-a@0', 'user-b@0', 'user-a@1', 'user-a@2']);
    // Then new events, through a consumer that starts after the head, not at the log's start.
    await log.append('user-c', [user('c', true)], { expectedRevision: 'no_stream' });
    const next = await take(fewIt, 1);
    expect(next[0]).toMatch(/^user-c@0:/);
    expect(few.position).toBe(head + 1n);
    await few.stop();
    await watcher.flush();
    expect(starts.length).toBeGreaterThanOrEqual(1);
    expect(Math.min(...starts)).toBe(Number(head) + 1);
  });
});
