import { describe, expect, it } from 'vitest';
import { MemoryBackend } from '../backend/testing/memory-backend.ts';
import { acquireSweepLease, liveWriters } from './leases.ts';
import { SharedWriterLease } from './shared-writer-lease.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const timing = { leaseMs: 300, pollMs: 10, waitMs: 5_000 };

describe('the shared writer lease', () => {
  it('writes at once share one lease, deleted when the last ends; a later write takes a new one', async () => {
    const b = new MemoryBackend();
    const shared = new SharedWriterLease(b, timing);
    const [h1, h2] = await Promise.all([shared.acquire(), shared.acquire()]);
    const h3 = await shared.acquire();
    const live = await liveWriters(b);
    expect(live).toHaveLength(1);
    await h1.release();
    await h1.release(); // once per hold: a second release changes nothing
    await h2.release();
    expect(await liveWriters(b)).toEqual(live);
    await h3.assertHeld();
    await h3.release();
    expect(await liveWriters(b)).toEqual([]);
    const h4 = await shared.acquire();
    const again = await liveWriters(b);
    expect(again).toHaveLength(1);
    expect(again).not.toEqual(live);
    await h4.release();
  });

  it('a sweep waits for the writes in the lease; a write starting during the sweep does not join, and waits for it', async () => {
    const b = new MemoryBackend();
    const shared = new SharedWriterLease(b, timing);
    const first = await shared.acquire();
    const sweeping = acquireSweepLease(b, timing);
    await sleep(100);
    expect(await b.exists('gc/sweep')).toBe(true);
    // Joining now would keep the sweep waiting for as long as writes keep coming.
    let joined = false;
    const late = shared.acquire().then((h) => { joined = true; return h; });
    await sleep(100);
    expect(joined).toBe(false);
    await first.release();
    const sweep = await sweeping;
    expect(sweep).toBeDefined();
    await sleep(100);
    expect(joined).toBe(false); // still waiting for the sweep
    await sweep!.release();
    const h = await late;
    expect(await liveWriters(b)).toHaveLength(1);
    await h.release();
    expect(await liveWriters(b)).toEqual([]);
  });

  it('a write gives up when a sweep outlasts its wait', async () => {
    const b = new MemoryBackend();
    const sweep = await acquireSweepLease(b, timing);
    const shared = new SharedWriterLease(b, { ...timing, waitMs: 50 });
    await expect(shared.acquire()).rejects.toThrow(/garbage collection sweep/);
    expect(await liveWriters(b)).toEqual([]);
    await sweep!.release();
  });
});
