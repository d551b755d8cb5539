// The supervisor of an instant recovery session's exporter: a small shell loop (so it outlives
// any data mover, in the exporter's own process group) that starts the exporter again whenever
// it ends with an error, however soon after its start that was. The one exception is an
// exporter that never served: until the data mover has seen the socket answer (and written the
// `served` mark), a failure ends the supervisor with the exporter's exit code, so a session
// that cannot start fails at once with the exporter's log instead of retrying forever. Restarts
// back off (1 s, doubling, at most 30 s); a run that lasted a minute resets the delay. A clean
// exit (0: the exporter was asked to stop) ends the supervisor.

/** The script, run as `sh -c SCRIPT cairn-exporter <served-mark> <command> [args…]`. */
export const EXPORTER_SUPERVISOR = [
  'served=$1; shift; delay=1',
  'while :; do',
  '  s=$(date +%s); "$@"; c=$?',
  '  [ "$c" -eq 0 ] && exit 0',
  '  [ -e "$served" ] || exit "$c"',
  '  [ $(( $(date +%s) - s )) -ge 60 ] && delay=1',
  '  echo "cairn-exporter: the exporter ended with $c; starting it again in $delay s" >&2',
  '  sleep "$delay"; delay=$(( delay * 2 )); [ "$delay" -gt 30 ] && delay=30',
  'done',
].join('\n');

/** The argv for `spawn` of a supervised exporter. */
export function supervisedExporter(served: string, command: string, args: readonly string[]): { command: string; args: string[] } {
  return { command: '/bin/sh', args: ['-c', EXPORTER_SUPERVISOR, 'cairn-exporter', served, command, ...args] };
}
