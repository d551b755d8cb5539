import { describe, expect, it } from 'vitest';
import { BoundedQueue } from './bounded-queue.ts';

describe('bounded queue', () => {
  it('makes push wait while full, and take return up to max', async () => {
    const q = new BoundedQueue<number>(2);
    await q.push(1);
    await q.push(2);
    let third = false;
    const pushing = q.push(3).then((ok) => { third = ok; });
    await new Promise((r) => setImmediate(r));
    expect(third).toBe(false); // still waiting for room
    expect(await q.take(5, 0)).toEqual([1, 2]);
    await pushing;
    expect(third).toBe(true);
    expect(await q.take(5, 0)).toEqual([3]);
  });

  it('lingers for a fuller batch, and close ends waiting on both sides', async () => {
    const q = new BoundedQueue<number>(10);
    await q.push(1);
    const taking = q.take(3, 5_000);
    await q.push(2);
    await q.push(3); // the batch is full: take returns without waiting out the linger
    expect(await taking).toEqual([1, 2, 3]);
    const waiting = q.take(3, 0);
    q.close();
    expect(await waiting).toEqual([]);
    expect(await q.push(4)).toBe(false);
    expect(() => new BoundedQueue(0)).toThrow(/positive/);
  });
});
