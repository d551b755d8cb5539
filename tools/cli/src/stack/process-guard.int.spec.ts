// The shell watchdog of `cairn up` (process-guard.ts) on real processes: when its pipe closes it
// ends every process carrying the mark (SIGTERM; SIGKILL after the grace period for one that
// ignores SIGTERM) and leaves every other process alone.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { MARK, markedPids, WATCHDOG_SH } from './process-guard.ts';

const started: ChildProcess[] = [];
afterEach(() => {
  for (const p of started.splice(0)) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
});

function start(cmd: string, args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  const p = spawn(cmd, args, { env, stdio: ['pipe', 'ignore', 'ignore'] });
  started.push(p);
  return p;
}

const exited = (p: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> =>
  p.exitCode !== null || p.signalCode !== null
    ? Promise.resolve({ code: p.exitCode, signal: p.signalCode })
    : new Promise((r) => p.once('exit', (code, signal) => r({ code, signal })));

describe('the shell watchdog of cairn up', () => {
  it('ends the marked processes when its pipe closes (SIGKILL for one ignoring SIGTERM) and no other', async () => {
    const id = randomUUID();
    const { [MARK]: _drop, ...clean } = process.env;
    const marked = { ...clean, [MARK]: id };
    const polite = start('sleep', ['600'], marked);
    const stubborn = start('/bin/sh', ['-c', "trap '' TERM; while :; do sleep 1; done"], marked);
    const other = start('sleep', ['600'], { ...clean, [MARK]: randomUUID() });
    const watchdog = start('/bin/sh', ['-c', WATCHDOG_SH, 'cairn-watchdog', id, '500'], clean);
    // Every marked process is visible before the pipe closes (the shell and its sleeps).
    for (;;) {
      const pids = markedPids(id);
      if (pids.includes(polite.pid!) && pids.includes(stubborn.pid!)) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(watchdog.exitCode).toBeNull();
    watchdog.stdin!.end();
    expect(await exited(polite)).toEqual({ code: null, signal: 'SIGTERM' });
    expect(await exited(stubborn)).toEqual({ code: null, signal: 'SIGKILL' });
    expect((await exited(watchdog)).code).toBe(0);
    expect(markedPids(id)).toEqual([]);
    expect(other.exitCode).toBeNull();
    expect(other.signalCode).toBeNull();
  });

  it('exits at once when nothing carries the mark', async () => {
    const { [MARK]: _drop, ...clean } = process.env;
    const watchdog = start('/bin/sh', ['-c', WATCHDOG_SH, 'cairn-watchdog', randomUUID(), '3000'], clean);
    watchdog.stdin!.end();
    expect(await exited(watchdog)).toEqual({ code: 0, signal: null });
  });
});
