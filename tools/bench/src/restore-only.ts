// The product's restore alone (issue 20), for A/B runs of the restore path close in time:
// `cairn restore <incremental> --to <file>` through the public CLI against `cairn up`, N times,
// each timed from spawn to exit, checked by SHA-256, split by the data mover's log lines
// (product.ts RESTORE_PHASES: CLI until the request, queue and plan, chunks written, fsync,
// rename, completion events, CLI exit), with the CPU seconds of the stack and of the CLI and the
// stack's peak RSS.
//
//   npx tsx tools/bench/src/restore-only.ts [--size 2G] [--restores 5] [--state /tmp/dir] [--images /tmp/dir]
//     [--builds base=/work/wt/base,head=/work/wt/x --rounds 3] [--timeline] [--threads] [--cold-meta]
//
// --timeline: each restore's per-thread CPU timeline of the stack (thread-timeline.ts), and per build
// the median CPU-ms per thread group (main thread, chunk workers, libuv, V8's threads, nats-server)
// over the command and inside the chunk phase alone, with their sum but the chunk workers', and the
// chunk phase's cores: the workers' time on a CPU, runnable without one and asleep, and the machine's
// idle and busy core-ms (/proc/stat). The sampler costs ~0.15 CPU-s per restore (it was ~0.5 before
// its reads were made synchronous: thread-timeline.ts).
// CAIRN_BENCH_PROFILE=<dir> (the stack's V8 CPU profiles) also gets windows.json: each restore's
// window and its chunk phase's on the monotonic clock, for cpuprofile-window.ts; CAIRN_BENCH_WINDOWS=<dir>
// writes that file alone (to cut a system-wide `perf record -a -k CLOCK_MONOTONIC` by the windows).
//
// --cold-meta (root): before each restore the page cache is dropped and the repository, the CLI and
// Node are read back, so that the target's block bitmaps are read from the disk (dropMetadata).
//
// --builds: A/B of builds on the same state, each a worktree's own CLI (its bundle must be fresh:
// only this checkout's is rebuilt; `name=worktree+KEY=value` variables reach its stack only): per
// round, one stack of each build in turn, `--restores` restores each; a summary per build at the end.
//
// The first call prepares `--state` once (the generated images behind a paused QEMU, a full and
// an incremental backup, as product.ts does) and keeps the stack's data directory there; later
// calls only start `cairn up` on it (with the code of this checkout) and restore. The QEMU is
// gone by then: the stack's coordinator finds its hypervisor unreachable, which the restore
// does not need.
import { execFile } from 'node:child_process';
import { loadavg } from 'node:os';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { MiB, type ImageSpec } from './image.ts';
import { parseSize, prepareImages, sha256File } from './run.ts';
import { median } from './report.ts';
import { parseBuilds } from './ab-builds.ts';
import { formatTimeline, startTimeline, type ThreadSample } from './thread-timeline.ts';
import { RESTORE_PHASES, addVm, backup, processCpu, restoreSplit, s2, startCairn, startVm, writeChanges } from './product.ts';

const repoRoot = resolve(fileURLToPath(new URL('../../..', import.meta.url)));

function log(message: string): void {
  process.stderr.write(`[restore-only ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}
const load = (): string => loadavg().map((l) => l.toFixed(2)).join(' / ');

interface State { readonly spec: ImageSpec; readonly restorePointId: string; readonly sha256: string }

async function prepare(stateDir: string, spec: ImageSpec, imagesDir: string): Promise<State> {
  const file = join(stateDir, 'state.json');
  const known = await readFile(file, 'utf8').then((t) => JSON.parse(t) as State, () => undefined);
  if (known && JSON.stringify(known.spec) === JSON.stringify(spec)) return known;
  await rm(stateDir, { recursive: true, force: true });
  await mkdir(stateDir, { recursive: true });
  const images = await prepareImages(spec, imagesDir);
  const vm = await startVm(join(stateDir, 'vm'), 'bench-vm', images.base.path);
  const cairn = await startCairn(join(stateDir, 'data')).catch(async (e: unknown) => { await vm.stop(); throw e; });
  try {
    await addVm(cairn, vm, 'bench-host');
    const full = await backup(cairn, vm.name);
    log(`prepared: full job ${s2(full.jobMs)} s`);
    await writeChanges(vm, images, spec);
    const inc = await backup(cairn, vm.name);
    log(`prepared: incremental job ${s2(inc.jobMs)} s, restore point ${inc.restorePointId}`);
    const state = { spec, restorePointId: inc.restorePointId, sha256: images.changed.sha256 };
    await writeFile(file, JSON.stringify(state));
    return state;
  } finally {
    await cairn.stop();
    await vm.stop();
    await rm(join(stateDir, 'vm'), { recursive: true, force: true });
  }
}

/** CPU seconds (user, system) of each thread of `pid`, by thread name (/proc/<pid>/task/<tid>/stat). */
async function threadCpu(pid: number): Promise<Map<string, { user: number; sys: number; faults: number }>> {
  const out = new Map<string, { user: number; sys: number; faults: number }>();
  const tids = await readdir(`/proc/${pid}/task`).catch(() => [] as string[]);
  for (const tid of tids) {
    const stat = await readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8').catch(() => '');
    const close = stat.lastIndexOf(')');
    if (close < 0) continue;
    const name = stat.slice(stat.indexOf('(') + 1, close);
    const f = stat.slice(close + 2).split(' ');
    const key = `${name}#${tid}`;
    out.set(key, { user: Number(f[11]) / 100, sys: Number(f[12]) / 100, faults: Number(f[7]) + Number(f[9]) });
  }
  return out;
}

/** A cumulative counter's value at `t` ms (linear between samples; its first reading before, its last after). */
function valueAt(series: ReadonlyArray<{ t: number; v: number }>, t: number): number {
  const i = series.findIndex((x) => x.t >= t);
  if (i < 0) return series[series.length - 1]?.v ?? 0;
  if (i === 0) return series[0]!.v;
  const a = series[i - 1]!; const b = series[i]!;
  return a.v + ((b.v - a.v) * (t - a.t)) / Math.max(1e-9, b.t - a.t);
}

/**
 * Per thread group of the stack, what `pick` counts (CPU ms by default; `waits`: ms runnable
 * without a CPU) between `fromMs` and `toMs` of a timeline (cumulative samples interpolated at both
 * ends), the chunk workers summed as `workers`.
 */
function groupCpu(samples: readonly ThreadSample[], fromMs: number, toMs: number, pick: (x: ThreadSample) => Readonly<Record<string, number>> = (x) => x.groups): Record<string, number> {
  const out: Record<string, number> = {};
  for (const g of new Set(samples.flatMap((x) => Object.keys(x.groups)))) {
    // A thread's time so far: 0 before it was first seen, its last reading after it was last seen.
    let known = 0;
    const series = samples.map((x) => ({ t: x.t, v: (known = pick(x)[g] ?? known) }));
    const key = g.startsWith('worker:') ? 'workers' : g;
    out[key] = (out[key] ?? 0) + valueAt(series, toMs) - valueAt(series, fromMs);
  }
  return out;
}

/**
 * The chunk phase's use of the cores: the chunk workers' time on a CPU, runnable without one and
 * asleep (their count × the window − the two), and the machine's idle and busy core-ms in it
 * (busy: every process and the kernel; the stack's own CPU is inside it).
 */
function phaseCores(samples: readonly ThreadSample[], fromMs: number, toMs: number): Record<string, number> {
  const run = groupCpu(samples, fromMs, toMs)['workers'] ?? 0;
  const wait = groupCpu(samples, fromMs, toMs, (x) => x.waits)['workers'] ?? 0;
  const inWindow = samples.filter((x) => x.t >= fromMs && x.t <= toMs);
  const n = Math.max(0, ...inWindow.map((x) => Object.keys(x.groups).filter((g) => g.startsWith('worker:')).length));
  const machine = (k: 'idle' | 'busy'): number => {
    const series = samples.filter((x) => x.machine).map((x) => ({ t: x.t, v: x.machine![k] }));
    return valueAt(series, toMs) - valueAt(series, fromMs);
  };
  return { window: toMs - fromMs, workers: n, run, wait, asleep: n * (toMs - fromMs) - run - wait, idle: machine('idle'), busy: machine('busy') };
}

function formatCores(c: Record<string, number>): string {
  const ms = (k: string): string => (c[k] ?? 0).toFixed(0);
  return `window ${ms('window')} ms, ${c['workers']} workers ran ${ms('run')}, waited for a CPU ${ms('wait')}, asleep ${ms('asleep')} CPU-ms; the machine idle ${ms('idle')}, busy ${ms('busy')} core-ms`;
}

/** Drops every file under `dir` from the page cache (only this repository's files, not the machine's cache). */
async function dropCache(dir: string): Promise<void> {
  const script = 'import os,sys\nfor r,_,fs in os.walk(sys.argv[1]):\n  for f in fs:\n    fd=os.open(os.path.join(r,f),os.O_RDONLY)\n    os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)\n    os.close(fd)\n';
  await promisify(execFile)('python3', ['-c', script, dir]);
}

/**
 * --cold-meta: the whole page cache dropped (`drop_caches`, root only; it takes other processes'
 * cache too), then the repository, the build's CLI and Node read back in: what stays cold is the
 * filesystem's metadata (the block bitmaps of the groups the target is allocated in), as on a
 * machine that has not written there since boot (the product block's first restore).
 */
async function dropMetadata(warm: readonly string[]): Promise<void> {
  const script = 'import os,sys\nfor top in sys.argv[1:]:\n  for r,_,fs in (os.walk(top) if os.path.isdir(top) else [(os.path.dirname(top),0,[os.path.basename(top)])]):\n    for f in fs:\n      with open(os.path.join(r,f),"rb") as h:\n        while h.read(1<<20): pass\n';
  await promisify(execFile)('sh', ['-c', 'sync && echo 1 > /proc/sys/vm/drop_caches']);
  await promisify(execFile)('python3', ['-c', script, ...warm]);
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: {
    size: { type: 'string', default: '2G' }, restores: { type: 'string', default: '5' }, seed: { type: 'string', default: 'cairn-bench-1' },
    state: { type: 'string', default: '/tmp/cairn-restore-only' }, threads: { type: 'boolean', default: false }, images: { type: 'string' }, label: { type: 'string', default: '' },
    // --check first: the SHA-256 of the first restore only (A/B runs on a loaded machine, where hashing 2 GiB takes a minute).
    check: { type: 'string', default: 'all' },
    // --cold: before each restore, drop the repository's files from the page cache (POSIX_FADV_DONTNEED
    // through python3, as Node has no fadvise): a restore that reads its chunks from the disk, as
    // one from a repository not read lately does.
    cold: { type: 'boolean', default: false },
    'cold-meta': { type: 'boolean', default: false },
    builds: { type: 'string' }, rounds: { type: 'string', default: '1' },
    // --timeline: each restore's per-thread CPU timeline of the stack (thread-timeline.ts: main thread,
    // chunk workers, libuv, V8's threads, nats-server) printed after it, 100 ms rows.
    timeline: { type: 'boolean', default: false },
  } });
  // Each restore's window on the monotonic clock (`restore<k>`, and its chunk phase `chunks<k>`) (µs, as V8's CPU profiles time their samples), written to
  // <dir>/windows.json when CAIRN_BENCH_PROFILE=<dir> (the stack's profiles) is set, for cpuprofile-window.ts.
  const windows: Array<{ build: string; round: number; step: string; startUs: number; endUs: number }> = [];
  const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);
  const spec: ImageSpec = { sizeBytes: parseSize(values.size), seed: values.seed };
  // A fresh CLI bundle first (the stack and the CLI run from it; a stale one rebuilds inside the timed command).
  await promisify(execFile)(process.execPath, [join(repoRoot, 'tools', 'cli', 'build.mjs')], { cwd: repoRoot });
  const stateDir = resolve(values.state);
  const state = await prepare(stateDir, spec, resolve(values.images ?? join(stateDir, 'images')));
  type Row = { build: string; ms: number; cpu: number; main: number; cli: number; split?: Record<string, number>; groups?: Record<string, number>; phase?: Record<string, number>; cores?: Record<string, number> };
  const rows: Row[] = [];
  const builds = values.builds ? parseBuilds(values.builds, repoRoot) : [{ name: values.label || 'this', cli: undefined, env: undefined }];
  for (let round = 1; round <= Number(values.rounds); round++) {
    for (const build of builds) {
      // A build's own variables reach its stack only (startCairn copies the environment at spawn).
      const saved = { ...process.env };
      Object.assign(process.env, build.env ?? {});
      const cairn = await startCairn(join(stateDir, 'data'), undefined, build.cli).finally(() => {
        for (const k of Object.keys(build.env ?? {})) { if (saved[k] === undefined) delete process.env[k]; else process.env[k] = saved[k]; }
      });
      try {
        const mainThread = `${cairn.pid}/task/${cairn.pid}`;
        for (let k = 1; k <= Number(values.restores); k++) {
          const target = join(cairn.dataDir, 'restores', 'restored.raw');
          await rm(target, { force: true });
          if (values.cold) await dropCache(join(stateDir, 'data', 'repository'));
          if (values['cold-meta']) {
            const root = build.cli ? resolve(build.cli, '..', '..', '..', '..') : repoRoot;
            await dropMetadata([join(stateDir, 'data', 'repository'), join(root, 'tools', 'cli'), process.execPath]);
          }
          const restoreId = randomUUID();
          const t0 = values.threads ? await threadCpu(cairn.pid) : undefined;
          const [s0, m0] = await Promise.all([cairn.cpu(), processCpu(mainThread)]);
          cairn.resetPeak();
          const timeline = values.timeline ? startTimeline([cairn.pid], 50) : undefined;
          const startUs = nowUs();
          const r = await cairn.cli(['restore', state.restorePointId, '--to', target, '--id', restoreId]);
          windows.push({ build: build.name, round, step: `restore${k}`, startUs, endUs: nowUs() });
          const [s1, m1] = await Promise.all([cairn.cpu(), processCpu(mainThread)]);
          // The stack's CPU per thread group over the command (ms, from schedstat: finer than /proc's 10 ms ticks).
          const samples = timeline ? await timeline.stop() : undefined;
          if (samples) log(`${build.name} restore ${k}, the stack's threads (share of a core per 100 ms):\n${formatTimeline(samples, 100)}`);
          const groups = samples ? groupCpu(samples, 0, Infinity) : undefined;
          if (t0) {
            // --threads: where the stack's CPU went, per thread of `cairn up` (user / system seconds).
            const t1 = await threadCpu(cairn.pid);
            const byName = new Map<string, { user: number; sys: number; faults: number; n: number }>();
            for (const [key, v] of t1) {
              const b = t0.get(key) ?? { user: 0, sys: 0, faults: 0 };
              const name = key.split('#')[0]!;
              const acc = byName.get(name) ?? { user: 0, sys: 0, faults: 0, n: 0 };
              byName.set(name, { user: acc.user + v.user - b.user, sys: acc.sys + v.sys - b.sys, faults: acc.faults + v.faults - b.faults, n: acc.n + 1 });
            }
            // Page faults with each: a thread faulting in fresh memory per chunk pays it in system time.
            log(`threads of cairn up: ${[...byName].filter(([, v]) => v.user + v.sys > 0.005).sort((a, b) => (b[1].user + b[1].sys) - (a[1].user + a[1].sys)).map(([n, v]) => `${n}×${v.n} ${v.user.toFixed(2)}u+${v.sys.toFixed(2)}s ${v.faults} faults`).join(', ')}`);
          }
          const sha = (rows.length === 0 && k === 1) || values.check !== 'first' ? await sha256File(target) : state.sha256;
          if (sha !== state.sha256) throw new Error(`${build.name} restored a different image (sha256 ${sha}, expected ${state.sha256})`);
          const split = await restoreSplit(cairn.dataDir, restoreId, r);
          // --timeline: the same per group inside the chunk phase alone (from `restore started` to the
          // chunks written, the mover's log lines; the timeline starts just before the CLI's spawn).
          if (split) {
            const from = startUs + ((split['cli'] ?? 0) + (split['queue'] ?? 0)) * 1000;
            windows.push({ build: build.name, round, step: `chunks${k}`, startUs: from, endUs: from + (split['write'] ?? 0) * 1000 });
          }
          let phase: Record<string, number> | undefined;
          let cores: Record<string, number> | undefined;
          if (samples && split) {
            const from = (split['cli'] ?? 0) + (split['queue'] ?? 0);
            const to = from + (split['write'] ?? 0);
            phase = groupCpu(samples, from, to);
            cores = phaseCores(samples, from, to);
            log(`${build.name} restore ${k}, the chunk phase's cores: ${formatCores(cores)}`);
          }
          const row = { build: build.name, ms: r.ms, cpu: s1 - s0 + r.cpu, main: m1 - m0, cli: r.cpu, ...(split ? { split } : {}), ...(groups ? { groups } : {}), ...(phase ? { phase } : {}), ...(cores ? { cores } : {}) };
          rows.push(row);
          log(`${build.name} restore ${k}: ${s2(r.ms)} s, CPU ${row.cpu.toFixed(2)} s (stack main thread ${row.main.toFixed(2)}, CLI ${row.cli.toFixed(2)}), stack peak RSS ${(cairn.peakRss() / MiB).toFixed(0)} MiB, load ${load()}${split ? `\n  ${RESTORE_PHASES.map(([p]) => `${p} ${s2(split[p] ?? 0)}`).join(', ')}` : ''}`);
          await rm(target, { force: true });
        }
      } finally {
        await cairn.stop();
      }
    }
  }
  for (const build of builds) {
    const mine = rows.filter((r) => r.build === build.name);
    const med = (f: (r: Row) => number) => median(mine.map(f));
    console.log(`${build.name}: ${mine.length} restores of ${spec.sizeBytes / MiB} MiB, medians: command ${s2(med((r) => r.ms))} s, CPU ${med((r) => r.cpu).toFixed(2)} s (main ${med((r) => r.main).toFixed(2)}, CLI ${med((r) => r.cli).toFixed(2)}); ${RESTORE_PHASES.map(([p]) => `${p} ${s2(med((r) => r.split?.[p] ?? 0))}`).join(', ')}; load ${load()}`);
    // --timeline: CPU-ms per thread group of the stack (median per restore), and everything but the chunk workers.
    for (const [what, pick] of [['the command', (r: Row) => r.groups], ['the chunk phase', (r: Row) => r.phase]] as const) {
      const names = [...new Set(mine.flatMap((r) => Object.keys(pick(r) ?? {})))].sort();
      if (!names.length) continue;
      const others = (r: Row): number => Object.entries(pick(r) ?? {}).filter(([g]) => g !== 'workers').reduce((a, [, v]) => a + v, 0);
      console.log(`${build.name}: the stack's CPU-ms per restore in ${what} (medians): ${names.map((g) => `${g} ${med((r) => pick(r)?.[g] ?? 0).toFixed(0)}`).join(', ')}; all but the chunk workers ${med(others).toFixed(0)}`);
    }
    const withCores = mine.filter((r) => r.cores);
    if (withCores.length) {
      const keys = Object.keys(withCores[0]!.cores!);
      console.log(`${build.name}: the chunk phase's cores (medians): ${formatCores(Object.fromEntries(keys.map((k) => [k, median(withCores.map((r) => r.cores![k] ?? 0))])))}`);
    }
  }
  // CAIRN_BENCH_WINDOWS=<dir>: the windows alone (e.g. to cut a system-wide `perf record -k CLOCK_MONOTONIC` by them).
  const profiles = process.env['CAIRN_BENCH_PROFILE'] ?? process.env['CAIRN_BENCH_WINDOWS'];
  if (profiles) await writeFile(join(resolve(profiles), 'windows.json'), JSON.stringify(windows, null, 1));
  await writeFile(join(repoRoot, 'tmp', 'restore-only.json'), JSON.stringify({ at: new Date().toISOString(), rows }, null, 2)).catch(() => undefined);
}

main().catch((e: unknown) => {
  console.error(`restore-only bench: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 1;
});
