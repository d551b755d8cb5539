// A timeline of CPU per thread while a step runs: every `intervalMs` the time on a CPU and the
// time runnable but waiting for one (/proc/<pid>/task/<tid>/schedstat, ns) of each thread of
// the given processes and their descendants,
// grouped by what the thread is (the stack's main thread, each chunk worker, libuv's pool,
// V8's platform threads, nats-server, QEMU). It says which thread is busy in which phase of a
// job and when a core sits idle, which the step's CPU totals cannot. The run-queue wait is what
// other processes of a loaded machine took from a thread that could have run; what is left of
// the wall time is the thread sleeping (waiting for data, a lock or a reply): the pipeline's own idling.
import { readdir, readFile } from 'node:fs/promises';

export interface ThreadSample {
  /** ms since the timeline started. */
  readonly t: number;
  /** ms on a CPU so far per group (cumulative, from /proc). */
  readonly groups: Readonly<Record<string, number>>;
  /** ms runnable but waiting for a CPU so far per group (cumulative). */
  readonly waits: Readonly<Record<string, number>>;
  /** Threads per group at this sample. */
  readonly threads: Readonly<Record<string, number>>;
}

interface ThreadStat { comm: string; runMs: number; waitMs: number }

async function threadStat(pid: number, tid: string): Promise<ThreadStat | undefined> {
  const [comm, sched] = await Promise.all([
    readFile(`/proc/${pid}/task/${tid}/comm`, 'utf8').catch(() => undefined),
    readFile(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').catch(() => undefined),
  ]);
  if (comm === undefined || !sched) return undefined;
  const [run, wait] = sched.split(' ').map(Number);
  return { comm: comm.trim(), runMs: (run ?? 0) / 1e6, waitMs: (wait ?? 0) / 1e6 };
}

/** Descendants of `root` (itself included), through each thread's `children` file. */
async function tree(root: number): Promise<Array<{ pid: number; comm: string }>> {
  const out: Array<{ pid: number; comm: string }> = [];
  const stack = [root];
  while (stack.length) {
    const pid = stack.pop()!;
    const comm = (await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim();
    if (!comm) continue;
    out.push({ pid, comm });
    for (const tid of await readdir(`/proc/${pid}/task`).catch(() => [] as string[])) {
      const children = await readFile(`/proc/${pid}/task/${tid}/children`, 'utf8').catch(() => '');
      for (const c of children.split(' ')) if (c.trim()) stack.push(Number(c));
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
  const once = async (): Promise<void> => {
    const groups: Record<string, number> = {};
    const waits: Record<string, number> = {};
    const threads: Record<string, number> = {};
    const t = performance.now() - t0;
    for (const root of roots) {
      for (const p of await tree(root)) {
        for (const tid of await readdir(`/proc/${p.pid}/task`).catch(() => [] as string[])) {
          const st = await threadStat(p.pid, tid);
          if (!st) continue;
          const g = group(root, p.pid, p.comm, tid, st.comm);
          groups[g] = (groups[g] ?? 0) + st.runMs;
          waits[g] = (waits[g] ?? 0) + st.waitMs;
          threads[g] = (threads[g] ?? 0) + 1;
        }
      }
    }
    samples.push({ t, groups, waits, threads });
  };
  const loop = (async () => {
    while (running) {
      const started = performance.now();
      await once();
      await new Promise((r) => setTimeout(r, Math.max(0, intervalMs - (performance.now() - started))));
    }
    await once();
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
