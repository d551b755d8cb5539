// Preloaded into the stack (NODE_OPTIONS --import, with CAIRN_BENCH_GCLOG_DIR): one line per
// garbage collection on each thread, appended to $CAIRN_BENCH_GCLOG_DIR/<pid>.log: the thread's id (workers
// load the preload too), the UTC time, ms since start, kind, duration, the new space's capacity and use, the old space's use, and
// memoryUsage()'s external and arrayBuffers, in MB; a `mark` line at each SIGUSR2 (incr-ab.ts
// sends one before and after each measured job). For finding out why a stack collects often;
// it writes on every GC, so not for CPU figures. Plain JavaScript: it runs before the CLI.
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { PerformanceObserver, constants, performance } from 'node:perf_hooks';
import { getHeapSpaceStatistics } from 'node:v8';
import { threadId } from 'node:worker_threads';

const dir = process.env.CAIRN_BENCH_GCLOG_DIR;
if (dir) {
  const file = join(dir, `${process.pid}.log`);
  const mb = (n) => (n / 2 ** 20).toFixed(1);
  const kinds = {
    [constants.NODE_PERFORMANCE_GC_MINOR]: 'scavenge', [constants.NODE_PERFORMANCE_GC_MAJOR]: 'markCompact',
    [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental', [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak',
  };
  const line = (s) => { try { appendFileSync(file, `t${threadId} ${new Date().toISOString().slice(11, 23)} ${performance.now().toFixed(0)} ${s}\n`); } catch { /* gone */ } };
  const spaces = () => {
    const by = Object.fromEntries(getHeapSpaceStatistics().map((s) => [s.space_name, s]));
    const n = by.new_space, o = by.old_space;
    const m = process.memoryUsage();
    return `new ${mb(n?.space_size ?? 0)}/${mb(n?.space_used_size ?? 0)} old ${mb(o?.space_size ?? 0)}/${mb(o?.space_used_size ?? 0)} heapUsed ${mb(m.heapUsed)} ext ${mb(m.external)} ab ${mb(m.arrayBuffers)}`;
  };
  line(`start ${process.execArgv.join(' ')}`);
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) line(`${kinds[e.detail?.kind] ?? e.detail?.kind} ${e.duration.toFixed(1)}ms flags ${e.detail?.flags} at ${e.startTime.toFixed(0)} ${spaces()}`);
  }).observe({ entryTypes: ['gc'] });
  process.on('SIGUSR2', () => line(`mark ${spaces()}`));
}
