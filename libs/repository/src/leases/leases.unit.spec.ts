import { describe, expect, it } from 'vitest';
import { MemoryBackend } from '../backend/testing/memory-backend.ts';
import { acquireSweepLease, acquireWriterLease, liveWriters } from './leases.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const timing = { leaseMs: 300, pollMs: 10, waitMs: 5_000 };

describe('GC leases', () => {
  it('a writer lease stays live by heartbeat and is gone for good once released', async () => {
    const b = new MemoryBackend();
    const lease = await acquireWriterLease(b, timing);
    await sleep(1_000); // > 3 lease periods: only heartbeats keep it live
    expect(await liveWriters(b)).toEqual([lease.key]);
    await lease.assertHeld();
    await lease.release();
    await sleep(400);
    expect(await liveWriters(b)).toEqual([]);
    expect(await b.exists(lease.key)).toBe(false);
  });

  it('a stale writer lease (crashed writer) is ignored and removed', async () => {
    const b = new MemoryBackend();
    const old = new Date(Date.now() - 60_000).toISOString();
    await b.put('pending/dead', Buffer.from(JSON.stringify({ holder: 'dead', heartbeatAt: old, startedAt: old, leaseMs: 1000 })));
    // The memory backend stamps mtime now, so wait out the lease.
    await sleep(1_050);
    expect(await liveWriters(b)).toEqual([]);
    expect(await b.exists('pending/dead')).toBe(false);
  });

  it('a sweep waits for writers; a writer arriving during a sweep waits for it', async () => {
    const b = new MemoryBackend();
    const writer = await acquireWriterLease(b, timing);
    const sweeping = acquireSweepLease(b, timing);
    await sleep(100);
    expect(await b.exists('gc/sweep')).toBe(true);
    await writer.release();
    const sweep = await sweeping;
    expect(sweep).toBeDefined();
    let second = false;
    const next = acquireWriterLease(b, timing).then((l) => { second = true; return l; });
    await sleep(100);
    expect(second).toBe(false);
    expect(await liveWriters(b)).toEqual([]); // it withdrew while waiting
    await sweep!.release();
    const l2 = await next;
    expect(await liveWriters(b)).toEqual([l2.key]);
    await l2.release();
  });

  it('a sweep gives up (holding nothing) when writers outlast its wait', async () => {
    const b = new MemoryBackend();
    const writer = await acquireWriterLease(b, timing);
    expect(await acquireSweepLease(b, { ...timing, waitMs: 50 })).toBeUndefined();
    expect(await b.exists('gc/sweep')).toBe(false);
    await writer.release();
  });
});
