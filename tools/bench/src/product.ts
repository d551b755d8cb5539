// The product benchmark (issue 20): what an operator waits for, measured through the public CLI
// against the embedded stack, side by side with restic and borg on the same bytes in the same run.
//
//   npx tsx tools/bench/src/product.ts [--quick] [--size 2G] [--runs 3] [--tools restic,borg]
//                                      [--concurrent 3] [--work /tmp/dir] [--doc docs/benchmarks.md | --no-doc]
//                                      [--chunk-size 64K (the stack's repository made with it; --no-doc)]
//
// Per run: the generated disk (tools/bench/src/image.ts) converted to a qcow2 behind a paused QEMU
// (TCG), `cairn up` in a child, `cairn hypervisor add qemu --qmp`, `cairn backup --wait` (full),
// the image's 2% changed 64 KiB blocks written through QEMU's block layer (HMP `qemu-io`),
// `cairn backup --wait` (incremental), `cairn restore --to` (timed from the command to the exit,
// then checked by SHA-256 against the changed image; request-probe.mjs preloaded into it logs when
// it wrote its request). Job times come from the job's own events
// (JobRequested → JobCompleted), with the phases between them. restic and borg run through the
// repository benchmark's runners (run.ts) on the same raw images in the same run. Then three VMs
// at once (full backups, aggregate MB/s).
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { open, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { connectStartedQmp } from '@cairn/hypervisor';
import { CHANGE_BLOCK_SIZE, GiB, MiB, changedBlocks, imageLayout, layoutMix, writeImage, type ImageSpec } from './image.ts';
import { TOOLS } from './tools.ts';
import { machine, parseSize, prepareImages, runTool, sha256File, updateDoc, type Images } from './run.ts';
import { median, plainTable, type RunResult } from './report.ts';

const run = promisify(execFile);
const repoRoot = resolve(fileURLToPath(new URL('../../..', import.meta.url)));
const CAIRN = join(repoRoot, 'tools', 'cli', 'bin', 'cairn.js');
const MB = 1e6;

function log(message: string): void {
  process.stderr.write(`[product ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}
const fmtSize = (bytes: number): string => (bytes >= GiB ? `${bytes / GiB} GiB` : `${bytes / MiB} MiB`);
const load = (): string => loadavg().map((l) => l.toFixed(2)).join(' / ');

// ---- the pieces: a paused QEMU, `cairn up`, the CLI, the stack's memory

export interface BenchVm {
  readonly name: string;
  readonly qmpPath: string;
  /** The QEMU process (its CPU time is what serving the NBD export costs). */
  readonly pid: number;
  /** Writes `data` at `offset` through QEMU's block layer, as a guest would. */
  write(offset: number, data: Buffer): Promise<void>;
  stop(): Promise<void>;
}

export async function startVm(dir: string, name: string, rawImage: string): Promise<BenchVm> {
  await mkdir(dir, { recursive: true });
  const disk = join(dir, 'disk0.qcow2');
  // qemu-img leaves zero ranges unallocated, as a thin disk has them.
  await run('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', rawImage, disk]);
  const qmpPath = join(dir, 'qmp.sock');
  const controlPath = join(dir, 'control.sock');
  const proc: ChildProcess = spawn('qemu-system-x86_64', [
    '-M', 'q35', '-accel', 'tcg', '-m', '64', '-nodefaults', '-display', 'none', '-S', '-name', name,
    '-qmp', `unix:${qmpPath},server=on,wait=off`, '-qmp', `unix:${controlPath},server=on,wait=off`,
    '-blockdev', `driver=file,filename=${disk},node-name=disk0-file`,
    '-blockdev', 'driver=qcow2,file=disk0-file,node-name=disk0-fmt',
    '-device', 'virtio-blk-pci,drive=disk0-fmt,id=disk0',
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr?.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const control = await connectStartedQmp(controlPath, { gone: () => proc.exitCode !== null, timeoutMs: 60_000, intervalMs: 100, client: { connectTimeoutMs: 5_000 } }).catch(() => {
    proc.kill('SIGKILL');
    throw new Error(`QEMU of ${name} did not answer on ${controlPath}`);
  });
  if (!control) throw new Error(`QEMU of ${name} exited (${proc.exitCode}): ${stderr.trim()}`);
  const pattern = join(dir, 'block.bin');
  return {
    name, qmpPath, pid: proc.pid!,
    async write(offset, data) {
      // qemu-io's -s fills the write buffer from a file: one block of the changed image.
      await writeFile(pattern, data);
      const out = await control.execute<string>('human-monitor-command', {
        'command-line': `qemu-io -d /machine/peripheral/disk0/virtio-backend "write -q -s ${pattern} ${offset} ${data.length}"`,
      });
      if (out.trim()) throw new Error(`qemu-io write at ${offset} in ${name}: ${out.trim()}`);
    },
    async stop() {
      try { await control.execute('quit'); } catch { proc.kill('SIGTERM'); }
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/**
 * Resident memory (bytes) and CPU time (s, user + system, all threads) of a process and all its
 * descendants, from /proc. The tree is walked from `root` through each thread's `children`
 * file: a few files per process of the stack, not every process of the machine (a scan of all
 * of /proc every 100 ms kept the libuv pool of this benchmark busy on a shared machine, and
 * its own QEMU writes waited behind it).
 */
async function treeUsage(root: number): Promise<{ rss: number; cpu: number }> {
  let total = 0;
  let cpuTotal = 0;
  const stack = [root];
  while (stack.length) {
    const pid = stack.pop()!;
    try {
      const status = await readFile(`/proc/${pid}/status`, 'utf8');
      total += Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
      cpuTotal += await processCpu(pid);
      for (const tid of await readdir(`/proc/${pid}/task`)) {
        const children = await readFile(`/proc/${pid}/task/${tid}/children`, 'utf8').catch(() => '');
        for (const c of children.split(' ')) if (c.trim()) stack.push(Number(c));
      }
    } catch { /* gone meanwhile */ }
  }
  return { rss: total, cpu: cpuTotal };
}

/** CPU seconds (user + system, all threads) a process has used so far (USER_HZ = 100 on Linux). */
export async function processCpu(pid: number | string): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

export interface Cairn {
  readonly dataDir: string;
  readonly pid: number;
  /** Peak RSS of the whole stack (cairn up, its workers, nats-server) since the last reset. */
  peakRss(): number;
  resetPeak(): void;
  /** CPU seconds the whole stack used so far. */
  cpu(): Promise<number>;
  /** Runs the CLI; `startedAt`/`endedAt` are wall-clock ms (Date.now) of its spawn and exit. */
  /** `env`: added to the CLI's environment. `stderr`: its last 16 KiB. */
  cli(args: readonly string[], timeoutMs?: number, env?: Readonly<Record<string, string>>): Promise<{ stdout: string; stderr: string; ms: number; cpu: number; startedAt: number; endedAt: number }>;
  stop(): Promise<void>;
}

/**
 * `--chunk-size`: the stack's repository made beforehand with that chunk size (`cairn repo init`
 * at <data>/repository, with the passphrase file `cairn up` reads beside it) instead of the default.
 */
async function initRepository(dataDir: string, chunkSize: string): Promise<void> {
  const secrets = join(dataDir, 'secrets');
  await mkdir(secrets, { recursive: true, mode: 0o700 });
  await writeFile(join(secrets, 'repository.passphrase'), `${randomBytes(24).toString('base64url')}\n`, { mode: 0o600 });
  await run(process.execPath, [CAIRN, '--data', dataDir, 'repo', 'init', '--repo', join(dataDir, 'repository'), '--chunk-size', chunkSize], { cwd: repoRoot });
}

/** Bytes of every file under `dir` (the repository's size on disk, before file-system rounding). */
async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) total += (await stat(join(e.parentPath, e.name)).catch(() => ({ size: 0 }))).size;
  }
  return total;
}

/** `cli`: the CLI entry to run (another worktree's for an A/B on one data directory; default this one's). */
export async function startCairn(dataDir: string, chunkSize?: string, cli = CAIRN): Promise<Cairn> {
  if (chunkSize) await initRepository(dataDir, chunkSize);
  // info: the data mover's 'restore point committed' line carries the transfer's timings.
  const env = { ...process.env, CAIRN_LOG_LEVEL: 'info' };
  // CAIRN_BENCH_PROFILE=<dir>: V8 CPU profiles of the stack's process and its threads, written there when it stops.
  const profile = process.env['CAIRN_BENCH_PROFILE'] ? ['--cpu-prof', '--cpu-prof-dir', resolve(process.env['CAIRN_BENCH_PROFILE'])] : [];
  const child = spawn(process.execPath, [...profile, cli, '--data', dataDir, 'up'], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => { out = (out + d).slice(-64 * 1024); });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => { out = (out + d).slice(-64 * 1024); });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const deadline = Date.now() + 240_000;
  while (!out.includes('cairn is up;')) {
    if (child.exitCode !== null) throw new Error(`cairn up exited (${child.exitCode}): ${out.trim()}`);
    if (Date.now() > deadline) { child.kill('SIGTERM'); throw new Error(`cairn up did not come up: ${out.trim()}`); }
    await new Promise((r) => setTimeout(r, 200));
  }
  let peak = 0;
  const sampler = setInterval(() => { void treeUsage(child.pid!).then((v) => { peak = Math.max(peak, v.rss); }); }, 100);
  return {
    dataDir,
    pid: child.pid!,
    peakRss: () => peak,
    resetPeak: () => { peak = 0; },
    cpu: async () => (await treeUsage(child.pid!)).cpu,
    cli(args, timeoutMs = 900_000, extraEnv = {}) {
      return new Promise((ok, fail) => {
        const t0 = performance.now();
        const startedAt = Date.now();
        const c = spawn(process.execPath, [cli, '--data', dataDir, ...args], { cwd: repoRoot, env: { ...env, ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        c.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
        c.stderr.setEncoding('utf8').on('data', (d: string) => { stderr = (stderr + d).slice(-16 * 1024); });
        const timer = setTimeout(() => c.kill('SIGTERM'), timeoutMs);
        c.on('error', fail);
        // The CLI's CPU, sampled until it exits (a zombie's /proc entry still has it until reaped).
        let cpu = 0;
        const cpuTimer = setInterval(() => { void processCpu(c.pid!).then((v) => { cpu = v; }, () => undefined); }, 50);
        c.on('close', (code) => {
          clearTimeout(timer);
          clearInterval(cpuTimer);
          const ms = performance.now() - t0;
          if (code === 0) ok({ stdout, stderr, ms, cpu, startedAt, endedAt: startedAt + ms });
          else fail(new Error(`cairn ${args.join(' ')} exited ${code}: ${stderr.trim() || stdout.trim()}`));
        });
      });
    },
    async stop() {
      clearInterval(sampler);
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(t);
    },
  };
}

// ---- one job, read from its own events

/** The phases of a backup job between its events (ms). */
export interface JobTimes {
  readonly jobId: string;
  readonly restorePointId: string;
  readonly jobMs: number;
  readonly wallMs: number;
  readonly bytesRead: number;
  readonly phases: Readonly<Record<string, number>>;
  readonly requestedAt: number;
  readonly completedAt: number;
  /** The data mover's split of the transfer (services/data-mover/src/transfer.ts TransferTimings). */
  transfer?: Readonly<Record<string, number>>;
}

/** The data mover's timings of one job's transfer, from the stack's log file. */
async function transferTimings(dataDir: string, jobId: string): Promise<Record<string, number> | undefined> {
  for (let i = 0; i < 50; i++) {
    const text = await readFile(join(dataDir, 'logs', 'cairn.log'), 'utf8').catch(() => '');
    for (const line of text.split('\n')) {
      if (!line.includes(jobId) || !line.includes('"timings"')) continue;
      try {
        const rec = JSON.parse(line) as { jobId?: string; timings?: Record<string, number> };
        if (rec.jobId === jobId && rec.timings) return rec.timings;
      } catch { /* a line being written */ }
    }
    await new Promise((res) => setTimeout(res, 100));
  }
  return undefined;
}

/**
 * The split of one `cairn restore --to` (ms), from the data mover's log lines for its restore id
 * (pino's epoch-ms `time`): the CLI until the request is recorded (start-up, connect, the
 * catalogue query for the disk, RequestRestore), the queue and plan until the mover starts,
 * the chunks written (fetch, open, write into the page cache), the final fsync, the rename, the
 * job's completion events, and the CLI noticing the end and exiting.
 */
// The restore's CLI with request-probe.mjs preloaded, letting the request go: its stderr says when
// it wrote RequestRestore and the main thread's CPU until then, which splits "CLI start-up to the
// request recorded" into the CLI's own start and the stack's delay in recording it.
const REQUEST_PROBE_ENV = {
  NODE_OPTIONS: `${process.env['NODE_OPTIONS'] ?? ''} --import=${fileURLToPath(new URL('./request-probe.mjs', import.meta.url))}`.trim(),
  CAIRN_BENCH_PROBE_COMMAND: 'RequestRestore',
  CAIRN_BENCH_PROBE_SEND: '1',
};

/** When the CLI wrote its request (ms after its spawn) and its main thread's CPU until then, from the probe's line. */
export function requestWritten(run: { stderr: string; startedAt: number }): { ms: number; cpuMs: number } | undefined {
  const line = run.stderr.split('\n').find((l) => l.startsWith('cairn-request-probe '));
  if (!line) return undefined;
  const p = JSON.parse(line.slice('cairn-request-probe '.length)) as { cpuMs: number; at: number };
  return { ms: p.at - run.startedAt, cpuMs: p.cpuMs };
}

export const RESTORE_PHASES: ReadonlyArray<readonly [string, string]> = [
  ['cli', 'CLI start-up to the request recorded'],
  ['queue', 'request → mover started (queue, plan, RestoreStarted)'],
  ['write', 'chunks fetched, opened, written (page cache)'],
  ['sync', 'fsync of the restored file'],
  ['finish', 'rename into place'],
  ['complete', 'DiskRestored + RestoreCompleted recorded'],
  ['exit', 'CLI sees the end and exits'],
];

export async function restoreSplit(dataDir: string, restoreId: string, cli: { startedAt: number; endedAt: number }): Promise<Record<string, number> | undefined> {
  for (let i = 0; i < 50; i++) {
    const text = await readFile(join(dataDir, 'logs', 'cairn.log'), 'utf8').catch(() => '');
    const at: Record<string, { time: number; restoreTimings?: { writeMs: number; syncMs: number; finishMs: number } }> = {};
    for (const line of text.split('\n')) {
      if (!line.includes(restoreId)) continue;
      try {
        const rec = JSON.parse(line) as { restoreId?: string; msg?: string; time?: number; restoreTimings?: { writeMs: number; syncMs: number; finishMs: number } };
        if (rec.restoreId === restoreId && rec.msg && typeof rec.time === 'number') at[rec.msg] = { time: rec.time, ...(rec.restoreTimings ? { restoreTimings: rec.restoreTimings } : {}) };
      } catch { /* a line being written */ }
    }
    const req = at['restore requested']; const started = at['restore started']; const written = at['restore disk written']; const done = at['restore completed'];
    if (req && started && written?.restoreTimings && done) {
      const t = written.restoreTimings;
      return {
        cli: req.time - cli.startedAt, queue: started.time - req.time,
        // What the mover did before the chunks (source open, the target's checks) counts as write.
        write: written.time - started.time - t.syncMs - t.finishMs, sync: t.syncMs, finish: t.finishMs,
        complete: done.time - written.time, exit: cli.endedAt - done.time,
      };
    }
    await new Promise((res) => setTimeout(res, 100));
  }
  return undefined;
}

/** Consecutive event pairs that make the phases of a backup job. */
export const PHASES: ReadonlyArray<readonly [string, string, string]> = [
  ['request → snapshot asked', 'JobRequested', 'SnapshotRequested'],
  ['snapshot', 'SnapshotRequested', 'SnapshotTaken'],
  ['queue', 'SnapshotTaken', 'TransferStarted'],
  ['transfer (NBD read, chunk, seal, store, commit)', 'TransferStarted', 'RestorePointCommitted'],
  ['release', 'RestorePointCommitted', 'SnapshotReleased'],
  ['completion', 'SnapshotReleased', 'JobCompleted'],
];

export function jobTimes(detail: { jobId: string; restorePointId: string | null; bytesRead: number | null; events: ReadonlyArray<{ type: string; time: string }> }, wallMs: number): JobTimes {
  const at = (type: string): number => {
    // The snapshot is asked for with JobStarted since its v2; older builds wrote a SnapshotRequested.
    const e = detail.events.find((x) => x.type === type) ?? (type === 'SnapshotRequested' ? detail.events.find((x) => x.type === 'JobStarted') : undefined);
    if (!e) throw new Error(`job ${detail.jobId} has no ${type} event`);
    return Date.parse(e.time);
  };
  const phases: Record<string, number> = {};
  for (const [name, from, to] of PHASES) phases[name] = at(to) - at(from);
  return {
    jobId: detail.jobId,
    restorePointId: detail.restorePointId ?? '',
    jobMs: at('JobCompleted') - at('JobRequested'),
    wallMs,
    bytesRead: detail.bytesRead ?? 0,
    phases,
    requestedAt: at('JobRequested'),
    completedAt: at('JobCompleted'),
  };
}

export async function backup(cairn: Cairn, vm: string): Promise<JobTimes> {
  const r = await cairn.cli(['--json', 'backup', vm, '--wait', '--timeout', '1800']);
  const { jobId } = JSON.parse(r.stdout) as { jobId: string };
  // The job's events are in the catalogue once it completed; ask until JobCompleted shows.
  for (let i = 0; ; i++) {
    const detail = JSON.parse((await cairn.cli(['--json', 'job', 'show', jobId])).stdout) as Parameters<typeof jobTimes>[0];
    if (detail.events.some((e) => e.type === 'JobCompleted')) {
      const times = jobTimes(detail, r.ms);
      const transfer = await transferTimings(cairn.dataDir, jobId);
      return transfer ? { ...times, transfer } : times;
    }
    if (i > 100) throw new Error(`job ${jobId} has no JobCompleted in the catalogue`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

export async function addVm(cairn: Cairn, vm: BenchVm, host: string): Promise<void> {
  await cairn.cli(['hypervisor', 'add', 'qemu', '--qmp', vm.qmpPath, '--name', host]);
  for (let i = 0; ; i++) {
    const list = JSON.parse((await cairn.cli(['--json', 'vm', 'list'])).stdout) as Array<{ name: string }>;
    if (list.some((v) => v.name === vm.name)) return;
    if (i > 200) throw new Error(`${vm.name} never appeared in cairn vm list`);
    await new Promise((res) => setTimeout(res, 200));
  }
}

/** Writes the changed image's changed blocks into the VM's disk through QEMU. */
export async function writeChanges(vm: BenchVm, images: Images, spec: ImageSpec): Promise<number> {
  const fh = await open(images.changed.path, 'r');
  try {
    const blocks = changedBlocks(spec);
    const buf = Buffer.alloc(CHANGE_BLOCK_SIZE);
    for (const b of blocks) {
      await fh.read(buf, 0, CHANGE_BLOCK_SIZE, b.index * CHANGE_BLOCK_SIZE);
      await vm.write(b.index * CHANGE_BLOCK_SIZE, buf);
    }
    return blocks.length;
  } finally {
    await fh.close();
  }
}

// ---- a run

interface CairnRun {
  readonly full: JobTimes;
  readonly incremental: JobTimes;
  readonly restoreMs: number;
  /** The restore's split (RESTORE_PHASES), when the log had it. */
  readonly restoreSplit?: Readonly<Record<string, number>>;
  readonly fullPeakRss: number;
  readonly peakRss: number;
  /** CPU seconds of the stack (cairn up and its descendants) and of QEMU (serving NBD) per step; the restore's include its CLI process. */
  readonly cpu: { readonly full: StepCpu; readonly incremental: StepCpu; readonly restore: StepCpu };
}

export interface StepCpu {
  readonly stack: number;
  /** The main thread of `cairn up` (every service's event loop: NBD sockets, uploads, NATS): the part that cannot spread over cores. */
  readonly main: number;
  readonly qemu: number;
}

/** CPU the stack and QEMU use during `step` (the CLI process's own CPU added by the caller where it matters). */
export async function measureCpu<T>(cairn: Cairn, vm: BenchVm, step: () => Promise<T>): Promise<{ value: T; cpu: StepCpu }> {
  const mainThread = `${cairn.pid}/task/${cairn.pid}`;
  const [s0, m0, q0] = await Promise.all([cairn.cpu(), processCpu(mainThread), processCpu(vm.pid)]);
  const value = await step();
  const [s1, m1, q1] = await Promise.all([cairn.cpu(), processCpu(mainThread), processCpu(vm.pid)]);
  return { value, cpu: { stack: s1 - s0, main: m1 - m0, qemu: q1 - q0 } };
}

async function cairnRun(index: number, images: Images, spec: ImageSpec, workRoot: string, chunkSize?: string, restores = 1): Promise<CairnRun> {
  const dir = join(workRoot, `cairn-${index}`);
  await rm(dir, { recursive: true, force: true });
  const vm = await startVm(join(dir, 'vm'), 'bench-vm', images.base.path);
  let cairn: Cairn | undefined;
  try {
    cairn = await startCairn(join(dir, 'data'), chunkSize);
    await addVm(cairn, vm, 'bench-host');
    cairn.resetPeak();
    const repository = join(cairn.dataDir, 'repository');
    const { value: full, cpu: fullCpu } = await measureCpu(cairn, vm, () => backup(cairn!, vm.name));
    const fullPeakRss = cairn.peakRss();
    const repoFull = await treeBytes(repository);
    log(`cairn run ${index}: full job ${(full.jobMs / 1000).toFixed(2)} s (command ${(full.wallMs / 1000).toFixed(2)} s), read ${(full.bytesRead / MB).toFixed(0)} MB, stack peak RSS ${(fullPeakRss / MiB).toFixed(0)} MiB, CPU stack ${fullCpu.stack.toFixed(1)} s (main thread ${fullCpu.main.toFixed(1)} s) + QEMU ${fullCpu.qemu.toFixed(1)} s; repository ${(repoFull / MB).toFixed(1)} MB`);
    const written = await writeChanges(vm, images, spec);
    const { value: incremental, cpu: incCpu } = await measureCpu(cairn, vm, () => backup(cairn!, vm.name));
    log(`cairn run ${index}: incremental (${written} blocks written through QEMU) job ${(incremental.jobMs / 1000).toFixed(2)} s (command ${(incremental.wallMs / 1000).toFixed(2)} s), read ${(incremental.bytesRead / MB).toFixed(0)} MB, CPU stack ${incCpu.stack.toFixed(1)} s (main thread ${incCpu.main.toFixed(1)} s) + QEMU ${incCpu.qemu.toFixed(1)} s; repository grew ${((await treeBytes(repository) - repoFull) / MB).toFixed(1)} MB`);
    // --restores N: the same restore N times on this stack (A/B of the restore path alone); medians.
    const done: Array<{ ms: number; cpu: StepCpu; split?: Record<string, number> }> = [];
    for (let k = 1; k <= restores; k++) {
      const target = join(cairn.dataDir, 'restores', 'restored.raw');
      await rm(target, { force: true });
      const restoreId = randomUUID();
      const { value: restore, cpu: restoreCpu } = await measureCpu(cairn, vm, () => cairn!.cli(['restore', incremental.restorePointId, '--to', target, '--id', restoreId], undefined, REQUEST_PROBE_ENV));
      const sha = await sha256File(target);
      if (sha !== images.changed.sha256) throw new Error(`cairn restored a different image (sha256 ${sha}, expected ${images.changed.sha256})`);
      const split = await restoreSplit(cairn.dataDir, restoreId, restore);
      const written = requestWritten(restore);
      log(`cairn run ${index}: restore${restores > 1 ? ` ${k}/${restores}` : ''} ${(restore.ms / 1000).toFixed(2)} s from the command (SHA-256 matches), CPU stack ${restoreCpu.stack.toFixed(1)} s (main thread ${restoreCpu.main.toFixed(1)} s) + CLI ${restore.cpu.toFixed(1)} s, QEMU ${restoreCpu.qemu.toFixed(2)} s; load ${load()}${split ? `\n  split: ${RESTORE_PHASES.map(([k2]) => `${k2} ${s2(split[k2] ?? 0)}`).join(', ')}` : ''}${written ? `\n  the CLI wrote its request ${written.ms.toFixed(0)} ms after its spawn (main-thread CPU ${written.cpuMs.toFixed(0)} ms)${split ? `, the data mover recorded it ${((split['cli'] ?? 0) - written.ms).toFixed(0)} ms later` : ''}` : ''}`);
      done.push({ ms: restore.ms, cpu: { stack: restoreCpu.stack + restore.cpu, main: restoreCpu.main, qemu: restoreCpu.qemu }, ...(split ? { split } : {}) });
    }
    const mid = [...done].sort((a, b) => a.ms - b.ms)[Math.floor((done.length - 1) / 2)]!;
    return {
      full, incremental, restoreMs: mid.ms, ...(mid.split ? { restoreSplit: mid.split } : {}), fullPeakRss, peakRss: cairn.peakRss(),
      cpu: { full: fullCpu, incremental: incCpu, restore: mid.cpu },
    };
  } finally {
    await cairn?.stop();
    await vm.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

interface Concurrent {
  readonly vms: number;
  readonly jobs: JobTimes[];
  readonly aggregateMBps: number;
  readonly peakRss: number;
}

async function concurrentRun(count: number, images: Images, workRoot: string): Promise<Concurrent> {
  const dir = join(workRoot, 'concurrent');
  await rm(dir, { recursive: true, force: true });
  const vms: BenchVm[] = [];
  let cairn: Cairn | undefined;
  try {
    for (let i = 1; i <= count; i++) vms.push(await startVm(join(dir, `vm-${i}`), `bench-vm-${i}`, images.base.path));
    cairn = await startCairn(join(dir, 'data'));
    // One hypervisor per QEMU: the per-host job limit does not serialize them.
    for (const [i, vm] of vms.entries()) await addVm(cairn, vm, `bench-host-${i + 1}`);
    cairn.resetPeak();
    const jobs = await Promise.all(vms.map((vm) => backup(cairn!, vm.name)));
    const span = Math.max(...jobs.map((j) => j.completedAt)) - Math.min(...jobs.map((j) => j.requestedAt));
    const aggregateMBps = (count * images.base.sizeBytes) / MB / (span / 1000);
    log(`${count} VMs at once: ${jobs.map((j) => `${(j.jobMs / 1000).toFixed(2)} s`).join(', ')}; aggregate ${aggregateMBps.toFixed(0)} MB/s; stack peak RSS ${(cairn.peakRss() / MiB).toFixed(0)} MiB`);
    return { vms: count, jobs, aggregateMBps, peakRss: cairn.peakRss() };
  } finally {
    await cairn?.stop();
    await Promise.allSettled(vms.map((v) => v.stop()));
    await rm(dir, { recursive: true, force: true });
  }
}

/** Peak RSS of the stack as the disk grows: one full backup per size (`--flat 2G,8G`). */
interface FlatStep {
  readonly sizeBytes: number;
  readonly full: JobTimes;
  readonly peakRss: number;
  readonly cpu: StepCpu;
}

async function flatRun(sizeBytes: number, seed: string, workRoot: string): Promise<FlatStep> {
  const dir = join(workRoot, `flat-${sizeBytes}`);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  // Only the base image: the raw file is converted to the VM's qcow2 and removed at once.
  const raw = join(dir, 'base.raw');
  await writeImage({ sizeBytes, seed }, 'base', raw);
  let vm: BenchVm | undefined;
  let cairn: Cairn | undefined;
  try {
    vm = await startVm(join(dir, 'vm'), 'bench-flat-vm', raw);
    await rm(raw, { force: true });
    cairn = await startCairn(join(dir, 'data'));
    await addVm(cairn, vm, 'bench-flat-host');
    cairn.resetPeak();
    const { value: full, cpu } = await measureCpu(cairn, vm, () => backup(cairn!, vm!.name));
    log(`flat ${fmtSize(sizeBytes)}: full job ${s2(full.jobMs)} s, stack peak RSS ${(cairn.peakRss() / MiB).toFixed(0)} MiB, CPU stack ${cpu.stack.toFixed(1)} s (main thread ${cpu.main.toFixed(1)} s)`);
    return { sizeBytes, full, peakRss: cairn.peakRss(), cpu };
  } finally {
    await cairn?.stop();
    await vm?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

export function flatTable(steps: readonly FlatStep[], runs: readonly CairnRun[], diskBytes: number): string {
  const base = runs.map((r) => `| ${fmtSize(diskBytes)} (run ${runs.indexOf(r) + 1} above) | ${s2(r.full.jobMs)} | ${(diskBytes / MB / (r.full.jobMs / 1000)).toFixed(0)} | ${(r.fullPeakRss / MiB).toFixed(0)} | ${r.cpu.full.stack.toFixed(1)} (${r.cpu.full.main.toFixed(1)}) |`);
  return [
    '| disk | full job s | full MB/s | stack peak RSS MiB (full) | stack CPU s (main thread) |',
    '| --- | ---: | ---: | ---: | ---: |',
    ...base,
    ...steps.map((f) => `| ${fmtSize(f.sizeBytes)} | ${s2(f.full.jobMs)} | ${(f.sizeBytes / MB / (f.full.jobMs / 1000)).toFixed(0)} | ${(f.peakRss / MiB).toFixed(0)} | ${f.cpu.stack.toFixed(1)} (${f.cpu.main.toFixed(1)}) |`),
  ].join('\n');
}

// ---- the report

export const s2 = (ms: number): string => (ms / 1000).toFixed(2);

/** The data mover's split of the transfer phase (TransferTimings), as rows of the phase table. */
const TRANSFER_ROWS: ReadonlyArray<readonly [string, string]> = [
  ['connect', '↳ NBD connect'],
  ['plan', '↳ block status (plan of the reads)'],
  ['nbdRead', '↳ NBD reads (sum over reads in flight)'],
  ['waitForData', '↳ repository writer waiting for the reader'],
  ['writeRestorePoint', '↳ writing the restore point (chunk, compress, seal, store, commit)'],
  ['afterLastExtent', '↳ after the last extent (chunks in flight, index, manifest)'],
  ['total', '↳ transfer total inside the data mover'],
];
const transferCell = (values: ReadonlyArray<number | undefined>): string => {
  const known = values.filter((v): v is number => v !== undefined);
  return known.length ? s2(median(known)) : 'n/a';
};

export function productTables(o: { diskBytes: number; cairn: readonly CairnRun[]; others: readonly RunResult[]; concurrent?: Concurrent }): { main: string; phases: string; restore?: string; cpu: string; concurrent?: string; targets: string } {
  const d = o.diskBytes;
  const fullJob = median(o.cairn.map((r) => r.full.jobMs));
  const fullCmd = median(o.cairn.map((r) => r.full.wallMs));
  const incJob = median(o.cairn.map((r) => r.incremental.jobMs));
  const incCmd = median(o.cairn.map((r) => r.incremental.wallMs));
  const restoreMs = median(o.cairn.map((r) => r.restoreMs));
  const peak = median(o.cairn.map((r) => r.fullPeakRss));
  const tools = [...new Set(o.others.map((r) => r.tool))];
  const of = (tool: string, f: (r: RunResult) => number): number => median(o.others.filter((r) => r.tool === tool).map(f));
  const restic = tools.includes('restic') ? { full: of('restic', (r) => r.fullMs), inc: of('restic', (r) => r.incrementalMs), restore: of('restic', (r) => r.restoreMs), rss: of('restic', (r) => r.fullRssBytes) } : undefined;
  const ratio = (ref: number | undefined, mine: number): string => (ref === undefined ? '' : `${(ref / mine).toFixed(2)}×`);
  const rows = [
    `| cairn (job, from its events) | ${s2(fullJob)} | ${(d / MB / (fullJob / 1000)).toFixed(0)} | ${ratio(restic?.full, fullJob)} | ${s2(incJob)} | ${ratio(restic?.inc, incJob)} | | | ${(peak / MiB).toFixed(0)} |`,
    `| cairn (command, CLI start-up included) | ${s2(fullCmd)} | ${(d / MB / (fullCmd / 1000)).toFixed(0)} | ${ratio(restic?.full, fullCmd)} | ${s2(incCmd)} | ${ratio(restic?.inc, incCmd)} | ${s2(restoreMs)} | ${ratio(restic?.restore, restoreMs)} | |`,
    ...tools.map((t) => {
      const full = of(t, (r) => r.fullMs);
      const inc = of(t, (r) => r.incrementalMs);
      const rest = of(t, (r) => r.restoreMs);
      return `| ${t} | ${s2(full)} | ${(d / MB / (full / 1000)).toFixed(0)} | ${ratio(restic?.full, full)} | ${s2(inc)} | ${ratio(restic?.inc, inc)} | ${s2(rest)} | ${ratio(restic?.restore, rest)} | ${(of(t, (r) => r.fullRssBytes) / MiB).toFixed(0)} |`;
    }),
  ];
  const main = [
    '| who | full s | full MB/s | full × restic | incremental s | incr. × faster than restic | restore s (command to last byte) | restore × restic | peak RSS MiB (full) |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows,
  ].join('\n');
  const phases = [
    '| phase (between the job\'s events) | full s | incremental s |',
    '| --- | ---: | ---: |',
    ...PHASES.map(([name]) => `| ${name} | ${s2(median(o.cairn.map((r) => r.full.phases[name]!)))} | ${s2(median(o.cairn.map((r) => r.incremental.phases[name]!)))} |`),
    ...TRANSFER_ROWS.map(([key, name]) => `| ${name} | ${transferCell(o.cairn.map((r) => r.full.transfer?.[key]))} | ${transferCell(o.cairn.map((r) => r.incremental.transfer?.[key]))} |`),
    `| bytes read from the hypervisor | ${(median(o.cairn.map((r) => r.full.bytesRead)) / MB).toFixed(0)} MB | ${(median(o.cairn.map((r) => r.incremental.bytesRead)) / MB).toFixed(1)} MB |`,
  ].join('\n');
  // The restore's split and what the final fsync adds (restic's restore does not sync).
  const splits = o.cairn.map((r) => r.restoreSplit).filter((x): x is Readonly<Record<string, number>> => x !== undefined);
  const restore = splits.length ? [
    '| restore phase (`cairn restore --to`, from the mover\'s log) | s |',
    '| --- | ---: |',
    ...RESTORE_PHASES.map(([key, name]) => `| ${name} | ${s2(median(splits.map((x) => x[key] ?? 0)))} |`),
    `| command to the last byte written (before the fsync) | ${s2(median(splits.map((x) => RESTORE_PHASES.reduce((a, [k]) => (k === 'sync' || k === 'finish' || k === 'complete' || k === 'exit' ? a : a + (x[k] ?? 0)), 0))))} |`,
    `| command to the file synced, renamed and reported (its exit) | ${s2(restoreMs)} |`,
  ].join('\n') : undefined;
  const c1 = (f: (r: CairnRun) => number | undefined): string => {
    const known = o.cairn.map(f).filter((v): v is number => v !== undefined && Number.isFinite(v));
    return known.length ? median(known).toFixed(1) : 'n/a';
  };
  const cpu = [
    '| CPU seconds (user + system, all threads) | full | incremental | restore |',
    '| --- | ---: | ---: | ---: |',
    `| cairn stack (cairn up and its descendants; the restore's CLI process included) | ${c1((r) => r.cpu.full.stack)} | ${c1((r) => r.cpu.incremental.stack)} | ${c1((r) => r.cpu.restore.stack)} |`,
    `| ↳ of which the main thread of cairn up (all services' event loop) | ${c1((r) => r.cpu.full.main)} | ${c1((r) => r.cpu.incremental.main)} | ${c1((r) => r.cpu.restore.main)} |`,
    `| QEMU (serving the NBD export) | ${c1((r) => r.cpu.full.qemu)} | ${c1((r) => r.cpu.incremental.qemu)} | |`,
    ...tools.map((t) => `| ${t} | ${(of(t, (r) => r.cpuMs.full) / 1000).toFixed(1)} | ${(of(t, (r) => r.cpuMs.incremental) / 1000).toFixed(1)} | ${(of(t, (r) => r.cpuMs.restore) / 1000).toFixed(1)} |`),
  ].join('\n');
  const singleMBps = d / MB / (fullJob / 1000);
  const concurrent = o.concurrent
    ? [
        '| VMs at once | each job s | aggregate MB/s | × one VM | stack peak RSS MiB |',
        '| ---: | --- | ---: | ---: | ---: |',
        `| 1 | ${s2(fullJob)} | ${singleMBps.toFixed(0)} | 1 | ${(peak / MiB).toFixed(0)} |`,
        `| ${o.concurrent.vms} | ${o.concurrent.jobs.map((j) => s2(j.jobMs)).join(', ')} | ${o.concurrent.aggregateMBps.toFixed(0)} | ${(o.concurrent.aggregateMBps / singleMBps).toFixed(2)}× | ${(o.concurrent.peakRss / MiB).toFixed(0)} |`,
      ].join('\n')
    : undefined;
  const check = (name: string, aim: string, measured: string, met: boolean | undefined) => `| ${name} | ${aim} | ${measured} | ${met === undefined ? 'n/a' : met ? 'yes' : '**no**'} |`;
  const targets = [
    '| target (issue 20) | aim | measured | met |',
    '| --- | --- | --- | --- |',
    check('full backup job', '≥ 1.3× restic (goal 3×)', restic ? `${(restic.full / fullJob).toFixed(2)}×` : 'n/a', restic ? restic.full / fullJob >= 1.3 : undefined),
    check('incremental job', '≤ 0.5 s at 2 GiB (≥ 13× restic)', `${s2(incJob)} s, ${restic ? (restic.inc / incJob).toFixed(1) : '?'}× faster`, incJob <= 500 * (d / (2 * GiB)) && (!restic || restic.inc / incJob >= 13)),
    check('restore from the command', '≥ 2× restic', restic ? `${(restic.restore / restoreMs).toFixed(2)}×` : 'n/a', restic ? restic.restore / restoreMs >= 2 : undefined),
    check('stack peak RSS during the full', '≤ 512 MiB', `${(peak / MiB).toFixed(0)} MiB`, peak <= 512 * MiB),
    check('three VMs at once', 'aggregate ≥ one VM\'s', o.concurrent ? `${(o.concurrent.aggregateMBps / singleMBps).toFixed(2)}×` : 'n/a', o.concurrent ? o.concurrent.aggregateMBps >= singleMBps * 0.95 : undefined),
  ].join('\n');
  return { main, phases, ...(restore ? { restore } : {}), cpu, ...(concurrent ? { concurrent } : {}), targets };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      size: { type: 'string' },
      runs: { type: 'string' },
      tools: { type: 'string', default: 'restic,borg' },
      quick: { type: 'boolean', default: false },
      concurrent: { type: 'string' },
      flat: { type: 'string' },
      seed: { type: 'string', default: 'cairn-bench-1' },
      work: { type: 'string' },
      images: { type: 'string' },
      doc: { type: 'string' },
      'no-doc': { type: 'boolean', default: false },
      restores: { type: 'string', default: '1' },
      'chunk-size': { type: 'string' },
    },
  });
  const quick = values.quick;
  const size = parseSize(values.size ?? (quick ? '256M' : '2G'));
  const runs = Number(values.runs ?? (quick ? 1 : 3));
  const concurrentVms = Number(values.concurrent ?? 3);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer, got ${values.runs}`);
  const others = values.tools.split(',').map((t) => t.trim()).filter((t) => t && t !== 'cairn');
  for (const t of others) if (!TOOLS[t]) throw new Error(`unknown tool ${t} (known: restic, borg)`);
  if (values['chunk-size'] && !values['no-doc']) throw new Error('--chunk-size measures a repository unlike the default one: pass --no-doc');
  const docPath = values['no-doc'] ? undefined : values.doc ? resolve(values.doc) : quick ? undefined : join(repoRoot, 'docs/benchmarks.md');
  const workRoot = values.work ? resolve(values.work) : await mkdtemp(join(tmpdir(), 'cairn-product-'));
  await mkdir(workRoot, { recursive: true });
  const cleanup = async () => rm(workRoot, { recursive: true, force: true });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void cleanup().then(() => process.exit(130)));
  const spec: ImageSpec = { sizeBytes: size, seed: values.seed! };
  const startedAt = new Date().toISOString();
  const loadStart = load();
  log(`machine: ${machine()}; load ${loadStart}`);
  try {
    // A fresh CLI bundle before anything runs: with sources newer than the bundle, every `cairn`
    // would first rebuild it (seconds inside the measured commands, and `cairn up` would keep
    // esbuild's service process in the stack's memory).
    await run(process.execPath, [join(repoRoot, 'tools', 'cli', 'build.mjs')], { cwd: repoRoot });
    // --images <dir>: the generated images are kept there and reused by the next run (same seed and size).
    const images = await prepareImages(spec, values.images ? resolve(values.images) : join(workRoot, 'images'));
    const cairnRuns: CairnRun[] = [];
    const otherRuns: RunResult[] = [];
    for (let i = 1; i <= runs; i++) {
      // Cairn, restic and borg take turns inside each run: a noisy minute hurts all alike.
      cairnRuns.push(await cairnRun(i, images, spec, workRoot, values['chunk-size'], Number(values.restores)));
      for (const t of others) otherRuns.push(await runTool(TOOLS[t]!, i, images, workRoot));
    }
    const concurrent = concurrentVms > 1 ? await concurrentRun(concurrentVms, images, workRoot) : undefined;
    // --flat 2G,8G: one more full per size, for the stack's peak RSS as the disk grows.
    const flat: FlatStep[] = [];
    for (const sz of values.flat ? values.flat.split(',').map((x) => parseSize(x.trim())) : []) flat.push(await flatRun(sz, spec.seed, workRoot));
    const loadEnd = load();
    const t = productTables({ diskBytes: size, cairn: cairnRuns, others: otherRuns, ...(concurrent ? { concurrent } : {}) });
    console.log(`\n${fmtSize(size)} disk, ${runs} run(s), medians:\n${plainTable(t.main)}\n\nphases:\n${plainTable(t.phases)}${t.restore ? `\n\nrestore:\n${plainTable(t.restore)}` : ''}\n\nCPU:\n${plainTable(t.cpu)}${t.concurrent ? `\n\nconcurrent:\n${plainTable(t.concurrent)}` : ''}${flat.length ? `\n\npeak RSS as the disk grows:\n${plainTable(flatTable(flat, cairnRuns, size))}` : ''}\n\ntargets:\n${plainTable(t.targets)}`);
    const mix = layoutMix(imageLayout(spec));
    const cmd = `npx tsx tools/bench/src/product.ts${quick ? ' --quick' : ''}${values.size ? ` --size ${values.size}` : ''}${values.runs ? ` --runs ${runs}` : ''}${values.flat ? ` --flat ${values.flat}` : ''}`;
    const body = [
      `Measured ${startedAt} with \`${cmd}\` (commit ${(await run('git', ['-C', repoRoot, 'rev-parse', '--short', 'HEAD'])).stdout.trim()}).`,
      '',
      `- Machine: ${machine()}; load average ${loadStart} at start, ${loadEnd} at end.`,
      `- Disk: ${fmtSize(size)} qcow2 (converted from the generated raw image, zeros unallocated), seed \`${spec.seed}\`: ${(mix.zero * 100).toFixed(1)}% zeros, ${(mix.random * 100).toFixed(1)}% random, ${(mix.text * 100).toFixed(1)}% text; a paused QEMU (TCG); the incremental follows ${changedBlocks(spec).length} scattered 64 KiB blocks written through QEMU (HMP \`qemu-io\`). restic and borg back up the same bytes as raw files.`,
      `- Cairn: \`cairn up\` in a child, \`cairn hypervisor add qemu --qmp\`, \`cairn backup --wait\`, \`cairn restore --to\`. Job s = JobRequested → JobCompleted from the job's events; command s = the CLI process from spawn to exit. Peak RSS = the largest sum of VmRSS over \`cairn up\` and its descendants (NATS included), sampled every 100 ms during the full. Medians of ${runs} run(s).`,
      '',
      t.main,
      '',
      t.phases,
      ...(t.restore ? ['', t.restore] : []),
      '',
      t.cpu,
      ...(t.concurrent ? ['', t.concurrent] : []),
      ...(flat.length ? ['', flatTable(flat, cairnRuns, size)] : []),
      '',
      t.targets,
    ].join('\n');
    if (docPath) {
      await updateDoc(docPath, { product: body });
      log(`wrote ${docPath}`);
    }
    await writeFile(join(repoRoot, 'tmp', `product-${size}.json`), JSON.stringify({ startedAt, cairnRuns, otherRuns, concurrent, flat }, null, 2)).catch(() => undefined);
  } finally {
    await (values.work ? rm(join(workRoot, 'images'), { recursive: true, force: true }) : cleanup());
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e: unknown) => {
    console.error(`product bench: ${e instanceof Error ? e.message : String(e)}`);
    process.exitCode = 1;
  });
}
