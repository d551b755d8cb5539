import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { trace } from '@opentelemetry/api';
import { useHarness, waitFor } from '@cairn/testing';
import { JetStreamServer, type JetStreamServerOptions } from './jetstream.server.ts';
import { JetStreamEventLog } from '@cairn/eventlog';
import type { DeadLetter } from './dead-letter.ts';
import { JetStreamClient } from './jetstream-client.ts';
import { MessageTooLargeError, NonRetryableError } from './errors.ts';
import type { JetStreamContext } from './handler-context.ts';
import type { JetStreamHandlerOptions } from './decorators.ts';
import { schemaMessages, versionedMessages } from './message-validation.ts';
import { Type } from '@sinclair/typebox';
import { ACTOR, EVENTS, SITE, WORK, backlog, deadLetters, jobStarted, jobSubject, openSite, workQueue, type TestSite } from './testing/site.ts';

const MAX_BYTES = 8 * 1024;

describe('JetStream consumer', () => {
  const h = useHarness();
  let site: TestSite;
  let url: string;
  const servers: JetStreamServer[] = [];
  const exporter = new InMemorySpanExporter();

  beforeAll(async () => {
    trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
    const nats = await h.nats();
    url = nats.url;
    site = await openSite(url);
    h.onClose(() => site.nc.close());
  });

  afterAll(async () => {
    for (const s of servers) await s.close();
    trace.disable();
  });

  /** A server with one handler, listening. */
  async function serve(
    options: JetStreamHandlerOptions,
    fn: (payload: unknown, ctx: JetStreamContext) => unknown,
    extra: Partial<JetStreamServerOptions> = {},
  ): Promise<JetStreamServer> {
    const server = new JetStreamServer({ servers: url, site: SITE, actor: ACTOR, maxMessageBytes: MAX_BYTES, drainTimeoutMs: 2000, ...extra });
    server.addJetStreamHandler(options, fn);
    await new Promise<void>((resolve, reject) => server.listen((err?: unknown) => (err ? reject(err) : resolve())));
    servers.push(server);
    return server;
  }

  function uniqueEvents(durable: string): Pick<JetStreamHandlerOptions, 'stream' | 'durable' | 'filterSubject'> & { jobId: string } {
    const jobId = `j${randomUUID().slice(0, 8)}`;
    return { stream: EVENTS, durable, filterSubject: jobSubject(jobId), jobId };
  }

  it('retries a failing handler with growing delays, then acks it once', async () => {
    const { jobId, ...where } = uniqueEvents('retry');
    const deliveries: Array<{ at: number; count: number }> = [];
    let succeeded = 0;
    await serve({ ...where, ackWaitMs: 5000, maxDeliver: 5, backoffMs: [150, 600] }, (_p, ctx) => {
      deliveries.push({ at: Date.now(), count: ctx.deliveryCount });
      if (deliveries.length <= 2) throw new Error(`transient failure ${deliveries.length}`);
      succeeded++;
    });
    const client = new JetStreamClient(site.nc);
    await client.publishEvent(jobStarted(jobId));

    await waitFor(async () => succeeded === 1 && (await backlog(site, EVENTS, 'retry')).ackPending === 0, { what: 'acked after retries' });
    expect(deliveries.map((d) => d.count)).toEqual([1, 2, 3]);
    const gap1 = deliveries[1]!.at - deliveries[0]!.at;
    const gap2 = deliveries[2]!.at - deliveries[1]!.at;
    expect(gap1).toBeGreaterThanOrEqual(140);
    expect(gap2).toBeGreaterThanOrEqual(590);
    expect(gap2).toBeGreaterThan(gap1);
    expect(succeeded).toBe(1);
  });

  it('dead-letters bad JSON, a schema failure, an unknown version and an oversize message, and goes on', async () => {
    const { jobId, ...where } = uniqueEvents('malformed');
    const handled: string[] = [];
    await serve({ ...where, ackWaitMs: 2000 }, (p) => { handled.push((p as { id: string }).id); });
    const subject = jobSubject(jobId);
    await site.js.publish(subject, '{"not json');
    const bad = { ...jobStarted(jobId), data: { jobId, attempt: 'first' } };
    await site.js.publish(subject, JSON.stringify(bad));
    await site.js.publish(subject, JSON.stringify({ ...jobStarted(jobId), schemaVersion: 99 }));
    await site.js.publish(subject, JSON.stringify({ ...jobStarted(jobId), pad: 'x'.repeat(MAX_BYTES) }));
    const good = jobStarted(jobId);
    await site.js.publish(subject, JSON.stringify(good));

    await waitFor(() => handled.length === 1, { what: 'the valid message handled' });
    const dls = await waitFor(async () => { const d = await deadLetters(site, 'malformed'); return d.length === 4 ? d : undefined; }, { what: '4 dead letters' });
    expect(handled).toEqual([good.id]);
    expect(dls.map((d) => d.data.reason.split(':')[0])).toEqual(['malformed_json', 'schema_mismatch', 'unknown_version', 'oversize']);
    expect(dls[1]!.data.reason).toContain('/data/attempt');
    expect(Buffer.from(dls[0]!.data.payloadPreview, 'base64').toString()).toBe('{"not json');
    expect(dls[3]!.data.payloadBytes).toBeGreaterThan(MAX_BYTES);
    for (const d of dls) expect(d.data).toMatchObject({ consumer: 'malformed', deliveries: 1, subject });
    // Terminated, not redelivered: nothing left pending for this consumer.
    expect(await backlog(site, EVENTS, 'malformed')).toEqual({ pending: 0, ackPending: 0 });
    // Recorded through the event log: a stream of its own, readable like any other.
    const log = await JetStreamEventLog.open({ nc: site.nc, site: SITE });
    const recorded = [];
    for await (const r of log.readStream('deadletter-malformed')) recorded.push(r);
    expect(recorded.map((r) => r.revision)).toEqual([0n, 1n, 2n, 3n]);
    expect(recorded.map((r) => r.event.id)).toEqual(dls.map((d) => d.id));
  });

  it('keeps a message whose dead letter cannot be recorded yet, and records it once later', async () => {
    const { jobId, ...where } = uniqueEvents('sinkdown');
    const recorded: DeadLetter[] = [];
    let attempts = 0;
    const sink = {
      async record(dl: DeadLetter) {
        attempts++;
        if (attempts === 1) throw new Error('event log unavailable');
        recorded.push(dl);
      },
    };
    await serve({ ...where, ackWaitMs: 2000, backoffMs: [100] }, () => undefined, { deadLetters: sink });
    await site.js.publish(jobSubject(jobId), 'garbage');
    await waitFor(() => recorded.length === 1, { what: 'dead letter recorded on the second try' });
    expect(attempts).toBe(2);
    expect(recorded[0]).toMatchObject({ reason: 'malformed_json', deliveries: 2 });
    await waitFor(async () => (await backlog(site, EVENTS, 'sinkdown')).ackPending === 0, { what: 'terminated' });
  });

  it('dead-letters poison: a NonRetryableError at once, a failing handler after maxDeliver', async () => {
    const { jobId, ...where } = uniqueEvents('poison');
    const calls = new Map<string, number>();
    const rejectMe = jobStarted(jobId);
    const alwaysFails = jobStarted(jobId);
    await serve({ ...where, ackWaitMs: 2000, maxDeliver: 3, backoffMs: [50] }, (p) => {
      const id = (p as { id: string }).id;
      calls.set(id, (calls.get(id) ?? 0) + 1);
      if (id === rejectMe.id) throw new NonRetryableError('disk id is not ours');
      throw new Error('storage down');
    });
    const client = new JetStreamClient(site.nc);
    await client.publishEvent(rejectMe);
    await client.publishEvent(alwaysFails);
    const dls = await waitFor(async () => { const d = await deadLetters(site, 'poison'); return d.length === 2 ? d : undefined; }, { what: '2 dead letters' });
    expect(calls.get(rejectMe.id)).toBe(1);
    expect(calls.get(alwaysFails.id)).toBe(3);
    const byCause = new Map(dls.map((d) => [d.causationId, d.data]));
    expect(byCause.get(rejectMe.id)).toMatchObject({ deliveries: 1, reason: 'handler_rejected: disk id is not ours' });
    expect(byCause.get(alwaysFails.id)).toMatchObject({ deliveries: 3 });
    expect(byCause.get(alwaysFails.id)!.reason).toMatch(/^max_deliveries: failed 3 times; last error: storage down/);
    expect(dls[0]!.correlationId).toBe(`job-${jobId}`);
  });

  it('processes a duplicate delivery of the same event id once', async () => {
    const { jobId, ...where } = uniqueEvents('dedup');
    const seen: number[] = [];
    const server = await serve({ ...where, ackWaitMs: 2000 }, (_p, ctx) => { seen.push(ctx.info.streamSequence); });
    const dispositions: string[] = [];
    server.getConsumers()[0]!.onSettled = (d) => dispositions.push(d);
    const event = jobStarted(jobId);
    const client = new JetStreamClient(site.nc);
    const first = await client.publishEvent(event);
    // Within the duplicate window the stream itself drops it …
    expect((await client.publishEvent(event)).duplicate).toBe(true);
    // … beyond it (here: published without a msg id) the consumer drops it by event id.
    const second = await site.js.publish(jobSubject(jobId), JSON.stringify(event));
    expect(second.seq).toBeGreaterThan(first.seq);
    await waitFor(() => dispositions.length === 2, { what: 'both deliveries settled' });
    expect(seen).toEqual([first.seq]);
    expect(dispositions).toEqual(['acked', 'duplicate']);
  });

  it('carries the W3C trace context from the publisher into the handler and records a consumer span', async () => {
    const { jobId, ...where } = uniqueEvents('traced');
    let handlerTrace: string | undefined;
    await serve({ ...where, ackWaitMs: 2000 }, (_p, ctx) => { handlerTrace = ctx.trace?.traceparent; });
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const parentSpan = '00f067aa0ba902b7';
    await new JetStreamClient(site.nc).publish(jobSubject(jobId), jobStarted(jobId), { trace: { traceparent: `00-${traceId}-${parentSpan}-01` } });
    await waitFor(() => handlerTrace, { what: 'handler ran' });
    expect(handlerTrace).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
    const span = await waitFor(() => exporter.getFinishedSpans().find((s) => s.name === 'traced process'), { what: 'span' });
    expect(span.spanContext().traceId).toBe(traceId);
    expect(span.parentSpanContext?.spanId).toBe(parentSpan);
    expect(handlerTrace).toContain(span.spanContext().spanId);
  });

  it('keeps a long handler alive with in-progress acks: no redelivery past ack wait', async () => {
    const { jobId, ...where } = uniqueEvents('long');
    const deliveries: number[] = [];
    let done = 0;
    await serve({ ...where, ackWaitMs: 300 }, async (_p, ctx) => {
      deliveries.push(ctx.deliveryCount);
      await new Promise((r) => setTimeout(r, 1000));
      done++;
    });
    await new JetStreamClient(site.nc).publishEvent(jobStarted(jobId));
    await waitFor(async () => done === 1 && (await backlog(site, EVENTS, 'long')).ackPending === 0, { what: 'long handler acked' });
    expect(deliveries).toEqual([1]);
  });

  it('pulls work one message at a time: items waiting behind busy slots are not redelivered past ack wait', async () => {
    // Six items, two slots, handlers four times longer than the ack wait: a batch pulled ahead
    // would leave items unattended in the client past their ack wait (delivered twice).
    const deliveries: Array<{ id: string; count: number }> = [];
    await serve({
      stream: WORK, durable: 'slow-movers', filterSubject: workQueue('slow'), ackWaitMs: 300, concurrency: 2, dedup: false,
      validate: schemaMessages(Type.Object({ id: Type.String() })),
    }, async (p, ctx) => {
      deliveries.push({ id: (p as { id: string }).id, count: ctx.deliveryCount });
      await new Promise((r) => setTimeout(r, 1200));
    });
    const client = new JetStreamClient(site.nc, { maxMessageBytes: MAX_BYTES });
    const ids = ['s1', 's2', 's3', 's4', 's5', 's6'];
    for (const id of ids) await client.publishWork(workQueue('slow'), { id }, { msgID: id });
    await waitFor(async () => deliveries.length >= ids.length && (await backlog(site, WORK, 'slow-movers')).ackPending === 0, { what: 'six items handled', timeoutMs: 30_000 });
    expect(deliveries.map((d) => d.id).sort()).toEqual(ids);
    expect(deliveries.every((d) => d.count === 1)).toBe(true);
  });

  it('recreates its durable consumer when it is deleted, and goes on', async () => {
    const { jobId, ...where } = uniqueEvents('phoenix');
    const seen: string[] = [];
    await serve({ ...where, ackWaitMs: 2000 }, (p) => { seen.push((p as { id: string }).id); });
    const client = new JetStreamClient(site.nc);
    const first = jobStarted(jobId);
    await client.publishEvent(first);
    await waitFor(() => seen.length === 1, { what: 'first event' });
    await site.jsm.consumers.delete(EVENTS, 'phoenix');
    const second = jobStarted(jobId);
    await client.publishEvent(second);
    await waitFor(() => seen.includes(second.id), { timeoutMs: 20_000, what: 'event after the consumer was recreated' });
    // The recreated durable starts from the beginning again; the first event is dropped as a duplicate.
    expect(seen).toEqual([first.id, second.id]);
  });

  it('refuses to bind a durable that exists with another filter subject', async () => {
    const { jobId: _a, ...first } = uniqueEvents('refiltered');
    await serve({ ...first, ackWaitMs: 2000 }, () => undefined);
    const { jobId: _b, ...second } = uniqueEvents('refiltered');
    await expect(serve({ ...second, ackWaitMs: 2000 }, () => undefined)).rejects.toThrow(/exists with filter .* delete the consumer or use another durable name/);
  });

  it('validates work items by schema and version, and refuses to publish an oversize one', async () => {
    const Work = Type.Object({ schemaVersion: Type.Literal(1), id: Type.String(), disk: Type.String() });
    const handled: unknown[] = [];
    await serve({
      stream: WORK, durable: 'movers', filterSubject: workQueue('transfer'), ackWaitMs: 2000,
      validate: versionedMessages({ 1: Work }),
    }, (p) => { handled.push(p); });
    const client = new JetStreamClient(site.nc, { maxMessageBytes: MAX_BYTES });
    await client.publishWork(workQueue('transfer'), { schemaVersion: 2, id: 'w0', disk: 'sda' }, { msgID: 'w0' });
    await client.publishWork(workQueue('transfer'), { schemaVersion: 1, id: 'w1', disk: 'sda' }, { msgID: 'w1' });
    await expect(client.publishWork(workQueue('transfer'), { schemaVersion: 1, id: 'w2', disk: 'x'.repeat(MAX_BYTES) }, { msgID: 'w2' }))
      .rejects.toBeInstanceOf(MessageTooLargeError);
    await waitFor(() => handled.length === 1, { what: 'work handled' });
    expect(handled).toEqual([{ schemaVersion: 1, id: 'w1', disk: 'sda' }]);
    const [dl] = await waitFor(async () => { const d = await deadLetters(site, 'movers'); return d.length === 1 ? d : undefined; }, { what: 'dead letter' });
    expect(dl!.data.reason).toMatch(/^unknown_version: /);
    expect(schemaMessages(Work)({})).toMatchObject({ ok: false, reason: 'schema_mismatch' });
  });
});
