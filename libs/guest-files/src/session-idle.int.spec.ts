// Ten browsing sessions opened through the pool and left idle: all ten appliances run at once
// (each bounded to its memory size), and every one is shut down when the idle time passes,
// with no appliance process left. Reports the resident memory of the appliances (QEMU and its
// guestfish server) and of this Node process while open and after. Real libguestfs appliances
// over a real NBD export of a small ext4 disk; the idle time is shortened for the test.
import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { NbdServer, openFileSource } from '@cairn/nbd';
import { createHarness, waitFor } from '@cairn/testing';
import { BrowseSession } from './browse-session.ts';
import { SessionPool } from './session-pool.ts';

const run = promisify(execFile);
const h = createHarness();
afterAll(() => h.close(), 300_000);

const SESSIONS = 10;
const IDLE_MS = 15_000;
const MEMORY_MIB = 384;

async function alive(pids: readonly number[]): Promise<number[]> {
  const out: number[] = [];
  for (const pid of pids) if (await readFile(`/proc/${pid}/status`, 'utf8').then(() => true, () => false)) out.push(pid);
  return out;
}

async function childrenOf(pid: number): Promise<number[]> {
  const kids = (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '')).split(/\s+/).filter(Boolean).map(Number);
  return [...kids, ...(await Promise.all(kids.map(childrenOf))).flat()];
}

const MiB = (b: number) => Math.round(b / 1024 / 1024);

describe('idle browsing sessions', () => {
  it(`${SESSIONS} sessions left idle are all closed after the idle time; memory stays bounded`, async () => {
    const dir = await h.tmpDir('guest-files-idle-');
    await mkdir(join(dir, 'root'), { recursive: true });
    await writeFile(join(dir, 'root', 'hello.txt'), 'hello\n');
    const raw = join(dir, 'small.raw');
    await run('mke2fs', ['-q', '-t', 'ext4', '-d', join(dir, 'root'), '-F', raw, '16M']);
    const source = await openFileSource(raw);
    h.onClose(() => source.close());
    const exports = Object.fromEntries(Array.from({ length: SESSIONS }, (_, i) => [`e${i}`, { source, description: `session ${i}` }]));
    const server = new NbdServer({ exports });
    const socket = join(dir, 'nbd.sock');
    await server.listen({ path: socket });
    h.onClose(() => server.close());

    const closed: Array<{ key: string; why: string; at: number }> = [];
    // Opening ten takes minutes under TCG: the idle time is long while they open, then shortened
    // and every session used once more, so all ten are idle from the same moment.
    const options = { idleMs: 3_600_000, maxSessions: SESSIONS };
    const pool = new SessionPool(options, (key, why) => closed.push({ key, why, at: Date.now() }));
    h.onClose(() => pool.close());
    const open = (i: number) => pool.use(`e${i}`, () => BrowseSession.open({ uri: `nbd:///e${i}?socket=${socket}` }, { label: `session ${i}`, memoryMiB: MEMORY_MIB }),
      async (s) => (await s.ls('/disk')).map((e) => e.name));
    // Two at a time (two cores): each lists its disk once, then is left alone.
    const started = Date.now();
    for (let i = 0; i < SESSIONS; i += 2) {
      const lists = await Promise.all([open(i), open(i + 1)]);
      for (const l of lists) expect(l).toContain('hello.txt');
    }
    const openedMs = Date.now() - started;
    const sessions = pool.sessions();
    expect(sessions).toHaveLength(SESSIONS);
    options.idleMs = IDLE_MS;
    // Each session's idle time runs from its own last use (the ten uses take seconds under load).
    const usedAt = new Map<string, number>();
    for (let i = 0; i < SESSIONS; i++) {
      expect(await open(i)).toContain('hello.txt');
      usedAt.set(`e${i}`, Date.now());
    }
    const lastUse = Date.now();
    expect(closed).toEqual([]);
    const pids = (await Promise.all(sessions.map(async (s) => [s.pid, ...(await childrenOf(s.pid))]))).flat();
    expect((await alive(pids)).length).toBe(pids.length);
    const rss = await Promise.all(sessions.map((s) => s.rssBytes()));
    const nodeRss = process.memoryUsage().rss;
    // Each appliance stays near its guest memory (QEMU's own overhead on top), whatever it does.
    for (const r of rss) expect(MiB(r)).toBeLessThan(MEMORY_MIB + 256);
    console.log(`[idle sessions] ${SESSIONS} appliances opened in ${(openedMs / 1000).toFixed(0)} s; RSS while open: appliances ${rss.map(MiB).join(', ')} MiB (total ${MiB(rss.reduce((a, b) => a + b, 0))} MiB), node ${MiB(nodeRss)} MiB`);

    // Left alone: every one closes after the idle time, none before it.
    await waitFor(async () => (closed.length === SESSIONS ? true : undefined), { timeoutMs: IDLE_MS + 180_000, intervalMs: 500, what: 'every idle session closed' });
    expect(closed.map((c) => c.why)).toEqual(Array(SESSIONS).fill('idle'));
    for (const c of closed) expect(c.at - usedAt.get(c.key)!, `${c.key} closed before its idle time`).toBeGreaterThanOrEqual(IDLE_MS - 1000);
    expect(pool.keys()).toEqual([]);
    await waitFor(async () => ((await alive(pids)).length === 0 ? true : undefined), { timeoutMs: 60_000, what: 'no appliance process left' });
    const after = process.memoryUsage().rss;
    console.log(`[idle sessions] all ${SESSIONS} closed ${((Math.max(...closed.map((c) => c.at)) - lastUse) / 1000).toFixed(0)} s after the last use (idle time ${IDLE_MS / 1000} s); RSS after: appliances 0 MiB (no process left), node ${MiB(after)} MiB`);
  }, 1_500_000);
});
