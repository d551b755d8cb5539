import { describe, expect, it } from 'vitest';
import { AuthThrottle } from './auth-throttle.ts';

describe('AuthThrottle', () => {
  it('blocks a source after the limit, reports few aggregated records, and forgets it when idle', () => {
    const t = new AuthThrottle({ limit: 10, windowMs: 60_000, blockMs: 60_000 });
    const records = [];
    for (let i = 0; i < 300; i++) {
      records.push(...t.failure(1000 + i * 5, '10.0.0.1', 'unknown'));
    }
    // 300 attempts in 1.5 s: the first, and the start of the block; not 300.
    expect(records.map((r) => [r.scope, r.attempts, Boolean(r.blockedUntil)])).toEqual([['source', 1, false], ['source', 10, true]]);
    expect(t.blockedFor(2000, '10.0.0.1')).toBeGreaterThan(0);
    expect(t.blockedFor(2000, '10.0.0.2')).toBe(0);
    // The window ends: one summary with every attempt.
    const summary = t.flush(61_100);
    expect(summary).toEqual([expect.objectContaining({ scope: 'source', source: '10.0.0.1', attempts: 300, reasons: ['unknown'] })]);
    expect(t.blockedFor(61_100, '10.0.0.1')).toBe(0);
    expect(t.flush(200_000)).toEqual([]);
  });

  it('counts a user\'s failing tokens across sources', () => {
    const t = new AuthThrottle({ limit: 3 });
    const out = [
      ...t.failure(0, 'a', 'revoked', 'bob'), ...t.failure(1, 'b', 'revoked', 'bob'), ...t.failure(2, 'c', 'expired', 'bob'),
    ];
    const bob = out.filter((r) => r.scope === 'user');
    expect(bob.map((r) => r.attempts)).toEqual([1, 3]);
    expect(bob[1]).toMatchObject({ userId: 'bob', source: 'c', reasons: ['revoked', 'expired'] });
    expect(t.blockedFor(3, 'd', 'bob')).toBeGreaterThan(0);
    expect(t.blockedFor(3, 'd')).toBe(0);
  });
});
