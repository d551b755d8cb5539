// The messaging library's bindings made at run time, on a real nats-server: a durable consumer
// started while running (one at a time in stream order, a handler's "come back later" holding
// back the messages after it, an unreadable event handed over as null, stopped and started
// again where it left off), and the query responder (queue group shared by replicas, a
// broadcast every replica answers, unreadable and failing requests answered, reply headers).
import { randomUUID } from 'node:crypto';
import { headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KnownEvent } from '@cairn/contracts';
import { useHarness, waitFor } from '@cairn/testing';
import { DurableConsumers } from './durable-consumers.ts';
import { RetryLaterError } from './errors.ts';
import { readableEvents } from './message-validation.ts';
import { QueryResponder } from './query-responder.ts';
import { ACTOR, EVENTS, SITE, jobStarted, jobSubject, openSite, type TestSite } from './testing/site.ts';

const quiet = { log: () => undefined, warn: () => undefined, error: () => undefined };

describe('messaging bindings made at run time (real NATS)', () => {
  const h = useHarness();
  let site: TestSite;

  beforeAll(async () => {
    site = await openSite((await h.nats()).url);
  });
  afterAll(async () => { await site?.nc.close(); });

  it('a durable started at run time takes one message at a time in order; RetryLaterError holds the rest back; unreadable events come as null', async () => {
    const jobId = `j${randomUUID().slice(0, 8)}`;
    const seen: string[] = [];
    let heldOnce = false;
    const durables = new DurableConsumers(site.nc, { site: SITE, actor: ACTOR, logger: quiet });
    const options = {
      stream: EVENTS, durable: `ordered-${jobId}`, filterSubject: jobSubject(jobId), ackWaitMs: 2000,
      maxAckPending: 1, maxDeliver: Number.POSITIVE_INFINITY, validate: readableEvents, dedup: false,
    };
    const handler = async (e: KnownEvent | null) => {
      if (!e) { seen.push('unreadable'); return; }
      const attempt = e.type === 'JobStarted' ? e.data.attempt : 0;
      if (attempt === 1 && !heldOnce) { heldOnce = true; seen.push('1 later'); throw new RetryLaterError('not yet', 300); }
      seen.push(String(attempt));
    };
    // Started before the stream has the messages, returning at once.
    const running = await durables.start(options, handler);
    const publish = (data: unknown) => site.js.publish(jobSubject(jobId), JSON.stringify(data));
    for (const attempt of [1, 2]) await publish({ ...jobStarted(jobId), data: { jobId, attempt } });
    await publish({ ...jobStarted(jobId), type: 'NoSuchEventType' });
    await publish({ ...jobStarted(jobId), data: { jobId, attempt: 3 } });
    await waitFor(() => seen.length >= 5 || undefined, { timeoutMs: 20_000, what: 'four messages handled' });
    expect(seen).toEqual(['1 later', '1', '2', 'unreadable', '3']);
    // Stopped and started again: it goes on after the last acknowledged message.
    await running.stop(2000);
    await publish({ ...jobStarted(jobId), data: { jobId, attempt: 4 } });
    const again = await durables.start(options, handler);
    await waitFor(() => seen.length >= 6 || undefined, { timeoutMs: 20_000, what: 'the fifth message after a restart' });
    expect(seen.slice(5)).toEqual(['4']);
    expect((await site.jsm.consumers.info(EVENTS, options.durable)).config.max_ack_pending).toBe(1);
    await again.stop(2000);
    await durables.stopAll();
  }, 60_000);

  it('the query responder: a queue group shares queries, a broadcast reaches every replica, bad and failing requests get their reply', async () => {
    const prefix = `q${randomUUID().slice(0, 8)}`;
    type Reply = { ok: boolean; by: string; said?: unknown; error?: string };
    const replica = (nc: NatsConnection, by: string) => new QueryResponder<'echo' | 'boom' | 'all', Reply>(nc, {
      routes: [
        { name: 'echo', subject: `${prefix}.echo`, queue: prefix },
        { name: 'boom', subject: `${prefix}.boom`, queue: prefix },
        { name: 'all', subject: `${prefix}.all` },
      ],
      answer: async (name, request) => { if (name === 'boom') throw new Error('read model gone'); return { ok: true, by, said: request }; },
      badRequest: (_n, message) => ({ ok: false, by, error: `bad: ${message}` }),
      failed: (_n, message) => ({ ok: false, by, error: `failed: ${message}` }),
      headers: { 'Cairn-Replica': by },
      maxRequestBytes: 1024,
    });
    const a = replica(site.nc, 'a');
    const b = replica(site.nc, 'b');
    a.start(); b.start();
    await site.nc.flush();
    const ask = async (subject: string, body: string | Uint8Array) => {
      const m = await site.nc.request(subject, body, { timeout: 5000, headers: natsHeaders() });
      return { reply: m.json<Reply>(), replica: m.headers?.get('Cairn-Replica') };
    };
    const echoed = await ask(`${prefix}.echo`, JSON.stringify({ x: 1 }));
    expect(echoed.reply).toMatchObject({ ok: true, said: { x: 1 } });
    expect(echoed.replica).toBe(echoed.reply.by);
    expect((await ask(`${prefix}.echo`, '{nope')).reply).toMatchObject({ ok: false, error: 'bad: echo: request is not JSON' });
    expect((await ask(`${prefix}.echo`, new Uint8Array(2048))).reply.error).toMatch(/^bad: request of 2048 bytes exceeds 1024/);
    expect((await ask(`${prefix}.boom`, '{}')).reply).toMatchObject({ ok: false, error: 'failed: read model gone' });
    // Queue group: 20 queries, each answered; broadcast: both answer.
    const answers = await Promise.all(Array.from({ length: 20 }, () => ask(`${prefix}.echo`, '{}')));
    expect(answers.every((x) => x.reply.ok)).toBe(true);
    const inbox = site.nc.subscribe(`_INBOX.${prefix}`, { max: 2 });
    site.nc.publish(`${prefix}.all`, '{}', { reply: `_INBOX.${prefix}` });
    const everyone: string[] = [];
    for await (const m of inbox) everyone.push(m.json<Reply>().by);
    expect(everyone.sort()).toEqual(['a', 'b']);
    await Promise.all([a.stop(), b.stop()]);
  }, 60_000);
});
