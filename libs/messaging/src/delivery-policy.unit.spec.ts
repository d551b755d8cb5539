import { describe, expect, it } from 'vitest';
import { afterFailure, exceededDeliveries, exponentialBackoff, nakDelay } from './delivery-policy.ts';
import { NonRetryableError, RetryLaterError } from './errors.ts';

const policy = { maxDeliver: 4, backoffMs: [100, 200, 400] };

describe('delivery policy', () => {
  it('builds a capped exponential backoff', () => {
    expect(exponentialBackoff(1000, 5, 2, 5000)).toEqual([1000, 2000, 4000, 5000, 5000]);
    expect(() => exponentialBackoff(0, 3)).toThrow(RangeError);
  });

  it('delays redelivery more after each failure, the last delay repeating', () => {
    expect([1, 2, 3, 4, 9].map((n) => nakDelay(n, policy.backoffMs))).toEqual([100, 200, 400, 400, 400]);
    expect(nakDelay(3, [])).toBe(0);
  });

  it('naks a retryable failure until the last delivery, then dead-letters it', () => {
    expect(afterFailure(new Error('down'), 1, policy)).toEqual({ kind: 'nak', delayMs: 100 });
    expect(afterFailure(new Error('down'), 3, policy)).toEqual({ kind: 'nak', delayMs: 400 });
    const last = afterFailure(new Error('down'), 4, policy);
    expect(last).toMatchObject({ kind: 'dead-letter', reason: 'max_deliveries' });
    expect(last.kind === 'dead-letter' && last.detail).toContain('down');
  });

  it('redelivers after the delay a handler names (RetryLaterError), also past the last delivery', () => {
    expect(afterFailure(new RetryLaterError('not due', 1234), 1, policy)).toEqual({ kind: 'nak', delayMs: 1234 });
    expect(afterFailure(new RetryLaterError('locked', 50), 4, policy)).toEqual({ kind: 'nak', delayMs: 50 });
  });

  it('dead-letters a non-retryable failure at once', () => {
    expect(afterFailure(new NonRetryableError('bad disk id'), 1, policy)).toEqual({ kind: 'dead-letter', reason: 'handler_rejected', detail: 'bad disk id' });
    expect(afterFailure({ retryable: false, message: 'nope' }, 1, policy)).toMatchObject({ reason: 'handler_rejected', detail: 'nope' });
  });

  it('dead-letters a message delivered more often than allowed before running the handler (crash loop)', () => {
    expect(exceededDeliveries(4, policy)).toBeUndefined();
    expect(exceededDeliveries(5, policy)).toMatchObject({ kind: 'dead-letter', reason: 'max_deliveries' });
  });
});
