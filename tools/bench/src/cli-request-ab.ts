// The restore command's CLI until its request leaves (issue 20): `cairn restore <incremental>
// --to <file>` of each build, alternated, against one `cairn up` on a restore-only.ts state; each
// run stops at the socket write carrying RequestRestore (request-probe.mjs preloaded), so nothing
// is restored. Prints per build the main thread's CPU until that write (what a loaded machine does
// not blur the way it blurs wall time) and the ms from spawn to it, medians and ranges, and each
// build's CPU against the first build's in the same round (the order alternates by round).
//
//   npx tsx tools/bench/src/cli-request-ab.ts --builds base=/work/wt/base,mine=<worktree>
//     [--rounds 10] [--state /tmp/cairn-restore-only] [--marks]
//
// --state: a directory restore-only.ts prepared (it makes one on its first call). --marks: print
// one timeline per build (connect, TLS, each NATS read and write, with CPU) after the rounds.
// Each build's bundle must be fresh (bin/cairn.js would rebuild a stale one inside the timing).
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { parseBuilds } from './ab-builds.ts';
import { median } from './report.ts';
import { startCairn } from './product.ts';

const repoRoot = resolve(fileURLToPath(new URL('../../..', import.meta.url)));
const PROBE = fileURLToPath(new URL('./request-probe.mjs', import.meta.url));

interface Probe { readonly cpuMs: number; readonly ms: number; readonly marks?: ReadonlyArray<readonly [number, number, string]> }

/** One probed start of `cli`: the CPU and time until the request is written. */
function probeOnce(cli: string, dataDir: string, restorePointId: string, marks: boolean): Promise<Probe> {
  return new Promise((done, fail) => {
    const t0 = Date.now();
    const env = { ...process.env, NODE_OPTIONS: `--import=${PROBE}`, CAIRN_BENCH_PROBE_COMMAND: 'RequestRestore', ...(marks ? { CAIRN_BENCH_PROBE_MARKS: '1' } : {}) };
    const target = join(tmpdir(), `cairn-cli-request-${process.pid}.raw`);
    const c = spawn(process.execPath, [cli, '--data', dataDir, 'restore', restorePointId, '--to', target, '--id', `probe-${t0}-${Math.random().toString(36).slice(2)}`], { cwd: repoRoot, env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    c.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    c.on('error', fail);
    c.on('close', () => {
      const line = stderr.split('\n').find((l) => l.startsWith('cairn-request-probe '));
      if (!line) return fail(new Error(`no request written by ${cli}: ${stderr.trim().slice(-500)}`));
      const p = JSON.parse(line.slice('cairn-request-probe '.length)) as { cpuMs: number; at: number; marks?: Probe['marks'] };
      done({ cpuMs: p.cpuMs, ms: p.at - t0, ...(p.marks ? { marks: p.marks } : {}) });
    });
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: {
    builds: { type: 'string' }, rounds: { type: 'string', default: '10' }, state: { type: 'string', default: '/tmp/cairn-restore-only' }, marks: { type: 'boolean', default: false },
  } });
  const stateDir = resolve(values.state);
  const state = JSON.parse(await readFile(join(stateDir, 'state.json'), 'utf8').catch(() => {
    throw new Error(`no restore-only.ts state in ${stateDir}: run restore-only.ts --state ${stateDir} once`);
  })) as { restorePointId: string };
  const builds = parseBuilds(values.builds, repoRoot);
  const dataDir = join(stateDir, 'data');
  const cairn = await startCairn(dataDir);
  const rows = new Map<string, Probe[]>(builds.map((b) => [b.name, []]));
  const loads: number[] = [];
  try {
    // One warm-up each (the compile cache of a new bundle), then the builds in turn.
    for (const b of builds) await probeOnce(b.cli, dataDir, state.restorePointId, false);
    for (let round = 1; round <= Number(values.rounds); round++) {
      // Every other round in reverse order, so no build always runs right after another.
      const order = round % 2 ? builds : [...builds].reverse();
      for (const b of order) rows.get(b.name)!.push(await probeOnce(b.cli, dataDir, state.restorePointId, false));
      loads.push(loadavg()[0]!);
    }
    if (values.marks) {
      for (const b of builds) {
        const p = await probeOnce(b.cli, dataDir, state.restorePointId, true);
        process.stdout.write(`${b.name} timeline (ms since start, CPU ms, what):\n${(p.marks ?? []).map(([t, c, w]) => `  ${t.toFixed(1).padStart(7)} ${c.toFixed(1).padStart(6)}  ${w}`).join('\n')}\n`);
      }
    }
  } finally {
    await cairn.stop();
  }
  const range = (xs: number[]) => `${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)}`;
  process.stdout.write(`${values.rounds} rounds, load ${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)}\n`);
  for (const [name, ps] of rows) {
    const cpu = ps.map((p) => p.cpuMs); const ms = ps.map((p) => p.ms);
    process.stdout.write(`${name}: main-thread CPU until the request ${median(cpu).toFixed(1)} ms (${range(cpu)}), spawn to the request ${median(ms).toFixed(0)} ms (${range(ms)})\n`);
  }
  // Paired by round against the first build: what the load moves, it moves for both in a round.
  const [first, ...others] = [...rows.entries()];
  for (const [name, ps] of others) {
    const diffs = ps.map((p, i) => p.cpuMs - first![1][i]!.cpuMs);
    process.stdout.write(`${name} - ${first![0]}: CPU per round ${median(diffs).toFixed(1)} ms median (${range(diffs)}), lower in ${diffs.filter((d) => d < 0).length} of ${diffs.length}\n`);
  }
}

await main();
