// The full backup job alone, A/B between builds: a paused QEMU with the generated 2 GiB disk
// (a fresh one per job); in each round every build's `cairn up` (its worktree's CLI) starts on a fresh
// data directory in turn and takes one full backup. Job s from the job's events, the data
// mover's TransferTimings and the CPU seconds of the stack, its main thread and QEMU, per
// build, with the load and the stack's peak RSS. For changes to the full's write path, where the product benchmark's
// incremental, restore and restic runs would only add minutes.
//
//   npx tsx tools/bench/src/full-ab.ts --images /tmp/img-full --builds base=/work/wt/a,head=/work/wt/b --rounds 3
//
// Without --builds: this worktree alone. Medians per build at the end; no doc is written.
// A build may carry variables for its stack: `--builds base=/work/wt/a,uv8=/work/wt/a+UV_THREADPOOL_SIZE=8`.
// --timeline <dir>: each job's per-thread CPU timeline (thread-timeline.ts) written there as
// <build>-<round>.txt, sampled every 50 ms, for where the pipeline idles.
import { rm, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { AB_OPTIONS, abSetup } from './ab-builds.ts';
import { fileURLToPath } from 'node:url';
import { addVm, backup, measureCpu, startCairn, startVm, type JobTimes, type StepCpu } from './product.ts';
import { formatTimeline, startTimeline } from './thread-timeline.ts';

const repoRoot = resolve(fileURLToPath(new URL('../../..', import.meta.url)));
const load = (): string => loadavg().map((l) => l.toFixed(2)).join(' / ');
const log = (m: string): void => { process.stderr.write(`[full-ab ${new Date().toISOString().slice(11, 19)}] ${m}\n`); };

interface Sample { build: string; job: JobTimes; cpu: StepCpu; load: string }

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { ...AB_OPTIONS, timeline: { type: 'string' } } });
  const { builds, images, work } = await abSetup(values, 'full-ab', repoRoot);
  const samples: Sample[] = [];
  try {
    for (let r = 0; r < Number(values.rounds); r++) {
      // Alternate the order per round: neither build always runs first after the other.
      const order = r % 2 === 0 ? builds : [...builds].reverse();
      for (const b of order) {
        const dataDir = join(work, `data-${b.name}-${r}`);
        // A QEMU of its own per job: the NBD server a stack started in it stays bound to that stack's socket.
        const vm = await startVm(join(work, `vm-${b.name}-${r}`), 'bench-vm', images.base.path);
        // A build's own variables reach its stack only (startCairn copies the environment at spawn).
        const saved = { ...process.env };
        Object.assign(process.env, b.env ?? {});
        const cairn = await startCairn(dataDir, undefined, b.cli).finally(() => {
          for (const k of Object.keys(b.env ?? {})) { if (saved[k] === undefined) delete process.env[k]; else process.env[k] = saved[k]; }
        });
        try {
          await addVm(cairn, vm, 'bench-host');
          const timeline = values.timeline ? startTimeline([cairn.pid, vm.pid]) : undefined;
          cairn.resetPeak();
          const { value: job, cpu } = await measureCpu(cairn, vm, () => backup(cairn, vm.name));
          if (timeline) await writeFile(join(resolve(values.timeline!), `${b.name}-${r + 1}.txt`), `${formatTimeline(await timeline.stop())}\n${JSON.stringify(job.transfer ?? {})}\n`);
          samples.push({ build: b.name, job, cpu, load: load() });
          const t = job.transfer ?? {};
          log(`${b.name} round ${r + 1}: job ${(job.jobMs / 1000).toFixed(3)} s; CPU stack ${cpu.stack.toFixed(2)} (main ${cpu.main.toFixed(2)}) QEMU ${cpu.qemu.toFixed(2)}; stack peak RSS ${(cairn.peakRss() / 2 ** 20).toFixed(0)} MiB; load ${load()}\n  transfer ${Object.entries(t).map(([n, v]) => `${n} ${v}`).join(', ')}`);
        } finally {
          await cairn.stop();
          await vm.stop();
          await rm(dataDir, { recursive: true, force: true });
          await rm(join(work, `vm-${b.name}-${r}`), { recursive: true, force: true });
        }
      }
    }
  } finally {
    if (!values.work) await rm(work, { recursive: true, force: true });
  }
  const med = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s.length ? (s[Math.floor((s.length - 1) / 2)]! + s[Math.ceil((s.length - 1) / 2)]!) / 2 : NaN; };
  for (const b of builds) {
    const mine = samples.filter((s) => s.build === b.name);
    console.log(`${b.name}: n=${mine.length} job median ${(med(mine.map((s) => s.job.jobMs)) / 1000).toFixed(3)} s [${mine.map((s) => (s.job.jobMs / 1000).toFixed(2)).join(' ')}], stack CPU median ${med(mine.map((s) => s.cpu.stack)).toFixed(2)} s [${mine.map((s) => s.cpu.stack.toFixed(2)).join(' ')}], main ${med(mine.map((s) => s.cpu.main)).toFixed(2)} s [${mine.map((s) => s.cpu.main.toFixed(2)).join(' ')}], QEMU ${med(mine.map((s) => s.cpu.qemu)).toFixed(2)} s; loads ${mine.map((s) => s.load.split(' / ')[0]).join(' ')}`);
  }
}

await main();
