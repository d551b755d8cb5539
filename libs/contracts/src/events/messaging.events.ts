// Events about the messaging itself (stream `deadletter-<consumer>`): a message a consumer
// gave up on, recorded so nothing is lost silently and an operator can replay it.
import { Type } from '@sinclair/typebox';
import { lazySchema } from '../lazy-schema.ts';
import { Count, Name, Reason } from './common.ts';

/** Bytes of payload kept in a dead-letter event (the preview is base64 of at most this). */
export const DEAD_LETTER_PREVIEW_BYTES = 1024;

export const MessageDeadLetteredV1 = lazySchema(() => Type.Object({
  consumer: Name,
  subject: Type.String({ minLength: 1, maxLength: 1024 }),
  reason: Reason,
  streamSequence: Type.Optional(Type.Integer({ minimum: 1 })),
  deliveries: Count,
  /** Base64 of the first 1 KiB of the payload. */
  payloadPreview: Type.String({ maxLength: 1368, contentEncoding: 'base64' }),
  payloadBytes: Count,
  headers: Type.Record(Type.String(), Type.Array(Type.String())),
}, { additionalProperties: false }));

/** Base64 of at most the first 1 KiB of a payload, for `payloadPreview`. */
export function payloadPreview(payload: Uint8Array): string {
  return Buffer.from(payload.subarray(0, DEAD_LETTER_PREVIEW_BYTES)).toString('base64');
}

/**
 * `cairn up` restarted the nats-server it supervises after it exited unasked (stream
 * `supervisor-<site>`), written once the server runs again.
 */
export const NatsServerRestartedV1 = lazySchema(() => Type.Object({
  /** How it ended: the exit code, or the signal that ended it. */
  exitCode: Type.Union([Type.Integer(), Type.Null()]),
  signal: Type.Union([Name, Type.Null()]),
  /** Milliseconds from the exit to the server listening again. */
  downMs: Count,
  /** Start attempts it took (1: the first worked). */
  attempts: Type.Integer({ minimum: 1 }),
  /** Restarts since `cairn up` started, this one included. */
  restarts: Type.Integer({ minimum: 1 }),
}, { additionalProperties: false }));

