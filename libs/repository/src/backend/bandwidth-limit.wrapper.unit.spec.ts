import { describe, expect, it } from 'vitest';
import { withBandwidthLimit, type Clock } from './bandwidth-limit.wrapper.ts';
import { MemoryBackend } from './testing/memory-backend.ts';
import { TokenBucket } from './token-bucket.ts';

/** A clock that only moves when the code under test sleeps; it records every wait. */
function fakeClock(): Clock & { waits: number[]; advance(ms: number): void } {
  let t = 0;
  const waits: number[] = [];
  return {
    waits,
    now: () => t,
    sleep: async (ms) => {
      waits.push(ms);
      t += ms;
    },
    advance: (ms) => {
      t += ms;
    },
  };
}

describe('TokenBucket', () => {
  it('lets the burst through, then charges time at the rate', () => {
    const b = new TokenBucket(1000, 500, 0); // 1000 B/s, 500 B burst
    expect(b.reserve(500, 0)).toBe(0);
    expect(b.reserve(250, 0)).toBe(250);
    expect(b.reserve(250, 0)).toBe(500); // queued behind the previous reservation
    expect(b.available(1000)).toBe(500); // refilled, capped at the burst
  });

  it('accepts an object larger than the burst as a debt', () => {
    const b = new TokenBucket(100, 100, 0);
    expect(b.reserve(1000, 0)).toBe(9000);
    expect(b.reserve(1, 9000)).toBe(10);
  });

  it('ignores a clock stepping back', () => {
    const b = new TokenBucket(100, 100, 1000);
    b.reserve(100, 1000);
    expect(b.available(500)).toBe(0);
    expect(b.available(1500)).toBe(50);
  });
});

describe('withBandwidthLimit', () => {
  it('delays puts by the computed token-bucket waits', async () => {
    const clock = fakeClock();
    const b = withBandwidthLimit(new MemoryBackend(), { uploadBytesPerSec: 1000, burstBytes: 1000, clock });
    await b.put('a', new Uint8Array(1000)); // within the burst
    await b.put('b', new Uint8Array(500)); // 0.5 s of debt
    await b.put('c', new Uint8Array(2000)); // 2 s more
    expect(clock.waits).toEqual([500, 2000]);
  });

  it('charges gets after the fact and ranged gets up front, and leaves metadata alone', async () => {
    const clock = fakeClock();
    const inner = new MemoryBackend();
    await inner.put('x', new Uint8Array(3000));
    const b = withBandwidthLimit(inner, { downloadBytesPerSec: 1000, burstBytes: 1000, clock });
    await b.get('x'); // 3000 B: 2 s of debt paid after reading
    expect(clock.waits).toEqual([2000]);
    await b.getRange('x', 0, 500);
    expect(clock.waits).toEqual([2000, 500]);
    await b.stat('x');
    await b.exists('x');
    for await (const _ of b.list('')) void _;
    expect(clock.waits).toEqual([2000, 500]);
    clock.advance(10_000);
    await b.getRange('x', 0, 1000);
    expect(clock.waits).toEqual([2000, 500]);
  });

  it('limits only the direction it is given', async () => {
    const clock = fakeClock();
    const b = withBandwidthLimit(new MemoryBackend(), { downloadBytesPerSec: 10, clock });
    await b.put('big', new Uint8Array(100_000));
    expect(clock.waits).toEqual([]);
  });
});
