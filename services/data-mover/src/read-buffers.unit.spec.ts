import { describe, expect, it } from 'vitest';
import { ReadBufferPool } from './read-buffers.ts';

describe('ReadBufferPool', () => {
  it('hands a given-back buffer to the next taker of its size class', () => {
    const pool = new ReadBufferPool(1 << 20, 4096);
    const a = pool.take(3000);
    expect(a.length).toBe(4096);
    pool.give([a]);
    expect(pool.heldBytes).toBe(4096);
    expect(pool.take(4000)).toBe(a);
    expect(pool.heldBytes).toBe(0);
    // A larger need is a buffer of its own; a smaller one may get a larger free buffer.
    const b = pool.take(5000);
    expect(b.length).toBe(8192);
    expect(b).not.toBe(a);
    pool.give([b, a]);
    expect(pool.take(100)).toBe(a);
    expect(pool.take(100)).toBe(b);
  });

  it('keeps at most its bound of free bytes, and no buffer it did not size', () => {
    const pool = new ReadBufferPool(8192, 4096);
    const bufs = [pool.take(4096), pool.take(4096), pool.take(4096)];
    pool.give([...bufs, Buffer.alloc(5000), undefined]);
    expect(pool.heldBytes).toBe(8192);
    const detached = pool.take(4096);
    (detached.buffer as ArrayBuffer & { transfer(length: number): ArrayBuffer }).transfer(0);
    pool.give([detached]);
    expect(pool.heldBytes).toBe(4096);
  });
});
