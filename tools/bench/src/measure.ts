// Runs one child process and measures it the same way whatever the tool: wall time from
// spawn to exit, and peak resident memory of the child (GNU time's %M where it exists,
// else VmHWM sampled from /proc while the child runs).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface CommandSpec {
  readonly command: string;
  readonly args: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  readonly cwd?: string;
}

export interface Measured {
  readonly wallMs: number;
  /** Peak resident set size of the child in bytes (0 if it could not be measured). */
  readonly peakRssBytes: number;
  /** CPU time (user + system) of the child in ms, NaN without GNU time. On a busy shared
   *  machine this moves far less than wall time. */
  readonly cpuMs: number;
  readonly stdout: string;
  readonly stderr: string;
}

export class CommandFailedError extends Error {
  constructor(spec: CommandSpec, code: number | null, signal: string | null, stderr: string) {
    super(`${spec.command} ${spec.args.join(' ')} failed (${signal ?? `exit ${code}`}): ${stderr.trim().slice(-2000)}`);
    this.name = 'CommandFailedError';
  }
}

const GNU_TIME = '/usr/bin/time';
let gnuTime: boolean | undefined;

function hasGnuTime(): boolean {
  if (gnuTime === undefined) {
    const r = spawnSync(GNU_TIME, ['--version'], { encoding: 'utf8' });
    gnuTime = r.status === 0 && /GNU/.test(`${r.stdout}${r.stderr}`);
  }
  return gnuTime;
}

export function peakRssMethod(): string {
  return hasGnuTime() ? 'GNU time %M (maximum resident set size of the child)' : 'VmHWM of the child sampled from /proc every 20 ms';
}

async function sampleHwm(pid: number): Promise<number> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const m = /VmHWM:\s+(\d+) kB/.exec(status);
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Runs `spec` to completion; throws CommandFailedError on a non-zero exit. */
export async function runMeasured(spec: CommandSpec): Promise<Measured> {
  const useTime = hasGnuTime();
  const dir = useTime ? await mkdtemp(join(tmpdir(), 'cairn-bench-time-')) : undefined;
  const timeFile = dir ? join(dir, 'rss') : undefined;
  const [command, args] = timeFile
    ? [GNU_TIME, ['-f', '%M %U %S', '-o', timeFile, spec.command, ...spec.args]]
    : [spec.command, [...spec.args]];
  const started = performance.now();
  const child = spawn(command, args, {
    cwd: spec.cwd,
    env: { ...process.env, ...spec.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr = (stderr + s).slice(-64 * 1024)));
  let sampled = 0;
  const sampler = timeFile
    ? undefined
    : setInterval(() => {
        if (child.pid) void sampleHwm(child.pid).then((v) => (sampled = Math.max(sampled, v)));
      }, 20);
  try {
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
      child.on('error', reject);
      child.on('exit', (c, s) => resolve([c, s]));
    });
    const wallMs = performance.now() - started;
    if (code !== 0) throw new CommandFailedError(spec, code, signal, stderr);
    let peakRssBytes = sampled;
    let cpuMs = NaN;
    if (timeFile) {
      const [rssKb, user, sys] = ((await readFile(timeFile, 'utf8')).trim().split('\n').at(-1) ?? '').split(' ').map(Number);
      peakRssBytes = (rssKb ?? 0) * 1024;
      cpuMs = ((user ?? NaN) + (sys ?? NaN)) * 1000;
    }
    return { wallMs, peakRssBytes, cpuMs, stdout, stderr };
  } finally {
    if (sampler) clearInterval(sampler);
    if (dir) await rm(dir, { recursive: true, force: true });
  }
}

/** Bytes stored under a directory (apparent sizes of all files). */
export async function directoryBytes(path: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(path, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += (await stat(join(entry.parentPath, entry.name))).size;
  }
  return total;
}
