// A token bucket that hands out reservations: pure arithmetic on a clock reading, so the
// bandwidth limiter's waits can be tested exactly without sleeping.

export class TokenBucket {
  private tokens: number;
  private last: number;

  /**
   * @param rate  tokens (bytes) added per second
   * @param burst most tokens the bucket holds: how much may go out at full speed after a pause
   * @param now   current clock reading in ms
   */
  constructor(readonly rate: number, readonly burst: number, now: number) {
    if (!(rate > 0) || !Number.isFinite(rate)) throw new RangeError(`rate must be a positive number of bytes per second, got ${rate}`);
    if (!(burst >= 0)) throw new RangeError(`burst must be >= 0, got ${burst}`);
    this.tokens = burst;
    this.last = now;
  }

  /**
   * Takes `n` tokens at time `now` and returns how many ms the caller must wait before using
   * them. The balance may go negative (a debt): an object larger than the burst still goes
   * through, and concurrent callers queue behind each other in reservation order.
   */
  reserve(n: number, now: number): number {
    this.refill(now);
    this.tokens -= n;
    return this.tokens >= 0 ? 0 : (-this.tokens / this.rate) * 1000;
  }

  /** Tokens available at `now` (negative while in debt). */
  available(now: number): number {
    this.refill(now);
    return this.tokens;
  }

  private refill(now: number): void {
    // A clock that steps back adds nothing rather than removing tokens.
    const elapsed = Math.max(0, now - this.last);
    this.last = Math.max(this.last, now);
    this.tokens = Math.min(this.burst, this.tokens + (elapsed * this.rate) / 1000);
  }
}
