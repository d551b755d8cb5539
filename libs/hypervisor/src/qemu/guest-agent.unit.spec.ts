// Freeze/thaw against a fake guest agent socket: a real agent needs a guest OS.
import { afterEach, describe, expect, it } from 'vitest';
import { FreezeGuard, GuestAgentClient } from './guest-agent.ts';
import { fakeGuestAgent as fakeAgent } from '../testing/fake-guest-agent.ts';

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
