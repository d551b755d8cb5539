// The session pool's rules with stand-in sessions (the appliance itself is covered by
// browse-session.int.spec.ts): reuse, idle close, the bound, eviction of the idle one.
import { describe, expect, it } from 'vitest';
import type { BrowseSession } from './browse-session.ts';
import { PoolFullError, SessionPool } from './session-pool.ts';

function fake(): BrowseSession & { closed: boolean } {
  const s = { closed: false, alive: () => !s.closed, close: async () => { s.closed = true; } };
  return s as unknown as BrowseSession & { closed: boolean };
}

describe('SessionPool', () => {
  it('reuses a warm session, closes idle ones after the timeout, and stays within its bound', async () => {
    const closed: string[] = [];
    const pool = new SessionPool({ idleMs: 150, maxSessions: 10 }, (key, why) => closed.push(`${key}:${why}`));
    const made: Array<ReturnType<typeof fake>> = [];
    const open = async () => { const s = fake(); made.push(s); return s; };
    for (let i = 0; i < 10; i++) await pool.use(`rp${i}/disk0`, open, async () => undefined);
    await pool.use('rp0/disk0', open, async () => undefined);
    expect(made).toHaveLength(10);
    expect(pool.started).toBe(10);
    // An eleventh while none is busy: the least recently used idle one makes room.
    await pool.use('rp10/disk0', open, async () => undefined);
    expect(closed).toEqual(['rp1/disk0:evicted']);
    expect(pool.keys()).toHaveLength(10);
    // Left alone, every one is closed after the idle time.
    await new Promise((r) => setTimeout(r, 600));
    expect(pool.keys()).toEqual([]);
    expect(made.every((s) => s.closed)).toBe(true);
    expect(closed.filter((c) => c.endsWith(':idle'))).toHaveLength(10);
  });

  it('tells the caller to come back when every session is busy, and never closes a busy one', async () => {
    const pool = new SessionPool({ idleMs: 50, maxSessions: 1 });
    let release!: () => void;
    const busy = pool.use('a', async () => fake(), () => new Promise<void>((r) => { release = r; }));
    await new Promise((r) => setTimeout(r, 120));
    expect(pool.keys()).toEqual(['a']);
    await expect(pool.use('b', async () => fake(), async () => undefined)).rejects.toBeInstanceOf(PoolFullError);
    release();
    await busy;
    await pool.close();
    expect(pool.keys()).toEqual([]);
  });

  it('opens one session for concurrent first users and forgets a failed open', async () => {
    const pool = new SessionPool({ idleMs: 1000, maxSessions: 2 });
    let opens = 0;
    const open = async () => { opens++; await new Promise((r) => setTimeout(r, 30)); return fake(); };
    await Promise.all([pool.use('a', open, async () => 1), pool.use('a', open, async () => 2)]);
    expect(opens).toBe(1);
    await expect(pool.use('b', () => Promise.reject(new Error('no file system')), async () => 1)).rejects.toThrow('no file system');
    expect(pool.keys()).toEqual(['a']);
    await pool.close();
  });
});
