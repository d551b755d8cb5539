// Splits V8 CPU profiles of the stack's threads by the steps of a benchmark (first-ab.ts writes
// each step's window on the monotonic clock to <dir>/windows.json, beside the profiles that
// CAIRN_BENCH_PROFILE=<dir> makes): per step the sampled ms (idle left out) of all threads, with
// (program) and (garbage collector) apart, then the functions whose self time differs most
// between two steps (`--a incr1 --b incr2`: what the stack's first incremental pays that its
// second does not).
// `--by file`: self time per source file (a bundle's chunk) instead of per function.
//   npx tsx tools/bench/src/cpuprofile-window.ts <dir> [--a incr1] [--b incr2] [--top 30] [--by function|file]
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

interface Node { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }
interface Profile { nodes: Node[]; samples: number[]; timeDeltas: number[]; startTime: number; endTime: number }
interface Window { build: string; round: number; step: string; startUs: number; endUs: number }

const { values, positionals } = parseArgs({ allowPositionals: true, options: { a: { type: 'string', default: 'incr1' }, b: { type: 'string', default: 'incr2' }, top: { type: 'string', default: '30' }, by: { type: 'string', default: 'function' } } });
const dir = positionals[0]!;
const windows = JSON.parse(await readFile(join(dir, 'windows.json'), 'utf8')) as Window[];
const short = (url: string): string => url.replace(/^.*\/(libs|services|tools|node_modules)\//, '$1/').replace(/^file:\/\//, '');
/** ms of self time per step, per build, per function. */
const self = new Map<string, Map<string, number>>();
const totals = new Map<string, Record<string, number>>();
const add = (key: string, fn: string, ms: number): void => {
  const m = self.get(key) ?? new Map<string, number>();
  m.set(fn, (m.get(fn) ?? 0) + ms);
  self.set(key, m);
};
for (const f of (await readdir(dir)).filter((n) => n.endsWith('.cpuprofile'))) {
  const prof = JSON.parse(await readFile(join(dir, f), 'utf8')) as Profile;
  const mine = windows.filter((w) => w.endUs > prof.startTime && w.startUs < prof.endTime);
  if (!mine.length) continue;
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  let t = prof.startTime;
  prof.samples.forEach((id, i) => {
    const dt = prof.timeDeltas[i] ?? 0;
    t += dt;
    const w = mine.find((x) => t >= x.startUs && t < x.endUs);
    if (!w) return;
    const cf = byId.get(id)!.callFrame;
    if (cf.functionName === '(idle)') return;
    const key = `${w.build}\t${w.step}`;
    const tot = totals.get(key) ?? { all: 0, program: 0, gc: 0, rounds: 0 };
    tot['all']! += dt / 1000;
    if (cf.functionName === '(program)') tot['program']! += dt / 1000;
    if (cf.functionName === '(garbage collector)') tot['gc']! += dt / 1000;
    totals.set(key, tot);
    add(key, values.by === 'file' ? short(cf.url) || cf.functionName : `${cf.functionName || '(anonymous)'} ${short(cf.url)}:${cf.lineNumber + 1}`, dt / 1000);
  });
}
const rounds = (build: string, step: string): number => windows.filter((w) => w.build === build && w.step === step).length;
console.log('build | step | rounds | sampled ms per round (all threads) | (program) | (garbage collector)');
for (const [key, tot] of [...totals].sort()) {
  const [build, step] = key.split('\t') as [string, string];
  const n = rounds(build, step);
  console.log(`${build} | ${step} | ${n} | ${(tot['all']! / n).toFixed(0)} | ${(tot['program']! / n).toFixed(0)} | ${(tot['gc']! / n).toFixed(0)}`);
}
for (const build of new Set(windows.map((w) => w.build))) {
  const a = self.get(`${build}\t${values.a}`) ?? new Map<string, number>();
  const b = self.get(`${build}\t${values.b}`) ?? new Map<string, number>();
  const na = rounds(build, values.a);
  const nb = rounds(build, values.b);
  const diff = [...new Set([...a.keys(), ...b.keys()])].map((fn) => [fn, (a.get(fn) ?? 0) / na - (b.get(fn) ?? 0) / nb] as const).sort((x, y) => y[1] - x[1]);
  console.log(`\n${build}: self ms per round, ${values.a} minus ${values.b} (largest first)`);
  for (const [fn, d] of diff.slice(0, Number(values.top))) console.log(`${d.toFixed(1).padStart(8)}  ${fn}`);
}
