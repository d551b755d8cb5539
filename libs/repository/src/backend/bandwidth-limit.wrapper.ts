// Limits the bytes per second a backend uploads and downloads (token buckets), so backups
// over a shared WAN link leave room for everything else. Metadata calls are not limited.
import type { Backend } from './backend.ts';
import { TokenBucket } from './token-bucket.ts';

export interface Clock {
  /** Milliseconds, monotonic enough for rate keeping. */
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

export interface BandwidthLimitOptions {
  /** Bytes per second for puts; unset = unlimited. */
  uploadBytesPerSec?: number;
  /** Bytes per second for gets; unset = unlimited. */
  downloadBytesPerSec?: number;
  /** Bucket size in bytes (default one second's worth of the rate). */
  burstBytes?: number;
  clock?: Clock;
}

export function withBandwidthLimit(inner: Backend, options: BandwidthLimitOptions): Backend {
  const clock = options.clock ?? systemClock;
  const bucket = (rate: number | undefined) =>
    rate === undefined ? undefined : new TokenBucket(rate, options.burstBytes ?? rate, clock.now());
  const up = bucket(options.uploadBytesPerSec);
  const down = bucket(options.downloadBytesPerSec);
  const pay = async (b: TokenBucket | undefined, bytes: number) => {
    if (!b || bytes === 0) return;
    const wait = b.reserve(bytes, clock.now());
    if (wait > 0) await clock.sleep(wait);
  };
  return {
    location: inner.location,
    async put(key, data, opts) {
      await pay(up, data.length);
      return inner.put(key, data, opts);
    },
    async get(key) {
      // The size is known only afterwards: pay then, which delays the next transfer instead.
      const data = await inner.get(key);
      await pay(down, data.length);
      return data;
    },
    async getRange(key, offset, length) {
      await pay(down, length);
      return inner.getRange(key, offset, length);
    },
    stat: (key) => inner.stat(key),
    exists: (key) => inner.exists(key),
    list: (prefix) => inner.list(prefix),
    delete: (key) => inner.delete(key),
    flush: (group) => inner.flush(group),
    ...(inner.removeDebris ? { removeDebris: (ms: number) => inner.removeDebris!(ms) } : {}),
    close: () => inner.close?.() ?? Promise.resolve(),
  };
}
