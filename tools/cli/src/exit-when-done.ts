// A command whose work is over when its action returns (nothing of it left in the event loop:
// its session closed, its output written) says so here, and bin/cairn.js then ends the process
// with process.exit() instead of letting Node tear it down: the environment, its handles and the
// isolate's heap freed one by one, 10-80 ms between the last output and the exit on this shared
// machine against 7-12 ms (docs/benchmarks.md, "2026-12-07: the restore's control path").
// Commands that leave work behind them (cairn up, a download's file stream) must not call it.
let done = false;

/** The running command ends with its action: the process may exit as soon as it returns. */
export function exitWhenDone(): void {
  done = true;
}

export function exitsWhenDone(): boolean {
  return done;
}
