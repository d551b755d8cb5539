// One durable pull consumer bound to one handler: decode, check, dedup, run the handler with
// in-progress acks, then ack / nak with a growing delay / dead-letter and terminate.
// At-least-once: a message is acked only after its handler succeeded (and its id was noted),
// and terminated only after its dead letter was recorded.
import { AckPolicy, DeliverPolicy, type Consumer, type ConsumerMessages, type JetStreamClient, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import { SpanKind, SpanStatusCode, trace as otelTrace } from '@opentelemetry/api';
import { DEFAULT_BACKOFF_MS, afterFailure, exceededDeliveries, nakDelay, type Outcome, type RetryPolicy } from './delivery-policy.ts';
import type { DeadLetter, DeadLetterSink } from './dead-letter.ts';
import type { JetStreamHandlerOptions } from './decorators.ts';
import { RetryLaterError, errorMessage } from './errors.ts';
import { JetStreamContext, type JetStreamMessageInfo } from './handler-context.ts';
import type { ProcessedMessages } from './idempotency.ts';
import { eventMessages, type MessageValidator } from './message-validation.ts';
import { extractTrace } from './trace-context.ts';
import { ensureContextManager, jobIdOf, traceOf, withJobId } from '@cairn/telemetry';

/** The handler as the runner calls it; a rejection or thrown error means "not handled". */
export type MessageHandlerFn = (payload: unknown, context: JetStreamContext) => Promise<unknown>;

export interface ConsumerLogger {
  log(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export interface ConsumerDeps {
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly deadLetters: DeadLetterSink;
  readonly processed: ProcessedMessages | undefined;
  readonly maxMessageBytes: number;
  readonly logger: ConsumerLogger;
}

/** What happened to one delivery (for logs and tests). */
export type Disposition = 'acked' | 'naked' | 'dead-lettered' | 'duplicate' | 'abandoned';

export interface ConsumerSettings extends RetryPolicy {
  readonly stream: string;
  readonly durable: string;
  readonly filterSubject?: string;
  readonly ackWaitMs: number;
  readonly concurrency: number;
  readonly validate: MessageValidator;
  readonly deliverPolicy: 'all' | 'new';
  readonly dedup: boolean;
  readonly maxAckPending?: number;
}

const DURABLE = /^[A-Za-z0-9_-]{1,200}$/;

/**
 * Pull one message at a time. The client buffers what a pull brings until the loop below takes
 * it, and only the message the loop holds while it waits for a free slot is kept alive
 * (`working()`). A batch of `concurrency` would leave the rest of the batch waiting unattended
 * behind long handlers (transfers of minutes against an ack wait of seconds): they passed their
 * ack wait and went to a second instance while the first still ran them (the 1,000-VM scale run
 * at load 40-65 saw 99 redeliveries and 100 duplicate transfers). One message ahead is still
 * pipelined: it is pulled while the handlers run and kept alive while it waits.
 *
 * Each pull expires after 5 s (the client's default is 30 s) and asks for idle heartbeats every
 * 2.5 s: a pull that went to a consumer leader on a cluster member that died is never answered,
 * and the client notices only after two missed heartbeats, then asks the consumer's info again
 * with a pause of 0.5-1.5x the expiry between failed tries. With 30 s that was 30-75 s without a
 * single delivery to a live data mover after a member's SIGKILL (3,000-VM scale runs); with 5 s,
 * 5-13 s. An idle consumer sends one pull per 5 s instead of one per 30 s.
 */
const PULL = { max_messages: 1, expires: 5_000, abort_on_missing_resource: true } as const;

export function consumerSettings(o: JetStreamHandlerOptions, defaults: Partial<Omit<ConsumerSettings, 'stream' | 'durable'>> = {}): ConsumerSettings {
  if (!DURABLE.test(o.durable)) throw new Error(`durable ${JSON.stringify(o.durable)} must match ${DURABLE}`);
  const s: ConsumerSettings = {
    stream: o.stream,
    durable: o.durable,
    ...(o.filterSubject ? { filterSubject: o.filterSubject } : {}),
    maxDeliver: o.maxDeliver ?? defaults.maxDeliver ?? 5,
    backoffMs: o.backoffMs ?? defaults.backoffMs ?? DEFAULT_BACKOFF_MS,
    ackWaitMs: o.ackWaitMs ?? defaults.ackWaitMs ?? 30_000,
    concurrency: o.concurrency ?? defaults.concurrency ?? 1,
    validate: o.validate ?? defaults.validate ?? eventMessages,
    deliverPolicy: o.deliverPolicy ?? defaults.deliverPolicy ?? 'all',
    dedup: o.dedup ?? defaults.dedup ?? true,
    ...(o.maxAckPending !== undefined ? { maxAckPending: o.maxAckPending } : {}),
  };
  if (s.maxAckPending !== undefined && !(Number.isInteger(s.maxAckPending) && s.maxAckPending >= 1)) throw new Error(`${o.durable}: maxAckPending must be an integer >= 1`);
  if (!(s.maxDeliver >= 1)) throw new Error(`${o.durable}: maxDeliver must be >= 1`);
  if (!(s.ackWaitMs >= 100)) throw new Error(`${o.durable}: ackWaitMs must be >= 100`);
  if (!(s.concurrency >= 1)) throw new Error(`${o.durable}: concurrency must be >= 1`);
  return s;
}

function headersOf(m: JsMsg): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  if (!m.headers) return out;
  for (const [k, v] of m.headers) out[k] = [...v];
  return out;
}

function idOf(value: unknown, m: JsMsg): string | undefined {
  const id = typeof value === 'object' && value !== null ? (value as { id?: unknown }).id : undefined;
  if (typeof id === 'string' && id.length > 0) return id;
  const h = m.headers?.get('Nats-Msg-Id');
  return h || undefined;
}

function correlationOf(value: unknown): string | undefined {
  const c = typeof value === 'object' && value !== null ? (value as { correlationId?: unknown }).correlationId : undefined;
  return typeof c === 'string' ? c : undefined;
}

const decoder = new TextDecoder('utf-8', { fatal: true });
const tracer = otelTrace.getTracer('@cairn/messaging');

export class JetStreamConsumer {
  private messages: ConsumerMessages | undefined;
  private loop: Promise<void> | undefined;
  private readonly inflight = new Set<Promise<void>>();
  private stopping = false;
  private wake: (() => void) | undefined;
  /** Called after each delivery is settled (tests and metrics hook). */
  onSettled: ((disposition: Disposition, info: { seq: number; deliveries: number; reason?: string }) => void) | undefined;

  constructor(private readonly deps: ConsumerDeps, readonly settings: ConsumerSettings, private readonly handler: MessageHandlerFn) {}

  /** Creates or updates the durable consumer, then starts pulling (and keeps pulling: see supervise). */
  async start(): Promise<void> {
    ensureContextManager();
    const consumer = await this.ensureConsumer();
    this.messages = await consumer.consume(PULL);
    this.loop = this.supervise(this.messages);
  }

  /**
   * Starts without waiting: the durable is created (or found) in the background, and tried
   * again with a growing pause while the stream or the server is not there yet.
   */
  startInBackground(): void {
    ensureContextManager();
    this.loop = this.supervise(undefined);
  }

  /**
   * Runs the pull loop; if it ends while we are not stopping (consumer deleted, stream
   * recreated, a fatal pull error), recreates the consumer and goes on, with a growing pause.
   */
  private async supervise(first: ConsumerMessages | undefined): Promise<void> {
    let messages: ConsumerMessages | undefined = first;
    let pauseMs = 500;
    let pauseFirst = first !== undefined;
    while (!this.stopping) {
      if (messages) {
        await this.run(messages);
        messages = undefined;
        if (this.stopping) break;
      }
      if (pauseFirst) {
        await this.pause(pauseMs);
        pauseMs = Math.min(pauseMs * 2, 30_000);
      }
      pauseFirst = true;
      if (this.stopping) break;
      try {
        const consumer = await this.ensureConsumer();
        messages = await consumer.consume(PULL);
        this.messages = messages;
        if (this.stopping) { await messages.close().catch(() => undefined); break; }
        this.deps.logger.log(`${this.settings.durable}: consumer ${pauseMs === 500 && first === undefined ? 'started' : 'resumed'}`);
        pauseMs = 500;
      } catch (e) {
        this.deps.logger.warn(`${this.settings.durable}: cannot resume yet: ${errorMessage(e)}`);
      }
    }
  }

  /** Sleeps, unless stop() wakes it first. */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() { clearTimeout(timer); resolve(); }
      this.wake = done;
    });
  }

  /** Stops pulling and waits (up to `timeoutMs`) for handlers in flight; unfinished ones are redelivered later. */
  async stop(timeoutMs: number): Promise<void> {
    this.stopping = true;
    this.wake?.();
    await this.messages?.close().catch(() => undefined);
    const all = Promise.allSettled([this.loop, ...this.inflight]);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([all, new Promise((r) => { timer = setTimeout(r, timeoutMs); })]);
    clearTimeout(timer);
  }

  private async ensureConsumer(): Promise<Consumer> {
    const s = this.settings;
    const { jsm, js } = this.deps;
    // max_deliver stays unlimited on the server: we count deliveries ourselves and dead-letter,
    // so the server never drops a message silently after its last delivery (a crash loop).
    const mutable = { ack_wait: nanos(s.ackWaitMs), max_deliver: -1, max_ack_pending: s.maxAckPending ?? Math.max(1000, s.concurrency * 4) };
    try {
      await jsm.streams.info(s.stream);
    } catch (e) {
      throw new Error(`consumer ${s.durable}: stream ${s.stream} is not available: ${errorMessage(e)}`, { cause: e });
    }
    const existing = await jsm.consumers.info(s.stream, s.durable).catch(() => undefined);
    if (existing) {
      const filter = existing.config.filter_subject ?? '';
      if (filter !== (s.filterSubject ?? '')) {
        // NATS 2.9 cannot change a consumer's filter; consuming the wrong subjects would be worse.
        throw new Error(`durable ${s.durable} on ${s.stream} exists with filter ${JSON.stringify(filter)}, the handler wants ${JSON.stringify(s.filterSubject ?? '')}: delete the consumer or use another durable name`);
      }
      await jsm.consumers.update(s.stream, s.durable, mutable);
    } else {
      try {
        await jsm.consumers.add(s.stream, {
          durable_name: s.durable,
          ack_policy: AckPolicy.Explicit,
          deliver_policy: s.deliverPolicy === 'new' ? DeliverPolicy.New : DeliverPolicy.All,
          ...(s.filterSubject ? { filter_subject: s.filterSubject } : {}),
          ...mutable,
        });
      } catch (e) {
        // Another instance may have created it first; use it if so.
        await jsm.consumers.info(s.stream, s.durable).catch(() => { throw e; });
      }
    }
    return js.consumers.get(s.stream, s.durable);
  }

  private async run(messages: ConsumerMessages): Promise<void> {
    try {
      for await (const m of messages) {
        // Keep the message alive while it waits for a free slot.
        const keepAlive = setInterval(() => m.working(), Math.max(50, Math.floor(this.settings.ackWaitMs / 3)));
        try {
          while (this.inflight.size >= this.settings.concurrency) await Promise.race(this.inflight);
        } finally {
          clearInterval(keepAlive);
        }
        if (this.stopping) break; // not acked: redelivered after ack wait
        const p = this.process(m).catch((e) => this.deps.logger.error(`${this.settings.durable}: ${errorMessage(e)}`));
        this.inflight.add(p);
        void p.finally(() => this.inflight.delete(p));
      }
    } catch (e) {
      if (!this.stopping) this.deps.logger.error(`${this.settings.durable}: pulling stopped: ${errorMessage(e)}`);
    }
  }

  private async process(m: JsMsg): Promise<void> {
    const s = this.settings;
    const deliveries = m.info.deliveryCount;
    const { context: incomingContext, trace: incoming } = extractTrace(m.headers);
    const base: Omit<DeadLetter, 'reason' | 'detail'> = {
      consumer: s.durable,
      stream: s.stream,
      subject: m.subject,
      streamSequence: m.seq,
      deliveries,
      payload: m.data,
      headers: headersOf(m),
      ...(incoming ? { trace: incoming } : {}),
    };
    const settle = (d: Disposition, reason?: string) => this.onSettled?.(d, { seq: m.seq, deliveries, ...(reason ? { reason } : {}) });

    if (m.data.byteLength > this.deps.maxMessageBytes) {
      return this.deadLetter(m, { ...base, reason: 'oversize', detail: `${m.data.byteLength} bytes, over the limit of ${this.deps.maxMessageBytes}` }, settle);
    }
    let raw: unknown;
    try {
      raw = JSON.parse(decoder.decode(m.data));
    } catch (e) {
      return this.deadLetter(m, { ...base, reason: 'malformed_json', detail: `not UTF-8 JSON: ${errorMessage(e)}` }, settle);
    }
    const messageId = idOf(raw, m);
    const correlationId = correlationOf(raw);
    const known = { ...base, ...(messageId ? { messageId } : {}), ...(correlationId ? { correlationId } : {}) };
    const checked = s.validate(raw);
    if (!checked.ok) {
      return this.deadLetter(m, { ...known, reason: checked.reason, detail: `${checked.problems.length} problem(s)`, problems: checked.problems }, settle);
    }
    const exceeded = exceededDeliveries(deliveries, s);
    if (exceeded?.kind === 'dead-letter') return this.deadLetter(m, { ...known, reason: exceeded.reason, detail: exceeded.detail }, settle);

    const dedup = s.dedup && messageId !== undefined ? this.deps.processed : undefined;
    if (dedup) {
      try {
        if (await dedup.has(s.durable, messageId!)) {
          m.ack();
          settle('duplicate');
          return;
        }
      } catch (e) {
        this.deps.logger.warn(`${s.durable}: idempotency store unavailable, retrying seq ${m.seq} later: ${errorMessage(e)}`);
        m.nak(nakDelay(deliveries, s.backoffMs));
        settle('naked');
        return;
      }
    }

    const jobId = jobIdOf(checked.value);
    const parent = withJobId(incomingContext, jobId);
    const outcome = await tracer.startActiveSpan(`${s.durable} process`, {
      kind: SpanKind.CONSUMER,
      attributes: {
        'messaging.system': 'nats',
        'messaging.destination.name': m.subject,
        'messaging.consumer.group.name': s.durable,
        'messaging.message.id': messageId ?? '',
        'messaging.nats.stream_sequence': m.seq,
        'messaging.nats.delivery_count': deliveries,
        ...(jobId ? { 'cairn.job.id': jobId } : {}),
      },
    }, parent, async (span): Promise<Outcome> => {
      const otelContext = otelTrace.setSpan(parent, span);
      const info: JetStreamMessageInfo = {
        subject: m.subject,
        stream: s.stream,
        consumer: s.durable,
        streamSequence: m.seq,
        deliveryCount: deliveries,
        messageId,
        headers: base.headers,
        trace: traceOf(otelContext) ?? incoming,
        otelContext,
      };
      const timer = setInterval(() => m.working(), Math.max(50, Math.floor(s.ackWaitMs / 3)));
      try {
        await this.handler(checked.value, new JetStreamContext([info, () => m.working()]));
        span.setStatus({ code: SpanStatusCode.OK });
        return { kind: 'ack' };
      } catch (e) {
        span.recordException(e instanceof Error ? e : new Error(errorMessage(e)));
        span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(e) });
        const o = afterFailure(e, deliveries, s);
        if (o.kind === 'nak' && !(e instanceof RetryLaterError)) this.deps.logger.warn(`${s.durable}: seq ${m.seq} failed (delivery ${deliveries}), retry in ${o.delayMs} ms: ${errorMessage(e)}`);
        return o;
      } finally {
        clearInterval(timer);
        span.end();
      }
    });

    if (outcome.kind === 'ack') {
      if (dedup) {
        try {
          await dedup.add(s.durable, messageId!);
        } catch (e) {
          // Acking anyway: the handler's effect happened; a later duplicate may run it again.
          this.deps.logger.warn(`${s.durable}: could not note ${messageId} as processed: ${errorMessage(e)}`);
        }
      }
      m.ack();
      settle('acked');
    } else if (outcome.kind === 'nak') {
      m.nak(outcome.delayMs);
      settle('naked');
    } else {
      await this.deadLetter(m, { ...known, reason: outcome.reason, detail: outcome.detail }, settle);
    }
  }

  private async deadLetter(m: JsMsg, dl: DeadLetter, settle: (d: Disposition, reason?: string) => void): Promise<void> {
    try {
      await this.deps.deadLetters.record(dl);
    } catch (e) {
      this.deps.logger.error(`${dl.consumer}: could not record dead letter for seq ${dl.streamSequence} (${dl.reason}), retrying later: ${errorMessage(e)}`);
      m.nak(nakDelay(dl.deliveries, this.settings.backoffMs));
      settle('naked', dl.reason);
      return;
    }
    const problems = dl.problems?.length ? ` [${dl.problems.slice(0, 3).map((p) => `${p.path || '(message)'}: ${p.message}`).join('; ')}]` : '';
    this.deps.logger.warn(`${dl.consumer}: dead-lettered seq ${dl.streamSequence} on ${dl.subject} after ${dl.deliveries} deliveries: ${dl.reason}: ${dl.detail}${problems}`);
    // No reason text: NATS 2.9 only recognises a bare +TERM.
    m.term();
    settle('dead-lettered', dl.reason);
  }
}
