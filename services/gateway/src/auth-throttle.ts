// Failed authentication, counted per source address and per user (docs/security.md, Edges):
// past `limit` failures in a window the key is blocked (429, nothing checked) for `blockMs`, and
// what happened is reported as few AuthFailed records (first failure, start of a block, a
// summary when a window ends), never one per attempt. Pure: time is passed in.
import type { EventDataMap } from '@cairn/contracts';

export type AuthFailedData = EventDataMap['AuthFailed'];

export interface AuthThrottleOptions {
  /** Failures of one key within `windowMs` that start a block (default 10). */
  readonly limit?: number;
  readonly windowMs?: number;
  readonly blockMs?: number;
  /** Keys kept at most (oldest dropped first). */
  readonly maxKeys?: number;
}

interface Counter {
  readonly scope: 'source' | 'user';
  readonly id: string;
  source: string;
  windowStart: number;
  attempts: number;
  reported: number;
  reasons: Set<string>;
  blockedUntil: number;
}

export class AuthThrottle {
  private readonly counters = new Map<string, Counter>();
  private readonly limit: number;
  private readonly windowMs: number;
  private readonly blockMs: number;
  private readonly maxKeys: number;

  constructor(o: AuthThrottleOptions = {}) {
    this.limit = o.limit ?? 10;
    this.windowMs = o.windowMs ?? 60_000;
    this.blockMs = o.blockMs ?? 60_000;
    this.maxKeys = o.maxKeys ?? 10_000;
  }

  /** How long (ms) requests from this source, or with this user's failing credentials, are refused; 0: not blocked. */
  blockedFor(now: number, source: string, userId?: string): number {
    const keys = [`source:${source}`, ...(userId ? [`user:${userId}`] : [])];
    return Math.max(0, ...keys.map((k) => (this.counters.get(k)?.blockedUntil ?? 0) - now));
  }

  /** Counts a failure; returns the AuthFailed records it calls for (often none). */
  failure(now: number, source: string, reason: string, userId?: string): AuthFailedData[] {
    const out: AuthFailedData[] = [];
    this.count(now, 'source', source, source, reason, out);
    if (userId) this.count(now, 'user', userId, source, reason, out);
    return out;
  }

  /** Summaries of windows that ended with failures not yet reported; forgets idle keys. */
  flush(now: number): AuthFailedData[] {
    const out: AuthFailedData[] = [];
    for (const [key, c] of this.counters) {
      if (now - c.windowStart < this.windowMs) continue;
      if (c.attempts > c.reported) out.push(this.record(c));
      if (c.blockedUntil <= now) this.counters.delete(key);
      else this.restart(c, now);
    }
    return out;
  }

  private count(now: number, scope: 'source' | 'user', id: string, source: string, reason: string, out: AuthFailedData[]): void {
    const key = `${scope}:${id}`;
    let c = this.counters.get(key);
    if (c && now - c.windowStart >= this.windowMs) {
      if (c.attempts > c.reported) out.push(this.record(c));
      this.restart(c, now);
    }
    if (!c) {
      if (this.counters.size >= this.maxKeys) this.counters.delete(this.counters.keys().next().value!);
      c = { scope, id, source, windowStart: now, attempts: 0, reported: 0, reasons: new Set(), blockedUntil: 0 };
      this.counters.set(key, c);
    }
    c.source = source;
    c.attempts++;
    if (c.reasons.size < 8) c.reasons.add(reason.slice(0, 32));
    const blocking = c.attempts === this.limit && c.blockedUntil <= now;
    if (blocking) c.blockedUntil = now + this.blockMs;
    if (c.attempts === 1 || blocking) out.push(this.record(c));
  }

  private restart(c: Counter, now: number): void {
    c.windowStart = now;
    c.attempts = 0;
    c.reported = 0;
    c.reasons = new Set();
  }

  private record(c: Counter): AuthFailedData {
    c.reported = c.attempts;
    return {
      scope: c.scope, source: c.source.slice(0, 64), ...(c.scope === 'user' ? { userId: c.id.slice(0, 256) } : {}),
      attempts: c.attempts, reasons: [...c.reasons], windowStart: new Date(c.windowStart).toISOString(),
      ...(c.blockedUntil > c.windowStart ? { blockedUntil: new Date(c.blockedUntil).toISOString() } : {}),
    };
  }
}
