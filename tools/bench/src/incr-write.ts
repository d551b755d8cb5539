// The incremental's repository write alone, in one process: issue 20's changed 64 KiB blocks
// (image.ts changedBlocks, each stamped with a fresh counter in its first 8 bytes so every run
// stores new chunks) written as `partial` extents of a restore point whose parent is a full of
// the generated base image, into a directory repository with fsync, as the data mover hands
// them over. The repository code is the one of `--root` (a worktree), so one copy of this tool
// A/Bs builds: run it per build in turn against the same `--repo` (made with a full by the first
// run). Prints per incremental (after one warm-up) the wall time, the process's CPU seconds (all
// threads), its main thread's, each kind of thread's (/proc: main, chunk workers, libuv's pool,
// V8's helpers; 10 ms ticks), the main thread's garbage collections, and how many objects were
// stored, with the load. `--no-fsync`: a backend without fsync, for the cost of durability.
//   npx tsx tools/bench/src/incr-write.ts --root /work/wt/base --repo /tmp/x/repo [--runs 3] [--images /tmp/img-full] [--no-fsync]
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { CHANGE_BLOCK_SIZE, changedBlocks } from './image.ts';

const { values } = parseArgs({ options: {
  root: { type: 'string' }, repo: { type: 'string' }, runs: { type: 'string', default: '3' },
  images: { type: 'string', default: '/tmp/img-full' }, 'no-fsync': { type: 'boolean' },
} });
if (!values.root || !values.repo) throw new Error('--root <worktree> and --repo <dir> are required');
const lib = (await import(join(resolve(values.root), 'libs/repository/src/index.ts'))) as typeof import('@cairn/repository');
const SIZE = 2 * 1024 * 1024 * 1024;
const CHUNK = 256 * 1024;
const STEP = 4 * 1024 * 1024;
const passphrase = 'bench';
const repoDir = resolve(values.repo);
const fresh = !existsSync(join(repoDir, 'config'));
const backend = new lib.DirectoryBackend(repoDir, { createRoot: true, fsync: !values['no-fsync'] });
const repo = fresh
  ? await lib.initRepository(backend, { passphrase, kdf: { N: 1024, r: 8, p: 1 }, chunkSize: CHUNK })
  : await lib.openRepository(backend, { passphrase });

async function* readImage(path: string): AsyncGenerator<{ offset: number; data: Uint8Array }> {
  const fd = openSync(path, 'r');
  const buf = Buffer.allocUnsafeSlow(STEP);
  try {
    for (let o = 0; o < SIZE; o += STEP) yield { offset: o, data: buf.subarray(0, readSync(fd, buf, 0, STEP, o)) };
  } finally { closeSync(fd); }
}
let parent = (await repo.listRestorePoints()).find((p) => p.vm.id === 'vm' && !p.parentId);
if (!parent) {
  const t0 = performance.now();
  const r = await repo.writeRestorePoint({ vm: { id: 'vm', name: 'vm' }, disks: [{ name: 'disk0', sizeBytes: SIZE, extents: readImage(join(values.images, 'base.raw')) }], labels: {} });
  process.stderr.write(`full ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  parent = (await repo.listRestorePoints()).find((p) => p.id === r.restorePointId)!;
}
const blocks = changedBlocks({ sizeBytes: SIZE, seed: 'cairn-bench-1' });
const changed = openSync(join(values.images, 'changed.raw'), 'r');
// The changed blocks read into memory once, stamped per run (a copy per extent: the mover reads into a ring).
const data = blocks.map((b) => { const d = Buffer.alloc(CHANGE_BLOCK_SIZE); readSync(changed, d, 0, CHANGE_BLOCK_SIZE, b.index * CHANGE_BLOCK_SIZE); return d; });
closeSync(changed);
let stamp = Date.now();
const ring = Array.from({ length: 18 }, () => Buffer.alloc(CHANGE_BLOCK_SIZE));
async function* extents(): AsyncGenerator<{ offset: number; data: Uint8Array }> {
  for (let i = 0; i < blocks.length; i++) {
    const b = ring[i % ring.length]!;
    data[i]!.copy(b);
    b.writeBigUInt64LE(BigInt(stamp), 0);
    await new Promise<void>((r) => setImmediate(r)); // a reply from the socket: one turn of the loop per extent
    yield { offset: blocks[i]!.index * CHANGE_BLOCK_SIZE, data: b };
  }
}
/** CPU ms so far per kind of thread (main, chunk workers, libuv's pool, V8's helpers), from /proc. */
function threadCpu(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const tid of readdirSync('/proc/self/task')) {
    const comm = readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim();
    const f = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    const kind = Number(tid) === process.pid ? 'main' : comm.startsWith('libuv') ? 'libuv' : comm.startsWith('V8') || comm.startsWith('DelayedTask') ? 'v8' : comm.startsWith('Worker') ? 'workers' : 'other';
    out[kind] = (out[kind] ?? 0) + (Number(f[11]) + Number(f[12])) * 10;
  }
  return out;
}
/** The main thread's garbage collections by kind (V8's `gc` performance entries), and their ms. */
const gc = { scavenge: 0, markCompact: 0, ms: 0 };
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    const kind = (e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind;
    if (kind === constants.NODE_PERFORMANCE_GC_MINOR) gc.scavenge++;
    if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) gc.markCompact++;
    gc.ms += e.duration;
  }
}).observe({ entryTypes: ['gc'] });
const runOnce = async () => {
  const gc0 = { ...gc };
  const th0 = threadCpu();
  stamp++;
  const m0 = process.threadCpuUsage();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const r = await repo.writeRestorePoint({ vm: { id: 'vm', name: 'vm' }, parentId: parent.id, disks: [{ name: 'disk0', sizeBytes: SIZE, extents: extents(), partial: true }], labels: {} });
  const wall = performance.now() - t0;
  const c = process.cpuUsage(c0);
  const m = process.threadCpuUsage(m0);
  const d = r.disks[0]!;
  const th = threadCpu();
  const threads = Object.fromEntries(Object.keys(th).map((k) => [k, (th[k] ?? 0) - (th0[k] ?? 0)]));
  await new Promise((r) => setImmediate(r)); // the observer's entries of this run
  const gcs = { scavenge: gc.scavenge - gc0.scavenge, markCompact: gc.markCompact - gc0.markCompact, ms: Math.round(gc.ms - gc0.ms) };
  return { threads, gc: gcs, wallMs: Math.round(wall), cpuMs: Math.round((c.user + c.system) / 1000), mainMs: Math.round((m.user + m.system) / 1000), chunksNew: d.chunksNew, pagesNew: d.pagesNew, load: +loadavg()[0]!.toFixed(1) };
};
await runOnce(); // warm-up: workers started, code compiled
for (let i = 0; i < Number(values.runs); i++) process.stdout.write(`${JSON.stringify({ root: values.root, ...(await runOnce()) })}\n`);
await repo.close();
