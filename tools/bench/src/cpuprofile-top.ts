// Summarises V8 CPU profiles (`node --cpu-prof`, or `scale.ts --profile <dir>`): for each file,
// the sampled time and the functions with the most self time, and the packages they are in.
//   npx tsx tools/bench/src/cpuprofile-top.ts <file.cpuprofile | dir> [--top 25]
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

interface Node { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }
interface Profile { nodes: Node[]; samples: number[]; timeDeltas: number[]; startTime: number; endTime: number }

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '25' } } });
const files: string[] = [];
for (const p of positionals) {
  if ((await stat(p)).isDirectory()) files.push(...(await readdir(p)).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(p, f)));
  else files.push(p);
}
const where = (url: string): string => {
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url) ?? /\/(libs|services|tools|apps)\/([^/]+)\//.exec(url);
  if (!m) return url.startsWith('node:') ? url : url ? 'other' : '(native)';
  return m[2] ? `${m[1]}/${m[2]}` : m[1]!;
};
for (const file of files.sort()) {
  const prof = JSON.parse(await readFile(file, 'utf8')) as Profile;
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  prof.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0)));
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const idle = [...self].filter(([id]) => byId.get(id)!.callFrame.functionName === '(idle)').reduce((a, [, t]) => a + t, 0);
  const fn = new Map<string, number>();
  const pkg = new Map<string, number>();
  for (const [id, t] of self) {
    const c = byId.get(id)!.callFrame;
    if (c.functionName === '(idle)') continue;
    const key = `${c.functionName || '(anonymous)'} ${c.url.replace(/^.*\/(node_modules|libs|services|tools)\//, '$1/')}:${c.lineNumber + 1}`;
    fn.set(key, (fn.get(key) ?? 0) + t);
    pkg.set(where(c.url), (pkg.get(where(c.url)) ?? 0) + t);
  }
  const ms = (us: number) => (us / 1000).toFixed(0).padStart(7);
  process.stdout.write(`\n== ${file}: ${ms(total - idle)} ms busy of ${ms(total)} ms sampled\n`);
  for (const [k, t] of [...pkg].sort((a, b) => b[1] - a[1]).slice(0, 12)) process.stdout.write(`  pkg ${ms(t)} ms  ${k}\n`);
  for (const [k, t] of [...fn].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) process.stdout.write(`  fn  ${ms(t)} ms  ${k}\n`);
}
