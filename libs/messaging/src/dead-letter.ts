// Dead letters: a message a consumer gave up on is recorded as a `MessageDeadLettered` event
// (reason, consumer, subject, stream sequence, deliveries, a preview of the payload) before it
// is terminated, so nothing is lost silently and an operator can inspect and replay it.
import { createHash } from 'node:crypto';
import type { JetStreamClient } from '@nats-io/jetstream';
import {
  eventSubject, newEvent, payloadPreview,
  type Actor, type CairnEvent, type MessageDeadLettered, type TraceContext,
} from '@cairn/contracts';
import type { DeadLetterReason } from './delivery-policy.ts';
import type { Problem } from './message-validation.ts';

/** Everything known about a message given up on. */
export interface DeadLetter {
  readonly reason: DeadLetterReason;
  /** Human-readable why (the error message, or a summary of the problems). */
  readonly detail: string;
  readonly problems?: readonly Problem[];
  /** The durable consumer that gave up. */
  readonly consumer: string;
  readonly stream: string;
  readonly subject: string;
  readonly streamSequence?: number;
  readonly deliveries: number;
  readonly payload: Uint8Array;
  readonly headers: Readonly<Record<string, readonly string[]>>;
  readonly trace?: TraceContext;
  /** The job the message belonged to, when it could be read from it. */
  readonly correlationId?: string;
  /** Id of the message (event id / Nats-Msg-Id), when known. */
  readonly messageId?: string;
}

/**
 * Where dead letters go. `record` resolves once the dead letter is durably stored; only then
 * is the message terminated. A rejection leaves the message to be redelivered (nothing lost).
 * Recording the same message twice must be harmless (ids are derived from the message).
 */
export interface DeadLetterSink {
  record(deadLetter: DeadLetter): Promise<void>;
}

/** The role of the event log a sink needs (what `@cairn/eventlog`'s EventLog offers). */
export interface EventAppender {
  append(streamId: string, events: readonly CairnEvent[], options: { expectedRevision: 'any' }): Promise<unknown>;
}

export interface DeadLetterEventOptions {
  readonly site: string;
  /** The service that gave up (`service` actor), e.g. `data-mover@site-a`. */
  readonly actor: Actor;
}

const MAX_REASON = 4096;
const MAX_HEADERS = 32;
const MAX_HEADER_VALUE = 1024;

/** Stream a consumer's dead letters go to: `deadletter-<consumer>`. */
export function deadLetterStreamId(consumer: string): string {
  return `deadletter-${consumer}`;
}

/**
 * A UUID derived from the message's place (stream, consumer, sequence): recording the same
 * message again yields the same event id, which the log drops as a duplicate.
 */
export function deadLetterEventId(dl: Pick<DeadLetter, 'stream' | 'consumer' | 'streamSequence' | 'subject' | 'payload'>): string {
  const h = createHash('sha256').update(`${dl.stream}\0${dl.consumer}\0`);
  if (dl.streamSequence !== undefined) h.update(String(dl.streamSequence));
  else h.update(dl.subject).update('\0').update(dl.payload);
  const b = h.digest().subarray(0, 16);
  b[6] = (b[6]! & 0x0f) | 0x80; // version 8 (custom)
  b[8] = (b[8]! & 0x3f) | 0x80; // RFC 4122 variant
  const x = b.toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

function reasonText(dl: DeadLetter): string {
  let text = `${dl.reason}: ${dl.detail}`;
  if (dl.problems?.length) {
    text += ` [${dl.problems.map((p) => `${p.path || '(message)'}: ${p.message}`).join('; ')}]`;
  }
  return text.length > MAX_REASON ? `${text.slice(0, MAX_REASON - 1)}…` : text;
}

function boundedHeaders(headers: DeadLetter['headers']): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [k, values] of Object.entries(headers).slice(0, MAX_HEADERS)) {
    out[k] = values.slice(0, 8).map((v) => v.slice(0, MAX_HEADER_VALUE));
  }
  return out;
}

export function deadLetterEvent(dl: DeadLetter, options: DeadLetterEventOptions): MessageDeadLettered {
  return newEvent('MessageDeadLettered', {
    consumer: dl.consumer,
    subject: dl.subject.slice(0, 1024),
    reason: reasonText(dl),
    ...(dl.streamSequence !== undefined ? { streamSequence: dl.streamSequence } : {}),
    deliveries: dl.deliveries,
    payloadPreview: payloadPreview(dl.payload),
    payloadBytes: dl.payload.byteLength,
    headers: boundedHeaders(dl.headers),
  }, {
    id: deadLetterEventId(dl),
    site: options.site,
    actor: options.actor,
    streamId: deadLetterStreamId(dl.consumer),
    correlationId: dl.correlationId ?? deadLetterStreamId(dl.consumer),
    causationId: dl.messageId ?? null,
    ...(dl.trace ? { trace: dl.trace } : {}),
  });
}

/** Appends dead letters to the event log (the default once a log is at hand). */
export class EventLogDeadLetterSink implements DeadLetterSink {
  constructor(private readonly log: EventAppender, private readonly options: DeadLetterEventOptions) {}

  async record(dl: DeadLetter): Promise<void> {
    const event = deadLetterEvent(dl, this.options);
    await this.log.append(event.streamId, [event], { expectedRevision: 'any' });
  }
}

/**
 * Publishes dead letters straight into the site's event stream, on the event subject, with
 * the event id as `Nats-Msg-Id`: for processes that have no event log client.
 */
export class JetStreamDeadLetterSink implements DeadLetterSink {
  constructor(private readonly js: JetStreamClient, private readonly options: DeadLetterEventOptions) {}

  async record(dl: DeadLetter): Promise<void> {
    const event = deadLetterEvent(dl, this.options);
    await this.js.publish(eventSubject(this.options.site, event.streamId), JSON.stringify(event), { msgID: event.id });
  }
}
