// Preloaded into the stack by a benchmark (a build's `+NODE_OPTIONS=--import=<abs path>/buffer-sites.mjs`,
// with CAIRN_BUFFER_SITES_DIR set): where the main thread's ArrayBuffer memory comes from.
// Dead ArrayBuffers count as V8 external memory until a GC sweeps them, and ~64 MiB of it
// starts a mark-compact of the whole shared heap. Counts the bytes of Buffers of 1 KiB or more
// made through Buffer.alloc/allocUnsafe/allocUnsafeSlow/concat (Node's zlib and fs use them
// too) by call site, samples process.memoryUsage().arrayBuffers every 2 ms (the sum of its
// rises: what was made and not freed at once) and logs memoryUsage after each mark-compact.
// Off until the first SIGUSR2 (incr-ab.ts sends one around each measured job with
// CAIRN_BENCH_GC_DIR set, after the warm-up); each later SIGUSR2 and the exit write
// <dir>/<pid>.json. Native allocations (crypto outputs, socket reads, worker messages) show
// only in the sampled rises. Plain JavaScript: it runs before the CLI, without tsx.
import { Buffer } from 'node:buffer';
import { writeFileSync } from 'node:fs';
import { setInterval } from 'node:timers';
import { isMainThread } from 'node:worker_threads';
import { PerformanceObserver, constants } from 'node:perf_hooks';

const dir = process.env.CAIRN_BUFFER_SITES_DIR;
if (dir && isMainThread) {
  const sites = new Map();
  const markCompacts = [];
  let on = false;
  let last = 0;
  let risen = 0;
  const site = () => new Error().stack.split('\n').slice(3, 9).map((l) => l.trim().replace(/file:\/\/\S*\/(?=[^/]+:\d+)/, '')).join(' < ');
  const count = (bytes) => {
    if (!on || !(bytes >= 1024)) return;
    const k = site();
    const e = sites.get(k) ?? { n: 0, bytes: 0 };
    e.n++;
    e.bytes += bytes;
    sites.set(k, e);
  };
  for (const name of ['allocUnsafe', 'allocUnsafeSlow', 'alloc']) {
    const made = Buffer[name];
    Buffer[name] = function (size, ...rest) { count(size); return made.call(this, size, ...rest); };
  }
  const concat = Buffer.concat;
  Buffer.concat = function (list, total) { const r = concat.call(this, list, total); count(r.length); return r; };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      if (!on || e.detail?.kind !== constants.NODE_PERFORMANCE_GC_MAJOR) continue;
      const m = process.memoryUsage();
      markCompacts.push({ at: Math.round(e.startTime), ms: Math.round(e.duration), heapUsedMB: m.heapUsed >> 20, arrayBuffersMB: m.arrayBuffers >> 20 });
    }
  }).observe({ entryTypes: ['gc'] });
  setInterval(() => {
    if (!on) return;
    const a = process.memoryUsage().arrayBuffers;
    if (a > last) risen += a - last;
    last = a;
  }, 2).unref();
  const write = () => {
    const top = [...sites.entries()].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, 40)
      .map(([where, v]) => ({ mb: +(v.bytes / 1048576).toFixed(2), n: v.n, where }));
    try {
      writeFileSync(`${dir}/${process.pid}.json`, JSON.stringify({ arrayBuffersRisenMB: +(risen / 1048576).toFixed(1), markCompacts, top }, null, 1));
    } catch { /* the run's directory is gone */ }
  };
  process.on('SIGUSR2', () => { if (on) write(); else on = true; });
  process.on('exit', write);
}
