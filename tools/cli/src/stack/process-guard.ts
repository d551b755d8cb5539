// No process `cairn up` started may outlive it, however it ends (Ctrl-C, SIGTERM, SIGKILL,
// its terminal or its npm parent gone). Every process it starts inherits a mark in its
// environment (CAIRN_UP_ID=<id>); a small watchdog, in its own session, holds a pipe from
// `cairn up` and, when the pipe closes (its holder died or exited), ends every process still
// carrying the mark: SIGTERM, then SIGKILL after a grace period. Linux only (/proc).
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';

export const MARK = 'CAIRN_UP_ID';

/** Pids (other than this process) whose environment carries `MARK=<id>`. */
export function markedPids(id: string): number[] {
  const needle = `${MARK}=${id}\0`;
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      if (readFileSync(`/proc/${pid}/environ`, 'latin1').includes(needle)) out.push(pid);
    } catch {
      // gone, or not ours to read
    }
  }
  return out;
}

/** Sends `signal` to every marked process; returns how many it reached. */
export function signalMarked(id: string, signal: NodeJS.Signals): number {
  let n = 0;
  for (const pid of markedPids(id)) {
    try { process.kill(pid, signal); n++; } catch { /* already gone */ }
  }
  return n;
}

// The watchdog: a POSIX shell script (dash: about 1 MiB resident, where a second Node process
// held 45 MiB, 9 of them its own, for as long as `cairn up` runs). One grep over every
// process's environment per look; SIGTERM, then SIGKILL after the grace period, repeated until
// no marked process is left (a shell ignoring SIGTERM may fork a new child while one look
// reads /proc, and that child would be missed by a single SIGKILL), at most 50 looks.
export const WATCHDOG_SH = `
trap '' INT TERM HUP
id=$1; n=$(( $2 / 100 ))
while read -r _; do :; done
pids() { grep -lzx "${MARK}=$id" /proc/[0-9]*/environ 2>/dev/null | sed 's|^/proc/||; s|/environ$||'; }
hit() { p=$(pids); [ -n "$p" ] || return 1; kill -s "$1" $p 2>/dev/null; return 0; }
hit TERM || exit 0
while [ "$n" -gt 0 ]; do sleep 0.1; [ -z "$(pids)" ] && exit 0; n=$((n - 1)); done
k=50
while [ "$k" -gt 0 ] && hit KILL; do sleep 0.05; k=$((k - 1)); done
exit 0
`;

// Where there is no /bin/sh (a distroless image): the same watchdog in plain JavaScript with
// `node -e`, so it needs no file (bundle or sources).
const WATCHDOG = `
const [id, graceMs] = process.argv.slice(1);
const { readdirSync, readFileSync } = require('node:fs');
const needle = 'CAIRN_UP_ID=' + id + '\\0';
const marked = () => readdirSync('/proc').filter((n) => /^\\d+$/.test(n) && Number(n) !== process.pid).filter((n) => {
  try { return readFileSync('/proc/' + n + '/environ', 'latin1').includes(needle); } catch { return false; }
}).map(Number);
const hit = (sig) => { let n = 0; for (const p of marked()) { try { process.kill(p, sig); n++; } catch {} } return n; };
for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(s, () => undefined);
const reap = () => {
  if (hit('SIGTERM') === 0) process.exit(0);
  const deadline = Date.now() + Number(graceMs);
  const tick = setInterval(() => {
    if (marked().length === 0) process.exit(0);
    if (Date.now() > deadline) {
      clearInterval(tick);
      let k = 50;
      const kill = () => { if (hit('SIGKILL') === 0 || --k === 0) process.exit(0); setTimeout(kill, 50); };
      kill();
    }
  }, 100);
};
process.stdin.on('data', () => undefined);
process.stdin.on('end', reap);
process.stdin.on('error', reap);
process.stdin.on('close', reap);
`;

export interface ProcessGuard {
  readonly id: string;
  /** SIGKILL everything this process started (second Ctrl-C, missed deadline). */
  killAll(): number;
}

/**
 * Marks this process's environment (children started from now on inherit the mark) and starts
 * the watchdog. `graceMs`: how long the watchdog waits after SIGTERM before SIGKILL.
 */
export function guardChildren(graceMs = 3000): ProcessGuard {
  const id = randomUUID();
  process.env[MARK] = id;
  const env = { ...process.env };
  delete env[MARK];
  const [cmd, args] = existsSync('/bin/sh') ? ['/bin/sh', ['-c', WATCHDOG_SH, 'cairn-watchdog']] : [process.execPath, ['-e', WATCHDOG]];
  const watchdog = spawn(cmd, [...args, id, String(graceMs)], {
    detached: true, stdio: ['pipe', 'ignore', 'ignore'], env,
  });
  watchdog.on('error', () => undefined);
  watchdog.unref();
  // The pipe stays open as long as this process lives; it must not keep the event loop alive.
  (watchdog.stdin as unknown as { unref?: () => void }).unref?.();
  return { id, killAll: () => signalMarked(id, 'SIGKILL') };
}

/**
 * Calls `onOrphaned` once if this process's parent goes away (e.g. `npx cairn up &` and the
 * npm process is killed: its shell dies, this process is re-parented and would serve on).
 */
export function watchParent(onOrphaned: () => void, intervalMs = 500): () => void {
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid !== parent) {
      clearInterval(timer);
      onOrphaned();
    }
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
