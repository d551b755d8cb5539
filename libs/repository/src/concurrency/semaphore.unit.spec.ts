import { describe, expect, it } from 'vitest';
import { forEachLimit, Semaphore } from './semaphore.ts';

describe('bounded concurrency', () => {
  it('never runs more than the limit and reports the first error after all settle', async () => {
    let running = 0;
    let peak = 0;
    const done: number[] = [];
    await forEachLimit([1, 2, 3, 4, 5, 6, 7], 3, async (n) => {
      running++; peak = Math.max(peak, running);
      await new Promise((r) => setTimeout(r, 2));
      running--; done.push(n);
    });
    expect(peak).toBe(3);
    expect(done.sort()).toEqual([1, 2, 3, 4, 5, 6, 7]);
    await expect(forEachLimit([1, 2, 3], 2, async (n) => { if (n === 2) throw new Error('two'); })).rejects.toThrow('two');
  });

  it('a semaphore hands its permits to waiters in order', async () => {
    const s = new Semaphore(1);
    await s.acquire();
    const order: number[] = [];
    const a = s.acquire().then(() => order.push(1));
    const b = s.acquire().then(() => order.push(2));
    s.release(); await a;
    s.release(); await b;
    expect(order).toEqual([1, 2]);
  });
});
