// The stack's FIRST incremental (and first restore), A/B between builds: what the product
// benchmark's single incremental pays that incr-ab.ts's warmed-up ones do not. Per round and
// build (the order alternated by round): a fresh QEMU with the generated disk, a fresh data
// directory, `cairn up`, the full, then two incrementals (the changed image's blocks written
// through QEMU before each, stamped so each stores new chunks), then with `--restores n` n
// restores of the last incremental. Each step's CPU per thread group (thread-timeline.ts:
// main, chunk workers, libuv, V8's threads, nats-server) and job time, per build, with the load.
//
//   npx tsx tools/bench/src/first-ab.ts --images /tmp/img-full --builds base=/work/wt/base,mine=<wt> --rounds 3 [--restores 2]
//
// `--warm-vm`: a second, tiny VM (16 MiB) backed up (a full and an incremental) right after
// `cairn up` and before the measured VM's full: its first incremental then warms the code paths
// an incremental runs, so what is left of the first measured incremental's gap is its own data.
// With CAIRN_BENCH_PROFILE=<dir> (product.ts's: the stack's V8 CPU profiles written there) the
// steps' windows go to <dir>/windows.json (CAIRN_BENCH_WINDOWS=<dir>: the windows alone):
// `cpuprofile-window.ts <dir>` splits the profiles by step.
import { open, rm, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { AB_OPTIONS, abSetup, type Build } from './ab-builds.ts';
import { CHANGE_BLOCK_SIZE, changedBlocks, type ImageSpec } from './image.ts';
import { startTimeline, type ThreadSample } from './thread-timeline.ts';
import { addVm, backup, startCairn, startVm, type BenchVm, type Cairn, type JobTimes } from './product.ts';
import { prepareImages, type Images } from './run.ts';

const repoRoot = resolve(fileURLToPath(new URL('../../..', import.meta.url)));
const load = (): string => loadavg()[0]!.toFixed(1);
const log = (m: string): void => { process.stderr.write(`[first-ab ${new Date().toISOString().slice(11, 19)}] ${m}\n`); };

async function writeStamped(vm: BenchVm, images: Images, spec: ImageSpec, stamp: number): Promise<void> {
  const fh = await open(images.changed.path, 'r');
  try {
    const buf = Buffer.alloc(CHANGE_BLOCK_SIZE);
    for (const b of changedBlocks(spec)) {
      await fh.read(buf, 0, CHANGE_BLOCK_SIZE, b.index * CHANGE_BLOCK_SIZE);
      buf.writeBigUInt64LE(BigInt(stamp), 0);
      await vm.write(b.index * CHANGE_BLOCK_SIZE, buf);
    }
  } finally {
    await fh.close();
  }
}

/** CPU-s per thread group between the timeline's first and last sample (workers summed). */
function groupCpu(samples: readonly ThreadSample[]): Record<string, number> {
  const first = samples[0]!;
  const last = samples[samples.length - 1]!;
  const out: Record<string, number> = {};
  for (const g of Object.keys(last.groups)) {
    const key = g.startsWith('worker:') ? 'workers' : g.startsWith('node:') ? 'node-other' : g;
    out[key] = (out[key] ?? 0) + ((last.groups[g] ?? 0) - (first.groups[g] ?? 0)) / 1000;
  }
  out['stack'] = Object.entries(out).filter(([k]) => k !== 'qemu').reduce((a, [, v]) => a + v, 0);
  return out;
}

interface Sample { build: string; step: string; ms: number; cpu: Record<string, number>; load: string }
/** Each measured step's window on the monotonic clock (µs, as V8's CPU profiles time their samples): written beside CAIRN_BENCH_PROFILE's profiles for cpuprofile-window.ts. */
const windows: Array<{ build: string; round: number; step: string; startUs: number; endUs: number }> = [];
const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);
let currentRound = 0;

async function measured<T extends { ms: number; job?: JobTimes }>(cairn: Cairn, vm: BenchVm, build: string, step: string, samples: Sample[], f: () => Promise<T>): Promise<T> {
  const tl = startTimeline([cairn.pid, vm.pid]);
  const startUs = nowUs();
  const value = await f();
  windows.push({ build, round: currentRound, step, startUs, endUs: nowUs() });
  const cpu = groupCpu(await tl.stop());
  samples.push({ build, step, ms: value.ms, cpu, load: load() });
  log(`${build} ${step}: ${(value.ms / 1000).toFixed(3)} s; CPU-s ${Object.entries(cpu).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ')}; load ${load()}${value.job ? `\n  phases ${Object.entries(value.job.phases).map(([n, v]) => `${n.split(' (')[0]} ${v}`).join(', ')}\n  transfer ${Object.entries(value.job.transfer ?? {}).map(([n, v]) => `${n} ${v}`).join(', ')}` : ''}`);
  return value;
}

const jobMs = (j: JobTimes): { ms: number; job: JobTimes } => ({ ms: j.jobMs, job: j });

async function round(b: Build, r: number, images: Images, spec: ImageSpec, work: string, o: { restores: number; warmVm: boolean; tiny?: Images }, samples: Sample[]): Promise<void> {
  currentRound = r;
  const dir = join(work, `${b.name}-${r}`);
  await rm(dir, { recursive: true, force: true });
  const vm = await startVm(join(dir, 'vm'), 'bench-vm', images.base.path);
  const tiny = o.warmVm && o.tiny ? await startVm(join(dir, 'tiny'), 'tiny-vm', o.tiny.base.path) : undefined;
  const saved = { ...process.env };
  Object.assign(process.env, b.env ?? {});
  const cairn = await startCairn(join(dir, 'data'), undefined, b.cli).finally(() => {
    for (const k of Object.keys(b.env ?? {})) { if (saved[k] === undefined) delete process.env[k]; else process.env[k] = saved[k]; }
  });
  try {
    await addVm(cairn, vm, 'bench-host');
    if (tiny) {
      await addVm(cairn, tiny, 'tiny-host');
      await backup(cairn, tiny.name);
      await tiny.write(0, Buffer.alloc(CHANGE_BLOCK_SIZE, 7));
      await backup(cairn, tiny.name);
    }
    await measured(cairn, vm, b.name, 'full', samples, async () => jobMs(await backup(cairn, vm.name)));
    let last: JobTimes | undefined;
    for (const [k, step] of ['incr1', 'incr2'].entries()) {
      await writeStamped(vm, images, spec, r * 10 + k + 1);
      last = (await measured(cairn, vm, b.name, step, samples, async () => jobMs(await backup(cairn, vm.name)))).job;
    }
    for (let k = 0; k < o.restores; k++) {
      await measured(cairn, vm, b.name, `restore${k + 1}`, samples, async () => {
        const res = await cairn.cli(['restore', last!.restorePointId, '--to', join(dir, `restored-${k}.raw`)]);
        await rm(join(dir, `restored-${k}.raw`), { force: true });
        return { ms: res.ms };
      });
    }
  } finally {
    await cairn.stop();
    await vm.stop();
    await tiny?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { ...AB_OPTIONS, restores: { type: 'string', default: '0' }, 'warm-vm': { type: 'boolean', default: false } } });
  const { builds, spec, images, work } = await abSetup(values, 'first-ab', repoRoot);
  const tinySpec: ImageSpec = { sizeBytes: 16 * 2 ** 20, seed: spec.seed };
  const tiny = values['warm-vm'] ? await prepareImages(tinySpec, join(work, 'tiny-images')) : undefined;
  const samples: Sample[] = [];
  try {
    for (let r = 0; r < Number(values.rounds); r++) {
      for (const b of r % 2 === 0 ? builds : [...builds].reverse()) {
        await round(b, r, images, spec, work, { restores: Number(values.restores), warmVm: values['warm-vm'], ...(tiny ? { tiny } : {}) }, samples);
      }
    }
  } finally {
    if (!values.work) await rm(work, { recursive: true, force: true });
    const profiles = process.env['CAIRN_BENCH_PROFILE'] ?? process.env['CAIRN_BENCH_WINDOWS'];
    if (profiles) await writeFile(join(resolve(profiles), 'windows.json'), JSON.stringify(windows, null, 1));
  }
  const med = (xs: number[]): number => { const s = [...xs].sort((a, c) => a - c); return s.length ? (s[Math.floor((s.length - 1) / 2)]! + s[Math.ceil((s.length - 1) / 2)]!) / 2 : NaN; };
  const steps = [...new Set(samples.map((s) => s.step))];
  const groups = ['stack', 'main', 'workers', 'libuv', 'v8', 'nats-server', 'qemu'];
  console.log(['build', 'step', 'n', 's', ...groups.map((g) => `${g} CPU-s`), 'loads'].join(' | '));
  for (const b of builds) {
    for (const st of steps) {
      const mine = samples.filter((s) => s.build === b.name && s.step === st);
      console.log([b.name, st, mine.length, (med(mine.map((s) => s.ms)) / 1000).toFixed(3), ...groups.map((g) => med(mine.map((s) => s.cpu[g] ?? 0)).toFixed(2)), mine.map((s) => s.load).join(' ')].join(' | '));
    }
  }
}

await main();
