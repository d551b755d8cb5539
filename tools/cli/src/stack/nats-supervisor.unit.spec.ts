import { describe, expect, it, vi } from 'vitest';
import type { NatsServerProcess } from '@cairn/nats-server';
import { combinedSupervision, superviseNats, type NatsRestart } from './nats-supervisor.ts';

/** A server whose start() fails `failures` times, then works. */
function flakyServer(failures: number): { server: NatsServerProcess; starts: () => number } {
  let starts = 0;
  const server = {
    pid: 4242,
    start: async () => {
      starts++;
      if (starts <= failures) throw new Error(`port busy (${starts})`);
    },
  } as unknown as NatsServerProcess;
  return { server, starts: () => starts };
}

describe('nats-server supervision', () => {
  it('restarts after an unasked exit, backing off while starts fail, and says so', async () => {
    const { server, starts } = flakyServer(2);
    const failed: number[] = [];
    const restarted = new Promise<NatsRestart>((resolve) => {
      const sup = superviseNats(() => server, { backoffMs: [0, 10, 20], onAttemptFailed: (n) => failed.push(n), onRestarted: resolve });
      sup.exited({ code: null, signal: 'SIGKILL', pid: 1 });
      expect(sup.status()).toMatchObject({ state: 'restarting', restarts: 0, lastExit: { signal: 'SIGKILL' } });
      // A second exit report while restarting changes nothing.
      sup.exited({ code: 1, signal: null, pid: 1 });
    });
    const r = await restarted;
    expect(r).toMatchObject({ attempts: 3, exit: { signal: 'SIGKILL' } });
    expect(failed).toEqual([1, 2]);
    expect(starts()).toBe(3);
  });

  it('does not restart once stopped', async () => {
    const { server, starts } = flakyServer(0);
    const sup = superviseNats(() => server, { backoffMs: [20] });
    sup.exited({ code: 0, signal: null, pid: 1 });
    sup.stop();
    await new Promise((r) => setTimeout(r, 60));
    expect(starts()).toBe(0);
    expect(sup.status().state).toBe('stopped');
  });

  it('a cluster: running while every member runs, restarting while one is down, restarts summed', async () => {
    const a = flakyServer(0);
    const b = flakyServer(0);
    const members = [superviseNats(() => a.server, { backoffMs: [0] }), superviseNats(() => b.server, { backoffMs: [0] })];
    const all = combinedSupervision(members);
    expect(all.status()).toMatchObject({ state: 'running', restarts: 0 });
    members[1]!.exited({ code: null, signal: 'SIGKILL', pid: 4242 });
    expect(all.status()).toMatchObject({ state: 'restarting', lastExit: { signal: 'SIGKILL' } });
    await vi.waitFor(() => expect(all.status()).toMatchObject({ state: 'running', restarts: 1 }));
    all.stop();
    expect(all.status().state).toBe('stopped');
  });
});
