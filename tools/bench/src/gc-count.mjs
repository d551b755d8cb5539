// Preloaded by scale.ts into every `cairn run` process (NODE_OPTIONS --import): counts the main
// thread's garbage collections by kind (V8's `gc` performance entries) and writes them to
// $CAIRN_BENCH_GC_DIR/<pid>.json when it gets SIGUSR2 (scale.ts sends it when the jobs start
// and end) and when it exits; nothing in between (a write a second cost the coordinator ~1% of
// its busy time). Plain JavaScript: it runs before the CLI, without tsx.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PerformanceObserver, constants } from 'node:perf_hooks';

const dir = process.env.CAIRN_BENCH_GC_DIR;
if (dir) {
  const counts = { scavenge: 0, markCompact: 0, incremental: 0, weak: 0, ms: 0 };
  const kinds = {
    [constants.NODE_PERFORMANCE_GC_MINOR]: 'scavenge', [constants.NODE_PERFORMANCE_GC_MAJOR]: 'markCompact',
    [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental', [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak',
  };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const k = kinds[e.detail?.kind];
      if (k) counts[k]++;
      counts.ms += e.duration;
    }
  }).observe({ entryTypes: ['gc'] });
  const file = join(dir, `${process.pid}.json`);
  const write = () => { try { writeFileSync(file, JSON.stringify({ ...counts, ms: Math.round(counts.ms) })); } catch { /* the run's directory is gone */ } };
  process.on('SIGUSR2', write);
  process.on('exit', write);
}
