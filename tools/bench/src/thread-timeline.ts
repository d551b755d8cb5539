// A timeline of CPU per thread while a step runs: every `intervalMs` the time on a CPU and the
// time runnable but waiting for one (/proc/<pid>/task/<tid>/schedstat, ns) of each thread of
// the given processes and their descendants,
// grouped by what the thread is (the stack's main thread, each chunk worker, libuv's pool,
// V8's platform threads, nats-server, QEMU). It says which thread is busy in which phase of a
// job and when a core sits idle, which the step's CPU totals cannot. The run-queue wait is what
// other processes of a loaded machine took from a thread that could have run; what is left of
// the wall time is the thread sleeping (waiting for data, a lock or a reply): the pipeline's own idling.
import { readdirSync, readFileSync } from 'node:fs';

export interface ThreadSample {
  /** ms since the timeline started. */
  readonly t: number;
  /** ms on a CPU so far per group (cumulative, from /proc). */
  readonly groups: Readonly<Record<string, number>>;
  /** ms runnable but waiting for a CPU so far per group (cumulative). */
  readonly waits: Readonly<Record<string, number>>;
  /** Threads per group at this sample. */
  readonly threads: Readonly<Record<string, number>>;
  /**
   * The whole machine so far (cumulative ms over all cores, /proc/stat's first line): `idle` (idle
   * and iowait: a core with nothing to run) and `busy` (everything else, every process and the
   * kernel). Says whether a phase left a core unused, which no thread's own figures can.
   */
  readonly machine?: { readonly idle: number; readonly busy: number };
}

/** /proc/stat's `cpu` line in ms (USER_HZ is 100 on Linux). */
function machineStat(): { idle: number; busy: number } | undefined {
  const text = readOr('/proc/stat');
  const f = text.slice(0, text.indexOf('\n')).trim().split(/\s+/).slice(1).map(Number);
  if (f.length < 5) return undefined;
  // user nice system idle iowait irq softirq steal (guest time is inside user already).
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  const busy = f.slice(0, 8).reduce((a, b) => a + b, 0) - idle;
  return { idle: idle * 10, busy: busy * 10 };
}

// Synchronous reads on purpose: the sampler shares the 2 cores with what it measures, and an
// async `readFile` of /proc is four hops through libuv's pool (open, stat, read, close) on top of
// the read. Measured (2026-12-07, "a third chunk worker on a quiet machine"): the async sampler
// took ~0.5 CPU-s per restore and ~0.3 s of its wall time.
function readOr(path: string, or = ''): string {
  try { return readFileSync(path, 'utf8'); } catch { return or; }
}
function listOr(path: string): string[] {
  try { return readdirSync(path); } catch { return []; }
}

function schedstat(pid: number, tid: string): { runMs: number; waitMs: number } | undefined {
  const sched = readOr(`/proc/${pid}/task/${tid}/schedstat`);
  if (!sched) return undefined;
  const [run, wait] = sched.split(' ').map(Number);
  return { runMs: (run ?? 0) / 1e6, waitMs: (wait ?? 0) / 1e6 };
}

/** Descendants of `root` (itself included), through each thread's `children` file. */
function tree(root: number): Array<{ pid: number; comm: string }> {
  const out: Array<{ pid: number; comm: string }> = [];
  const stack = [root];
  while (stack.length) {
    const pid = stack.pop()!;
    const comm = readOr(`/proc/${pid}/comm`).trim();
    if (!comm) continue;
    out.push({ pid, comm });
    for (const tid of listOr(`/proc/${pid}/task`)) {
      for (const c of readOr(`/proc/${pid}/task/${tid}/children`).split(' ')) if (c.trim()) stack.push(Number(c));
    }
  }
  return out;
}

/**
 * The group of a thread: `main` (the root's main thread), `worker:<tid>` for a Node worker
 * thread (a chunk worker in a backup), `libuv` (the thread pool), `v8` (V8's platform threads:
 * concurrent GC and compilation), else the process's command name (nats-server, qemu…).
 */
function group(root: number, pid: number, procComm: string, tid: string, comm: string): string {
  if (procComm.startsWith('qemu')) return 'qemu';
  if (pid !== root) return procComm;
  if (Number(tid) === root) return 'main';
  if (comm.startsWith('libuv-worker')) return 'libuv';
  if (comm.startsWith('V8') || comm.startsWith('DelayedTask')) return 'v8';
  if (comm === 'WorkerThread' || comm.startsWith('Worker')) return `worker:${tid}`;
  return `node:${comm}`;
}

/** Samples `roots` (the stack's process, QEMU…) every `intervalMs` until `stop()`. */
export function startTimeline(roots: readonly number[], intervalMs = 50): { stop(): Promise<ThreadSample[]> } {
  const samples: ThreadSample[] = [];
  const t0 = performance.now();
  let running = true;
  // The process tree and the threads' names are looked up again every REWALK samples (a
  // descendant or a thread's name is seen up to that late); the threads are listed every sample.
  const REWALK = 10;
  let procs = new Map<number, Array<{ pid: number; comm: string }>>();
  const names = new Map<string, string>();
  let n = 0;
  const once = (): void => {
    const groups: Record<string, number> = {};
    const waits: Record<string, number> = {};
    const threads: Record<string, number> = {};
    if (n++ % REWALK === 0) {
      procs = new Map(roots.map((r) => [r, tree(r)]));
      names.clear();
    }
    const t = performance.now() - t0;
    const machine = machineStat();
    for (const root of roots) {
      for (const p of procs.get(root) ?? []) {
        for (const tid of listOr(`/proc/${p.pid}/task`)) {
          const st = schedstat(p.pid, tid);
          if (!st) continue;
          const key = `${p.pid}/${tid}`;
          const comm = names.get(key) ?? readOr(`/proc/${p.pid}/task/${tid}/comm`).trim();
          const g = group(root, p.pid, p.comm, tid, comm);
          // A name kept only once it says what the thread is: a new thread carries its parent's
          // name ("MainThread") until Node or libuv names it.
          if (!g.startsWith('node:')) names.set(key, comm);
          groups[g] = (groups[g] ?? 0) + st.runMs;
          waits[g] = (waits[g] ?? 0) + st.waitMs;
          threads[g] = (threads[g] ?? 0) + 1;
        }
      }
    }
    samples.push({ t, groups, waits, threads, ...(machine ? { machine } : {}) });
  };
  const loop = (async () => {
    while (running) {
      const started = performance.now();
      once();
      await new Promise((r) => setTimeout(r, Math.max(0, intervalMs - (performance.now() - started))));
    }
    once();
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return samples;
    },
  };
}

/**
 * The timeline as text: one row per `bucketMs`, each group's share of a core in that bucket
 * (1.00 = one core busy all of it), the sum, and the totals in CPU-s. Worker threads are
 * numbered w1, w2… in the order of their ids.
 */
export function formatTimeline(samples: readonly ThreadSample[], bucketMs = 250): string {
  if (samples.length < 2) return '(too few samples)';
  const names = [...new Set(samples.flatMap((s) => Object.keys(s.groups)))];
  const workers = names.filter((n) => n.startsWith('worker:')).sort((a, b) => Number(a.slice(7)) - Number(b.slice(7)));
  const label = (n: string): string => (n.startsWith('worker:') ? `w${workers.indexOf(n) + 1}` : n);
  const order = ['main', ...workers, 'libuv', 'v8', ...names.filter((n) => !['main', 'libuv', 'v8'].includes(n) && !n.startsWith('worker:')).sort()];
  const cols = order.filter((n) => names.includes(n));
  const at = (s: ThreadSample, n: string): number => s.groups[n] ?? 0;
  const lines = [['t s', ...cols.map((n) => label(n).slice(0, 10)), 'sum'].map((c) => c.padStart(11)).join('')];
  let prev = samples[0]!;
  for (let i = 1; i < samples.length; i++) {
    const s = samples[i]!;
    if (s.t - prev.t < bucketMs && i < samples.length - 1) continue;
    const dt = s.t - prev.t;
    const shares = cols.map((n) => (at(s, n) - at(prev, n)) / dt);
    lines.push([(s.t / 1000).toFixed(2), ...shares.map((v) => v.toFixed(2)), shares.reduce((a, b) => a + b, 0).toFixed(2)].map((c) => c.padStart(11)).join(''));
    prev = s;
  }
  const first = samples[0]!;
  const last = samples[samples.length - 1]!;
  const total = (pick: (s: ThreadSample) => Readonly<Record<string, number>>, n: string): number => ((pick(last)[n] ?? 0) - (pick(first)[n] ?? 0)) / 1000;
  const row = (name: string, f: (n: string) => number): string =>
    [name, ...cols.map((n) => f(n).toFixed(2)), cols.reduce((a, n) => a + f(n), 0).toFixed(2)].map((c) => c.padStart(11)).join('');
  lines.push(row('CPU-s', (n) => total((s) => s.groups, n)));
  lines.push(row('runq-wait s', (n) => total((s) => s.waits, n)));
  // Per thread: the wall time neither on a CPU nor waiting for one (asleep), counted from the
  // first sample that saw it (chunk workers start with the transfer), for groups of one thread.
  const asleep = (n: string): number => {
    const born = samples.find((s) => s.groups[n] !== undefined);
    if (!born || last.threads[n] !== 1) return NaN;
    return (last.t - born.t) / 1000 - ((last.groups[n] ?? 0) - (born.groups[n] ?? 0)) / 1000 - ((last.waits[n] ?? 0) - (born.waits[n] ?? 0)) / 1000;
  };
  lines.push(row('asleep s', asleep));
  return lines.join('\n');
}
