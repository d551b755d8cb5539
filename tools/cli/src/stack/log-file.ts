// The log file of `cairn up` and `cairn hub` (docs/operations.md, Full disk): a full disk or any
// other write error degrades logging, never the process. pino's SonicBoom emits 'error' on a
// failed write, and an unhandled 'error' event would end the whole stack (and orphan the
// nats-server and QEMU it started); here it is handled: the terminal is told (at most once a
// minute), lines wait in a bounded buffer (then are dropped and counted), and writing resumes
// by itself once the disk has room again.
import { pino } from 'pino';

/** Log lines kept in memory while the file cannot be written; beyond this they are dropped. */
const MAX_PENDING_BYTES = 16 * 1024 * 1024;

export type LogFileDestination = ReturnType<typeof pino.destination>;

/** Destinations whose last write failed (cleared by the next good one). */
const failing = new WeakSet<LogFileDestination>();

export function logFileDestination(file: string, say: (line: string) => void, now: () => number = Date.now): LogFileDestination {
  const destination = pino.destination({ dest: file, sync: false, maxLength: MAX_PENDING_BYTES });
  // SonicBoom's flushSync retries a failing write forever, and pino calls it at process exit:
  // while the disk is full it must not, or `cairn up` would hang at exit instead of stopping.
  const flushSync = destination.flushSync.bind(destination);
  destination.flushSync = () => { if (!failing.has(destination)) flushSync(); };
  let failingSince: number | undefined;
  let lastNotice = -Infinity;
  let dropped = 0;
  destination.on('error', (err: NodeJS.ErrnoException) => {
    failing.add(destination);
    failingSince ??= now();
    if (now() - lastNotice < 60_000) return;
    lastNotice = now();
    say(`log file             cannot write ${file} (${err.code ?? err.message}); the stack keeps running, lines wait in memory (up to ${MAX_PENDING_BYTES >> 20} MiB, then are dropped) until it can be written again`);
  });
  destination.on('drop', () => { dropped++; });
  destination.on('write', () => {
    failing.delete(destination);
    if (failingSince === undefined) return;
    say(`log file             ${file} is written again after ${Math.round((now() - failingSince) / 1000)} s${dropped ? ` (${dropped} lines dropped meanwhile)` : ''}`);
    failingSince = undefined;
    lastNotice = -Infinity;
    dropped = 0;
  });
  return destination;
}

/** Flushes what can be flushed at shutdown; a disk that is still full loses the rest, not the shutdown. */
export function flushLogFile(destination: LogFileDestination): void {
  try {
    destination.flushSync();
  } catch {
    // Nothing more to do: the lines could not be written and the process is stopping.
  }
}
