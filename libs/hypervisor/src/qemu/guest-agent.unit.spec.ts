// Freeze/thaw against a fake guest agent socket: a real agent needs a guest OS.
import { createServer, type Socket } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FreezeGuard, GuestAgentClient } from './guest-agent.ts';

/** A fake agent: answers guest-sync-delimited with 0xFF + id; `freezeDelayMs` delays (or, if Infinity, drops) the freeze answer. */
async function fakeAgent(freezeDelayMs: number) {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-qga-'));
  const path = join(dir, 'qga.sock');
  const received: string[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    let buf = '';
    sock.on('data', (d) => {
      buf += d.toString('latin1').replaceAll('\xff', '');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const cmd = JSON.parse(buf.slice(0, nl)) as { execute: string; arguments?: { id: number } };
        buf = buf.slice(nl + 1);
        received.push(cmd.execute);
        if (cmd.execute === 'guest-sync-delimited') sock.write(Buffer.concat([Buffer.from([0xff]), Buffer.from(JSON.stringify({ return: cmd.arguments?.id }) + '\n')]));
        else if (cmd.execute === 'guest-fsfreeze-freeze') {
          if (Number.isFinite(freezeDelayMs)) setTimeout(() => sock.writable && sock.write(JSON.stringify({ return: 2 }) + '\n'), freezeDelayMs);
        } else sock.write(JSON.stringify({ return: 2 }) + '\n');
      }
    });
  });
  await new Promise<void>((r) => server.listen(path, r));
  return {
    path, received,
    async close() { for (const s of sockets) s.destroy(); await new Promise<void>((r) => server.close(() => r())); await rm(dir, { recursive: true, force: true }); },
  };
}

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => { for (const c of cleanups.splice(0).reverse()) await c(); });
const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('FreezeGuard', () => {
  it('freezes and thaws when asked', async () => {
    const agent = await fakeAgent(0);
    cleanups.push(() => agent.close());
    const guard = new FreezeGuard(new GuestAgentClient(agent.path));
    expect(await guard.freeze({ timeoutMs: 1000 })).toEqual({ frozen: true, reason: 'guest agent froze 2 file system(s)' });
    await guard.thaw();
    expect(agent.received.filter((c) => c !== 'guest-sync-delimited')).toEqual(['guest-fsfreeze-freeze', 'guest-fsfreeze-thaw']);
  });

  it('a freeze that does not answer in time is followed by a thaw, and reported as not frozen', async () => {
    const agent = await fakeAgent(Infinity);
    cleanups.push(() => agent.close());
    const guard = new FreezeGuard(new GuestAgentClient(agent.path));
    const out = await guard.freeze({ timeoutMs: 50 });
    expect(out.frozen).toBe(false);
    expect(out.reason).toMatch(/no answer within 50 ms/);
    expect(agent.received).toContain('guest-fsfreeze-thaw');
  });

  it('thaws by itself when nobody thaws within maxFrozenMs', async () => {
    const agent = await fakeAgent(0);
    cleanups.push(() => agent.close());
    const guard = new FreezeGuard(new GuestAgentClient(agent.path));
    await guard.freeze({ timeoutMs: 1000, maxFrozenMs: 30 });
    expect(guard.frozen).toBe(true);
    for (let i = 0; i < 100 && !agent.received.includes('guest-fsfreeze-thaw'); i++) await tick(10);
    expect(agent.received).toContain('guest-fsfreeze-thaw');
    expect(guard.frozen).toBe(false);
  });
});
