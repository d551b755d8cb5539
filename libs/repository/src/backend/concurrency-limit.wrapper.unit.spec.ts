import { describe, expect, it } from 'vitest';
import { withConcurrencyLimit, Semaphore } from './concurrency-limit.wrapper.ts';
import { listKeys } from './testing/backend.contract.ts';
import { MemoryBackend } from './testing/memory-backend.ts';

/** A memory backend whose calls stay open until released, counting how many are in flight. */
function gatedBackend() {
  const inner = new MemoryBackend();
  const gates: Array<() => void> = [];
  const state = { inFlight: 0, max: 0, calls: 0 };
  const gate = async <T>(fn: () => Promise<T>): Promise<T> => {
    state.inFlight++;
    state.calls++;
    state.max = Math.max(state.max, state.inFlight);
    await new Promise<void>((resolve) => gates.push(resolve));
    try {
      return await fn();
    } finally {
      state.inFlight--;
    }
  };
  const wrapped = Object.create(inner) as MemoryBackend;
  wrapped.put = (k, d, o) => gate(() => inner.put(k, d, o));
  wrapped.get = (k) => gate(() => inner.get(k));
  const releaseAll = async () => {
    // Bounded: each round releases what is waiting; the test has a fixed number of calls.
    for (let round = 0; round < 100 && (gates.length > 0 || state.inFlight > 0); round++) {
      for (const open of gates.splice(0)) open();
      await new Promise((r) => setImmediate(r));
    }
  };
  return { wrapped, state, gates, releaseAll };
}

describe('withConcurrencyLimit', () => {
  it('never has more than N calls in flight', async () => {
    const { wrapped, state, gates, releaseAll } = gatedBackend();
    const limited = withConcurrencyLimit(wrapped, { limit: 3 });
    const puts = Array.from({ length: 10 }, (_, i) => limited.put(`k/${i}`, new Uint8Array([i])));
    await new Promise((r) => setImmediate(r));
    expect(state.inFlight).toBe(3);
    expect(gates).toHaveLength(3);
    await releaseAll();
    expect(await Promise.all(puts)).toEqual(Array(10).fill(true));
    expect(state.max).toBe(3);
    expect(state.calls).toBe(10);
  });

  it('releases the permit when a call fails', async () => {
    const limited = withConcurrencyLimit(new MemoryBackend(), { limit: 1 });
    await expect(limited.get('missing')).rejects.toThrow(/not found/);
    await expect(limited.get('missing')).rejects.toThrow(/not found/);
    expect(await limited.put('k', new Uint8Array([1]))).toBe(true);
  });

  it('lets a caller read objects while it lists, even with one permit', async () => {
    const inner = new MemoryBackend();
    for (let i = 0; i < 3; i++) await inner.put(`l/${i}`, new Uint8Array([i]));
    const limited = withConcurrencyLimit(inner, { limit: 1 });
    const seen: number[] = [];
    for await (const info of limited.list('l/')) seen.push(...(await limited.get(info.key)));
    expect(seen.sort()).toEqual([0, 1, 2]);
    expect(await listKeys(limited, '')).toHaveLength(3);
  });

  it('hands permits out in FIFO order and rejects bad limits', async () => {
    const sem = new Semaphore(1);
    const order: number[] = [];
    await sem.acquire();
    const waiters = [1, 2, 3].map((i) => sem.acquire().then(() => order.push(i)));
    for (let i = 0; i < 3; i++) {
      sem.release();
      await new Promise((r) => setImmediate(r));
    }
    await Promise.all(waiters);
    expect(order).toEqual([1, 2, 3]);
    expect(() => new Semaphore(0)).toThrow(RangeError);
  });
});
