// In-process probe for iterating on the data path (not the published benchmark): generates
// (or reuses) a base and changed image, then times full backup, incremental and restore
// inside one process, with wall and CPU time (all threads) of each step.
//   npx tsx tools/bench/src/probe.ts --dir /dev/shm/perf --size 512M [--repo-dir /tmp/x] [--fsync 0]
import { existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DirectoryBackend, initRepository, openRepository } from '@cairn/repository';
import { CHANGE_BLOCK_SIZE, MiB, changedBlocks, writeImage } from './image.ts';
import { chunkAlignedRegions, readRegions } from './extents.ts';

const { values } = parseArgs({ options: {
  dir: { type: 'string', default: '/dev/shm/perf' }, size: { type: 'string', default: '512M' },
  'repo-dir': { type: 'string' }, 'target-dir': { type: 'string' }, fsync: { type: 'string', default: '1' }, steps: { type: 'string', default: 'full,inc,restore' },
} });
const dir = values.dir!;
const m = /^(\d+)([MG])$/.exec(values.size!)!;
const size = Number(m[1]) * (m[2] === 'G' ? 1024 : 1) * MiB;
const spec = { sizeBytes: size, seed: 'cairn-bench-1' };
await mkdir(dir, { recursive: true });
const base = join(dir, `base-${values.size}.raw`);
const changed = join(dir, `changed-${values.size}.raw`);
if (!existsSync(changed)) { await writeImage(spec, 'base', base); await writeImage(spec, 'changed', changed); }
const repoDir = values['repo-dir'] ?? join(dir, 'repo');
const reuse = !steps0().includes('full');
if (!reuse) await rm(repoDir, { recursive: true, force: true });
function steps0(): string[] { return values.steps!.split(','); }
const KDF = { N: 1024, r: 8, p: 1 };
const fsync = values.fsync !== '0';
const be = new DirectoryBackend(repoDir, { createRoot: true, fsync });
// How long the writer's one flush (directory syncs before the manifest) takes.
const flush = be.flush.bind(be);
be.flush = async (group) => { const t = performance.now(); await flush(group); console.log(`  flush ${(performance.now() - t).toFixed(0)} ms`); };
if (!reuse) await (await initRepository(be, { passphrase: 'x', kdf: KDF })).close();
const fetchConcurrency = process.env.PROBE_FETCH ? Number(process.env.PROBE_FETCH) : undefined;
const uploadConcurrency = process.env.PROBE_UPLOAD ? Number(process.env.PROBE_UPLOAD) : undefined;
const repo = await openRepository(be, { passphrase: 'x', tuning: { ...(fetchConcurrency ? { fetchConcurrency } : {}), ...(uploadConcurrency ? { uploadConcurrency } : {}) } });
const steps = values.steps!.split(',');
async function timed<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const c0 = process.cpuUsage(); const t0 = performance.now();
  const out = await fn();
  const ms = performance.now() - t0; const c = process.cpuUsage(c0);
  const cpu = (c.user + c.system) / 1e6; const sys = c.system / 1e6;
  console.log(`${name.padEnd(8)} ${(ms / 1000).toFixed(2)} s  ${(size / 1e6 / (ms / 1000)).toFixed(0)} MB/s  cpu ${cpu.toFixed(2)} s (sys ${sys.toFixed(2)})  rss ${(process.memoryUsage().rss / MiB).toFixed(0)} MiB`);
  return out;
}
const piece = 4 * MiB;
const full = reuse ? { restorePointId: (await repo.listRestorePoints()).at(-1)!.id } : await timed('full', () => repo.writeRestorePoint({ vm: { id: 'v', name: 'v' }, disks: [{ name: 'd', sizeBytes: size, extents: readRegions(base, [{ offset: 0, length: size }], piece) }] }));
let last = full.restorePointId;
if (steps.includes('inc')) {
  const regions = chunkAlignedRegions(changedBlocks(spec).map((b) => b.index), CHANGE_BLOCK_SIZE, repo.chunkSize, size);
  const inc = await timed('inc', () => repo.writeRestorePoint({ vm: { id: 'v', name: 'v' }, parentId: last, disks: [{ name: 'd', sizeBytes: size, extents: readRegions(changed, regions, piece) }] }));
  last = inc.restorePointId;
}
if (steps.includes('restore')) {
  const target = join(values['target-dir'] ?? dir, 'restored.raw');
  await rm(target, { force: true });
  await timed('restore', () => repo.restoreDisk(last, 'd', target));
  if (process.env.PROBE_CHECK !== '0' && (await sha256(target)) !== (await sha256(steps.includes('inc') ? changed : base))) throw new Error('restore differs');
  await rm(target);
}
await repo.close();

async function sha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const b of createReadStream(path, { highWaterMark: 4 * MiB })) h.update(b as Buffer);
  return h.digest('hex');
}
