// Encoding shared by the adapters: events are checked before they are written, and every
// record read back is decoded, validated and upcast, or turned into an InvalidRecord.
import { InvalidEventError, checkEvent, parseEvent, validateEvent, type CairnEvent, type KnownEvent } from '@cairn/contracts';
import { EventLogUsageError, EventTooLargeError, InvalidRecordError, type InvalidRecord } from './errors.ts';
import type { OnInvalidRecord } from './event-log.port.ts';

export interface EncodedEvent {
  readonly event: CairnEvent;
  readonly bytes: Uint8Array;
}

/** Checks a batch for one stream of one site and encodes it as JSON (UTF-8). */
export function encodeBatch(site: string, streamId: string, events: readonly CairnEvent[]): EncodedEvent[] {
  if (events.length === 0) throw new EventLogUsageError(`append to ${streamId}: no events given`);
  const ids = new Set<string>();
  return events.map((e) => {
    const event = checkEvent(e);
    if (event.streamId !== streamId) {
      throw new InvalidEventError('wrong_stream', [{ path: '/streamId', message: `event is for ${event.streamId}, appended to ${streamId}` }], event);
    }
    if (event.site !== site) {
      throw new InvalidEventError('wrong_stream', [{ path: '/site', message: `event is from site ${event.site}, this log is site ${site}` }], event);
    }
    if (ids.has(event.id)) throw new EventLogUsageError(`append to ${streamId}: event id ${event.id} appears twice in one batch`);
    ids.add(event.id);
    return { event, bytes: new TextEncoder().encode(JSON.stringify(event)) };
  });
}

/** Refuses, before anything is sent, an event larger than one record of the log may be. */
export function checkSizes(encoded: readonly EncodedEvent[], maxBytes: number): void {
  for (const { event, bytes } of encoded) {
    if (bytes.byteLength > maxBytes) throw new EventTooLargeError(event.id, event.type, bytes.byteLength, maxBytes);
  }
}

export type Decoded = { ok: true; event: KnownEvent } | { ok: false; record: InvalidRecord };

export function decodeRecord(payload: Uint8Array, position: bigint, location: string): Decoded {
  try {
    return { ok: true, event: parseEvent(payload) };
  } catch (e) {
    const error = e instanceof InvalidEventError
      ? e
      : new InvalidEventError('schema_mismatch', [{ path: '', message: (e as Error).message }]);
    return { ok: false, record: { position, location, error, payload } };
  }
}

/** Like decodeRecord, for a store that hands back parsed JSON (the raw bytes are re-encoded for the report). */
export function decodeValue(value: unknown, position: bigint, location: string): Decoded {
  if (value instanceof Uint8Array) return decodeRecord(value, position, location);
  if (typeof value === 'string') return decodeRecord(new TextEncoder().encode(value), position, location);
  try {
    return { ok: true, event: validateEvent(value) };
  } catch (e) {
    const error = e instanceof InvalidEventError ? e : new InvalidEventError('schema_mismatch', [{ path: '', message: (e as Error).message }]);
    return { ok: false, record: { position, location, error, payload: new TextEncoder().encode(JSON.stringify(value) ?? '') } };
  }
}

/** Hands an invalid record to the hook, or throws when there is none (never drops it). */
export async function reportInvalid(record: InvalidRecord, onInvalid: OnInvalidRecord | undefined): Promise<void> {
  if (!onInvalid) throw new InvalidRecordError(record);
  await onInvalid(record);
}
