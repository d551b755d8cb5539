// Typed errors of the event log: each one says what happened and carries the facts a caller
// needs to decide (retry, report, give up).
import type { InvalidEventError } from '@cairn/contracts';
import type { ExpectedRevision } from './event-log.port.ts';

/** The stream was not at the expected revision: somebody else appended first. */
export class WrongExpectedRevisionError extends Error {
  override readonly name = 'WrongExpectedRevisionError';
  constructor(
    readonly streamId: string,
    readonly expected: ExpectedRevision,
    /** Revision of the stream's last event, or 'no_stream'. */
    readonly actual: bigint | 'no_stream',
  ) {
    super(`stream ${streamId}: expected revision ${String(expected)}, but it is at ${String(actual)}`);
  }
}

/** An event does not fit in one message of the log (before anything was sent). */
export class EventTooLargeError extends Error {
  override readonly name = 'EventTooLargeError';
  constructor(readonly eventId: string, readonly type: string, readonly bytes: number, readonly maxBytes: number) {
    super(`event ${type} ${eventId} is ${bytes} bytes encoded; the log accepts at most ${maxBytes}`);
  }
}

/** A record in the log that cannot be read as an event. The record itself is kept. */
export interface InvalidRecord {
  readonly position: bigint;
  /** Where it was found: the subject (JetStream) or stream name (KurrentDB). */
  readonly location: string;
  readonly error: InvalidEventError;
  /** The raw bytes (for a dead letter or an operator). */
  readonly payload: Uint8Array;
}

/** Thrown by a read that met an invalid record and had no `onInvalid` hook. */
export class InvalidRecordError extends Error {
  override readonly name = 'InvalidRecordError';
  constructor(readonly record: InvalidRecord) {
    super(`unreadable record at position ${record.position} (${record.location}): ${record.error.message}`, { cause: record.error });
  }
}

/** The log was used wrongly (empty batch, event for another stream or site...). */
export class EventLogUsageError extends Error {
  override readonly name = 'EventLogUsageError';
}
