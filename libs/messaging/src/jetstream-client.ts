// The sending side of JetStream: publish events and work items with their id as `Nats-Msg-Id`
// (the server drops a duplicate within its window) and the W3C trace in headers.
import { jetstream, type JetStreamClient as NatsJetStream, type PubAck } from '@nats-io/jetstream';
import { headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import type { Context } from '@opentelemetry/api';
import { eventSubject, type CairnEvent, type TraceContext } from '@cairn/contracts';
import { MessageTooLargeError } from './send-errors.ts';
import { injectTrace } from './trace-context.ts';
import { asPermissionDenied } from './permissions.ts';

export const EVENT_TYPE_HEADER = 'Cairn-Event-Type';
export const SCHEMA_VERSION_HEADER = 'Cairn-Schema-Version';

export interface PublishOptions {
  /** Dedup id (`Nats-Msg-Id`): the same id within the stream's duplicate window is stored once. */
  readonly msgID?: string;
  /** Trace to carry; defaults to the span active in `otelContext` (or the current context). */
  readonly trace?: TraceContext;
  readonly otelContext?: Context;
  /** Extra headers. */
  readonly headers?: Readonly<Record<string, string>>;
  /** Optimistic concurrency: the subject's last sequence must be this. */
  readonly expectLastSubjectSequence?: number;
}

export interface JetStreamClientOptions {
  /** Larger messages are refused before sending (default 1 MiB). */
  readonly maxMessageBytes?: number;
}

export class JetStreamClient {
  private readonly js: NatsJetStream;
  private readonly maxMessageBytes: number;

  constructor(nc: NatsConnection, options: JetStreamClientOptions = {}) {
    this.js = jetstream(nc);
    this.maxMessageBytes = options.maxMessageBytes ?? 1024 * 1024;
  }

  /** Publishes a JSON value; throws MessageTooLargeError before sending when over the limit. */
  async publish(subject: string, value: unknown, options: PublishOptions = {}): Promise<PubAck> {
    const body = Buffer.from(JSON.stringify(value));
    if (body.byteLength > this.maxMessageBytes) throw new MessageTooLargeError(subject, body.byteLength, this.maxMessageBytes);
    const h = natsHeaders();
    for (const [k, v] of Object.entries(options.headers ?? {})) h.set(k, v);
    injectTrace(h, options.trace, options.otelContext);
    return this.js.publish(subject, body, {
      headers: h,
      ...(options.msgID ? { msgID: options.msgID } : {}),
      ...(options.expectLastSubjectSequence !== undefined ? { expect: { lastSubjectSequence: options.expectLastSubjectSequence } } : {}),
    }).catch((e: unknown) => { throw asPermissionDenied(e) ?? e; });
  }

  /**
   * Publishes an event on its subject (`cairn.<site>.evt.<category>.<streamId>`), its id as
   * `Nats-Msg-Id` and its trace as headers. Services append through the event log instead;
   * this is for relays and tools.
   */
  async publishEvent(event: CairnEvent, options: Omit<PublishOptions, 'msgID' | 'trace'> = {}): Promise<PubAck> {
    return this.publish(eventSubject(event.site, event.streamId), event, {
      ...options,
      msgID: event.id,
      ...(event.trace ? { trace: event.trace } : {}),
      headers: { ...options.headers, [EVENT_TYPE_HEADER]: event.type, [SCHEMA_VERSION_HEADER]: String(event.schemaVersion) },
    });
  }

  /** Puts a work item on a work-queue subject; `id` makes a re-queue of the same work a no-op. */
  async publishWork(subject: string, work: unknown, options: PublishOptions & { readonly msgID: string }): Promise<PubAck> {
    return this.publish(subject, work, options);
  }
}
