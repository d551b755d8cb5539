// Recognising a retried append. When a stream is not at the revision an append expects, the
// events right after that revision may be this very batch (or its first part), written by an
// earlier attempt whose answer was lost. Then the append is not a conflict: it is finished
// by writing only what is missing. Shared by the adapters so they agree on the rule.
import type { EncodedEvent } from './codec.ts';
import type { ExpectedRevision, EventStreamReader, Recorded } from './event-log.port.ts';

export type RetryCheck =
  | { readonly kind: 'conflict' }
  | { readonly kind: 'done'; readonly last: Recorded }
  | { readonly kind: 'resume'; readonly rest: readonly EncodedEvent[]; readonly last: Recorded };

export async function checkRetry(
  reader: EventStreamReader, streamId: string, expected: ExpectedRevision, batch: readonly EncodedEvent[], actual: bigint | 'no_stream',
): Promise<RetryCheck> {
  if (actual === 'no_stream' || expected === 'any' || expected === 'stream_exists') return { kind: 'conflict' };
  const base = expected === 'no_stream' ? -1n : expected;
  if (actual <= base) return { kind: 'conflict' };
  const after: Recorded[] = [];
  // Unreadable records after the expected revision cannot be ours: they make it a conflict.
  let unreadable = false;
  const reading = reader.readStream(streamId, { fromRevision: base + 1n, maxCount: batch.length + 1, onInvalid: () => { unreadable = true; } });
  for await (const r of reading) after.push(r);
  if (unreadable || after.length === 0 || after.length > batch.length) return { kind: 'conflict' };
  const ours = after.every((r, i) => r.event.id === batch[i]!.event.id && r.revision === base + 1n + BigInt(i));
  const last = after.at(-1)!;
  if (!ours || last.revision !== actual) return { kind: 'conflict' };
  return after.length === batch.length ? { kind: 'done', last } : { kind: 'resume', rest: batch.slice(after.length), last };
}

/** Streams longer than this are not searched for repeats of an 'any' append (see skipStored). */
export const REPEAT_SCAN_LIMIT = 256n;

/**
 * For appends without an expected revision ('any', 'stream_exists'): which events of the
 * batch the stream holds already (by id, at any age), so a repeat stores nothing twice.
 * `last` is set when the batch's last event is stored (then it is the append's result).
 * Streams are per aggregate and short; a stream past REPEAT_SCAN_LIMIT events (a busy
 * dead-letter stream) is not searched, so every append does not read it all: there the
 * store's own deduplication (JetStream's duplicate window) is what catches a repeat.
 */
export async function skipStored(
  reader: EventStreamReader, streamId: string, batch: readonly EncodedEvent[], headRevision: bigint,
): Promise<{ readonly rest: readonly EncodedEvent[]; readonly last: Recorded | undefined }> {
  if (headRevision >= REPEAT_SCAN_LIMIT) return { rest: batch, last: undefined };
  const wanted = new Set(batch.map((e) => e.event.id));
  const found = new Map<string, Recorded>();
  for await (const r of reader.readStream(streamId, { onInvalid: () => undefined })) {
    if (wanted.has(r.event.id)) found.set(r.event.id, r);
  }
  if (found.size === 0) return { rest: batch, last: undefined };
  return { rest: batch.filter((e) => !found.has(e.event.id)), last: found.get(batch.at(-1)!.event.id) };
}
