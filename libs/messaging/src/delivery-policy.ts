// What a consumer does with a message after its handler ran: ack, redeliver later (nak with
// a growing delay), or give up and dead-letter it. Pure, so the rules are tested alone.
import { RetryLaterError, errorMessage, isNonRetryable } from './errors.ts';

/** Why a message was dead-lettered (the first word of the event's `reason`). */
export type DeadLetterReason =
  | 'malformed_json'
  | 'not_an_object'
  | 'unknown_type'
  | 'unknown_version'
  | 'schema_mismatch'
  | 'wrong_stream'
  | 'upcast_failed'
  | 'oversize'
  | 'handler_rejected'
  | 'max_deliveries';

export interface RetryPolicy {
  /** Deliveries before giving up (the first delivery counts). */
  readonly maxDeliver: number;
  /** Delay before delivery n+1 after delivery n failed: `backoffMs[n-1]`, the last one repeating. */
  readonly backoffMs: readonly number[];
}

export type Outcome =
  | { readonly kind: 'ack' }
  | { readonly kind: 'nak'; readonly delayMs: number }
  | { readonly kind: 'dead-letter'; readonly reason: DeadLetterReason; readonly detail: string };

/** `count` delays starting at `firstMs`, each `factor` times the previous, capped at `maxMs`. */
export function exponentialBackoff(firstMs: number, count: number, factor = 2, maxMs = Number.POSITIVE_INFINITY): number[] {
  if (!(firstMs > 0) || !(count >= 1) || !(factor >= 1)) throw new RangeError('backoff needs firstMs > 0, count >= 1, factor >= 1');
  const out: number[] = [];
  let d = firstMs;
  for (let i = 0; i < count; i++) {
    out.push(Math.min(Math.round(d), maxMs));
    d *= factor;
  }
  return out;
}

/** Default: 1 s, 2 s, 4 s … capped at 5 min. */
export const DEFAULT_BACKOFF_MS: readonly number[] = exponentialBackoff(1000, 9, 2, 300_000);

export function nakDelay(deliveryCount: number, backoffMs: readonly number[]): number {
  if (backoffMs.length === 0) return 0;
  const i = Math.min(Math.max(deliveryCount, 1), backoffMs.length) - 1;
  return backoffMs[i] ?? 0;
}

/** Before running the handler: a message delivered more often than allowed (a crash loop). */
export function exceededDeliveries(deliveryCount: number, policy: RetryPolicy): Outcome | undefined {
  if (deliveryCount <= policy.maxDeliver) return undefined;
  return {
    kind: 'dead-letter',
    reason: 'max_deliveries',
    detail: `delivered ${deliveryCount} times (max ${policy.maxDeliver}) without being acknowledged; the handler never finished`,
  };
}

/** After the handler threw. */
export function afterFailure(err: unknown, deliveryCount: number, policy: RetryPolicy): Outcome {
  // Not a failure: the handler named when to come back.
  if (err instanceof RetryLaterError) return { kind: 'nak', delayMs: Math.max(0, err.delayMs) };
  if (isNonRetryable(err)) return { kind: 'dead-letter', reason: 'handler_rejected', detail: errorMessage(err) };
  if (deliveryCount >= policy.maxDeliver) {
    return { kind: 'dead-letter', reason: 'max_deliveries', detail: `failed ${deliveryCount} times; last error: ${errorMessage(err)}` };
  }
  return { kind: 'nak', delayMs: nakDelay(deliveryCount, policy.backoffMs) };
}
