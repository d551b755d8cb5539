// How long the `cairn` CLI takes from start to exit: `cairn --help`, `cairn vm list` and
// `cairn job list` against a running stack, through the esbuild bundle (what bin/cairn.js
// runs) and through tsx (the sources, as every command ran before the bundle). A benchmark,
// not a test: it prints a table and writes it into docs/benchmarks.md.
//
//   npx tsx tools/bench/src/cli-startup.ts [--runs 7] [--doc docs/benchmarks.md | --no-doc]
//     [--baseline <bin/cairn.js of an older checkout> --baseline-label <commit>] [--no-tsx]
// --baseline times an older build of the CLI (its own bundle) against the same stack, so a
// change is measured before and after at the same load.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { startStack } from '@cairn/cli';
import { replaceSection } from './report.ts';

const repoRoot = resolve(fileURLToPath(new URL('../../..', import.meta.url)));
const BIN = join(repoRoot, 'tools', 'cli', 'bin', 'cairn.js');
/** npx from PATH, as the README runs it (node_modules/.bin first on PATH gives it Node 24). */
const NPX = 'npx';

interface Case { readonly label: string; readonly args: readonly string[] }
const CASES: readonly Case[] = [
  { label: 'cairn --help', args: ['--help'] },
  { label: 'cairn vm list', args: ['vm', 'list'] },
  { label: 'cairn job list', args: ['job', 'list'] },
];

/** Wall time of one run from spawn to exit, in ms; throws when it fails. */
function timeRun(command: string, args: readonly string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolveRun, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(command, args, { cwd: repoRoot, env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (code === 0) resolveRun(ms);
      else reject(new Error(`${command} ${args.join(' ')} exited ${code}: ${stderr.trim()}`));
    });
  });
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  const { values } = parseArgs({ options: {
    runs: { type: 'string', default: '7' }, doc: { type: 'string', default: 'docs/benchmarks.md' }, 'no-doc': { type: 'boolean' },
    baseline: { type: 'string' }, 'baseline-label': { type: 'string', default: 'older build' }, 'no-tsx': { type: 'boolean' },
  } });
  const runs = Number(values.runs);
  const dataDir = await mkdtemp(join(tmpdir(), 'cairn-cli-bench-'));
  process.stderr.write(`[cli-startup] starting a stack in ${dataDir}\n`);
  const stack = await startStack({ dataDir, secure: true });
  const rows: Array<{ mode: string; label: string; ms: number[] }> = [];
  try {
    const env = { ...process.env, PATH: `${join(repoRoot, 'node_modules', '.bin')}:${process.env['PATH'] ?? ''}`, CAIRN_DATA: dataDir, CAIRN_LOG_LEVEL: 'warn' };
    const modes = [
      ...(values['no-tsx'] ? [] : [{ mode: 'tsx (sources)', command: process.execPath, pre: [BIN], env: { ...env, CAIRN_CLI_SOURCE: '1' } }]),
      ...(values.baseline ? [{ mode: `bundle, before (${values['baseline-label']})`, command: process.execPath, pre: [resolve(values.baseline)], env }] : []),
      { mode: 'bundle (this checkout)', command: process.execPath, pre: [BIN], env },
      { mode: 'bundle through npx', command: NPX, pre: ['cairn'], env },
    ];
    for (const m of modes) {
      for (const c of CASES) {
        if (m.mode.includes('npx') && c.label !== 'cairn --help') continue;
        await timeRun(m.command, [...m.pre, ...c.args], m.env); // warm-up: page cache, compile cache, a stale bundle rebuilt
        const ms: number[] = [];
        for (let i = 0; i < runs; i++) ms.push(await timeRun(m.command, [...m.pre, ...c.args], m.env));
        rows.push({ mode: m.mode, label: c.label, ms });
        process.stderr.write(`[cli-startup] ${m.mode.padEnd(22)} ${c.label.padEnd(16)} median ${median(ms).toFixed(0)} ms\n`);
      }
    }
  } finally {
    await stack.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
  const table = [
    '| command | how it starts | median | min | max |',
    '|---|---|---:|---:|---:|',
    ...rows.map((r) => `| \`${r.label}\` | ${r.mode} | ${median(r.ms).toFixed(0)} ms | ${Math.min(...r.ms).toFixed(0)} ms | ${Math.max(...r.ms).toFixed(0)} ms |`),
  ].join('\n');
  const body = `Measured ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, ${runs} runs each after one warm-up, ${cpus().length} cores, load average ${loadavg()[0]!.toFixed(2)} at the end (a shared machine: figures move by ±30 % between runs). \`vm list\` and \`job list\` ask a running secure stack (TLS to NATS).\n\n${table}`;
  process.stdout.write(body + '\n');
  if (!values['no-doc']) {
    const file = resolve(repoRoot, values.doc);
    await writeFile(file, replaceSection(await readFile(file, 'utf8'), 'cli-startup', body));
    process.stderr.write(`[cli-startup] wrote ${file}\n`);
  }
}

await main();
