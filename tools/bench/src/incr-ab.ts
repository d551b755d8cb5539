// The incremental job alone, A/B between builds on one VM and one data directory: one paused
// QEMU with the generated 2 GiB disk, one full backup, then rounds of incrementals. In each
// round every build's `cairn up` (its worktree's CLI) is started on the same data directory in
// turn, the changed image's scattered 64 KiB blocks are written through QEMU again (each write
// stamped with a fresh counter in its first 8 bytes, so every incremental stores new chunks,
// as the product benchmark's single incremental does), one warm-up incremental is taken and
// then `--per` measured ones. Job s from the job's events, the phases, the data mover's
// TransferTimings, the CPU seconds of the stack and QEMU and the stack's peak RSS, per build, with the load.
//
//   npx tsx tools/bench/src/incr-ab.ts --images /tmp/img-full --builds base=/work/wt/a,head=/work/wt/b --rounds 3
//
// Without --builds: this worktree alone. Medians per build at the end; no doc is written.
// --timeline <dir>: each measured incremental's per-thread CPU timeline (thread-timeline.ts)
// written there as <build>-<round>-<k>.txt. --idle <s>: the stack left idle that long before each
// measured job (a scheduled job comes after a quiet spell; V8 shrinks the young generation then). A build's `+KEY=value` variables reach its stack only.
// With CAIRN_BENCH_GC_DIR set and gc-count.mjs preloaded into the stack (a build's
// `+NODE_OPTIONS=--import=<abs path>/gc-count.mjs`), each measured job's garbage collections on
// the stack's main thread are printed too; buffer-sites.mjs, preloaded the same way with
// CAIRN_BUFFER_SITES_DIR as well, writes where the measured jobs' ArrayBuffer memory came from.
import { open, readFile, rm, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { AB_OPTIONS, abSetup } from './ab-builds.ts';
import { fileURLToPath } from 'node:url';
import { CHANGE_BLOCK_SIZE, changedBlocks, type ImageSpec } from './image.ts';
import { formatTimeline, startTimeline } from './thread-timeline.ts';
import { addVm, backup, measureCpu, startCairn, startVm, type BenchVm, type JobTimes, type StepCpu } from './product.ts';
import type { Images } from './run.ts';

const repoRoot = resolve(fileURLToPath(new URL('../../..', import.meta.url)));
const load = (): string => loadavg().map((l) => l.toFixed(2)).join(' / ');
const log = (m: string): void => { process.stderr.write(`[incr-ab ${new Date().toISOString().slice(11, 19)}] ${m}\n`); };

/** Writes the changed image's blocks through QEMU, each with `stamp` in its first 8 bytes. */
async function writeStamped(vm: BenchVm, images: Images, spec: ImageSpec, stamp: number): Promise<number> {
  const fh = await open(images.changed.path, 'r');
  try {
    const buf = Buffer.alloc(CHANGE_BLOCK_SIZE);
    const blocks = changedBlocks(spec);
    for (const b of blocks) {
      await fh.read(buf, 0, CHANGE_BLOCK_SIZE, b.index * CHANGE_BLOCK_SIZE);
      buf.writeBigUInt64LE(BigInt(stamp), 0);
      await vm.write(b.index * CHANGE_BLOCK_SIZE, buf);
    }
    return blocks.length;
  } finally {
    await fh.close();
  }
}

interface Sample { build: string; job: JobTimes; cpu: StepCpu; load: string }

type GcCounts = Record<string, number>;
/** The stack's GC counts so far (gc-count.mjs writes them on SIGUSR2); undefined without CAIRN_BENCH_GC_DIR. */
async function gcCounts(pid: number): Promise<GcCounts | undefined> {
  const dir = process.env['CAIRN_BENCH_GC_DIR'];
  if (!dir) return undefined;
  process.kill(pid, 'SIGUSR2');
  // Read until the stack's write is whole (under load it may not be after 100 ms).
  for (let tries = 0; ; tries++) {
    await new Promise((r) => setTimeout(r, 100));
    const text = await readFile(join(dir, `${pid}.json`), 'utf8').catch(() => '{}');
    try {
      return JSON.parse(text) as GcCounts;
    } catch (e) {
      if (tries >= 20) throw e;
    }
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { ...AB_OPTIONS, per: { type: 'string', default: '2' }, timeline: { type: 'string' }, idle: { type: 'string', default: '0' } } });
  const { builds, spec, images, work } = await abSetup(values, 'incr-ab', repoRoot);
  const vm = await startVm(join(work, 'vm'), 'bench-vm', images.base.path);
  const dataDir = join(work, 'data');
  const samples: Sample[] = [];
  let stamp = 1;
  try {
    {
      const cairn = await startCairn(dataDir, undefined, builds[0]!.cli);
      try {
        await addVm(cairn, vm, 'bench-host');
        const full = await backup(cairn, vm.name);
        log(`full ${(full.jobMs / 1000).toFixed(2)} s with ${builds[0]!.name}; load ${load()}`);
      } finally { await cairn.stop(); }
    }
    for (let r = 0; r < Number(values.rounds); r++) {
      // Alternate the order per round: neither build always runs first after the other.
      const order = r % 2 === 0 ? builds : [...builds].reverse();
      for (const b of order) {
        // A build's own variables reach its stack only (startCairn copies the environment at spawn).
        const saved = { ...process.env };
        Object.assign(process.env, b.env ?? {});
        const cairn = await startCairn(dataDir, undefined, b.cli).finally(() => {
          for (const k of Object.keys(b.env ?? {})) { if (saved[k] === undefined) delete process.env[k]; else process.env[k] = saved[k]; }
        });
        try {
          await writeStamped(vm, images, spec, stamp++);
          const warm = await backup(cairn, vm.name);
          log(`${b.name} warm-up ${(warm.jobMs / 1000).toFixed(2)} s`);
          for (let k = 0; k < Number(values.per); k++) {
            await writeStamped(vm, images, spec, stamp++);
            if (Number(values.idle) > 0) await new Promise((r) => setTimeout(r, Number(values.idle) * 1000));
            const timeline = values.timeline ? startTimeline([cairn.pid, vm.pid]) : undefined;
            const gc0 = await gcCounts(cairn.pid);
            cairn.resetPeak();
            const { value: job, cpu } = await measureCpu(cairn, vm, () => backup(cairn, vm.name));
            const gc1 = await gcCounts(cairn.pid);
            if (gc0 && gc1) log(`${b.name} GC on the stack's main thread: ${Object.keys(gc1).map((k) => `${k} ${(gc1[k] ?? 0) - (gc0[k] ?? 0)}`).join(', ')}`);
            if (timeline) await writeFile(join(resolve(values.timeline!), `${b.name}-${r + 1}-${k + 1}.txt`), `${formatTimeline(await timeline.stop())}\n${JSON.stringify(job.transfer ?? {})}\n`);
            samples.push({ build: b.name, job, cpu, load: load() });
            const t = job.transfer ?? {};
            log(`${b.name} round ${r + 1}: job ${(job.jobMs / 1000).toFixed(3)} s; CPU stack ${cpu.stack.toFixed(2)} (main ${cpu.main.toFixed(2)}) QEMU ${cpu.qemu.toFixed(2)}; stack peak RSS ${(cairn.peakRss() / 2 ** 20).toFixed(0)} MiB; load ${load()}\n  phases ${Object.entries(job.phases).map(([n, v]) => `${n.split(' (')[0]} ${v}`).join(', ')}\n  transfer ${Object.entries(t).map(([n, v]) => `${n} ${v}`).join(', ')}`);
          }
        } finally { await cairn.stop(); }
      }
    }
  } finally {
    await vm.stop();
    if (!values.work) await rm(work, { recursive: true, force: true });
  }
  const med = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s.length ? (s[Math.floor((s.length - 1) / 2)]! + s[Math.ceil((s.length - 1) / 2)]!) / 2 : NaN; };
  for (const b of builds) {
    const mine = samples.filter((s) => s.build === b.name);
    console.log(`${b.name}: n=${mine.length} job median ${(med(mine.map((s) => s.job.jobMs)) / 1000).toFixed(3)} s [${mine.map((s) => (s.job.jobMs / 1000).toFixed(2)).join(' ')}], transfer median ${(med(mine.map((s) => s.job.transfer?.['total'] ?? NaN)) / 1000).toFixed(3)} s, stack CPU median ${med(mine.map((s) => s.cpu.stack)).toFixed(2)} s [${mine.map((s) => s.cpu.stack.toFixed(2)).join(' ')}], main ${med(mine.map((s) => s.cpu.main)).toFixed(2)} s; loads ${mine.map((s) => s.load.split(' / ')[0]).join(' ')}`);
  }
}

await main();
