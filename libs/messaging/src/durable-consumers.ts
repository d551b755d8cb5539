// Durable consumers created at run time (not declared on a Nest controller): a service that
// decides while running which durables it needs (replication: one per target site) starts
// them here and stops them when no longer needed. Each is the same JetStreamConsumer the
// transport binds for @JetStreamHandler: ack after the handler succeeded, in-progress acks,
// nak with a growing delay or the handler's own (RetryLaterError), dead letters.
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Actor } from '@cairn/contracts';
import { JetStreamEventLog } from '@cairn/eventlog';
import { EventLogDeadLetterSink, type DeadLetterSink, type EventAppender } from './dead-letter.ts';
import type { JetStreamHandlerOptions } from './decorators.ts';
import type { JetStreamContext } from './handler-context.ts';
import type { ProcessedMessages } from './idempotency.ts';
import { KvProcessedMessages } from './idempotency.adapter.ts';
import { JetStreamConsumer, consumerSettings, type ConsumerLogger } from './jetstream-consumer.ts';
import { DEFAULT_MAX_MESSAGE_BYTES } from './limits.ts';

export interface DurableConsumersOptions {
  /** The site (dead-letter events) and this service's identity (their actor). */
  readonly site: string;
  readonly actor: Actor;
  readonly logger: ConsumerLogger;
  /** Where dead letters go; default: appended to `eventLog` (default: the site's log on the connection). */
  readonly deadLetters?: DeadLetterSink;
  readonly eventLog?: EventAppender;
  /** For durables with `dedup` (default on); default: the `cairn_processed` KV bucket, opened when first needed. */
  readonly processed?: ProcessedMessages;
  readonly maxMessageBytes?: number;
}

/** A durable consumer started at run time. */
export interface RunningConsumer {
  readonly durable: string;
  /** Stops pulling and waits (up to `timeoutMs`, default 10 s) for the handler in flight. */
  stop(timeoutMs?: number): Promise<void>;
}

export class DurableConsumers {
  readonly #running = new Set<JetStreamConsumer>();
  #deadLetters: Promise<DeadLetterSink> | undefined;
  #processed: Promise<ProcessedMessages> | undefined;

  constructor(private readonly nc: NatsConnection, private readonly options: DurableConsumersOptions) {}

  /**
   * Starts a durable consumer with `handler` and returns at once: the durable is created (or
   * found) in the background and retried while the stream or the server is not there yet.
   */
  async start<T = unknown>(options: JetStreamHandlerOptions, handler: (payload: T, ctx: JetStreamContext) => Promise<unknown>): Promise<RunningConsumer> {
    const settings = consumerSettings(options);
    const deps = {
      js: jetstream(this.nc),
      jsm: await jetstreamManager(this.nc),
      deadLetters: await this.#deadLetterSink(),
      processed: settings.dedup ? await this.#processedStore() : undefined,
      maxMessageBytes: this.options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
      logger: this.options.logger,
    };
    const consumer = new JetStreamConsumer(deps, settings, (payload, ctx) => handler(payload as T, ctx));
    this.#running.add(consumer);
    consumer.startInBackground();
    return {
      durable: settings.durable,
      stop: async (timeoutMs = 10_000) => {
        this.#running.delete(consumer);
        await consumer.stop(timeoutMs);
      },
    };
  }

  /** Stops every consumer started here. */
  async stopAll(timeoutMs = 10_000): Promise<void> {
    const all = [...this.#running];
    this.#running.clear();
    await Promise.allSettled(all.map((c) => c.stop(timeoutMs)));
  }

  #deadLetterSink(): Promise<DeadLetterSink> {
    const o = this.options;
    this.#deadLetters ??= o.deadLetters ? Promise.resolve(o.deadLetters)
      : (async () => new EventLogDeadLetterSink(o.eventLog ?? (await JetStreamEventLog.open({ nc: this.nc, site: o.site })), { site: o.site, actor: o.actor }))();
    return this.#deadLetters;
  }

  #processedStore(): Promise<ProcessedMessages> {
    this.#processed ??= this.options.processed ? Promise.resolve(this.options.processed) : KvProcessedMessages.open(this.nc);
    return this.#processed;
  }
}
