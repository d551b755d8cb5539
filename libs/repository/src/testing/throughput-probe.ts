// Throughput probe for the data path (not a test): full write, incremental, open-disk read and
// full restore of a generated image on a directory (fsync off), printing MB/s and peak RSS.
//   npx tsx libs/repository/src/testing/throughput-probe.ts [MiB=512] [fsync=0]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DirectoryBackend } from '../backend/directory.adapter.ts';
import { initRepository } from '../repository.ts';
import { changedExtents, fullExtents, makeImage, scatterChanges } from './test-image.ts';

const MiB = 1024 * 1024;
const size = Number(process.argv[2] ?? 512) * MiB;
const fsync = process.argv[3] === '1';
const image = makeImage(size, 5, 4 * MiB);
const dir = await mkdtemp(join(tmpdir(), 'cairn-probe-'));
const rate = (bytes: number, ms: number) => `${((bytes / MiB) / (ms / 1000)).toFixed(0)} MiB/s`;
try {
  const repo = await initRepository(new DirectoryBackend(join(dir, 'repo'), { createRoot: true, fsync }), { passphrase: 'p', kdf: { N: 1024, r: 8, p: 1 } });
  let t = performance.now();
  const full = await repo.writeRestorePoint({ vm: { id: 'v', name: 'v' }, disks: [{ name: 'd', sizeBytes: size, extents: fullExtents(image, repo.chunkSize, 4 * MiB) }] });
  console.log('full', rate(size, performance.now() - t), JSON.stringify(full.disks[0]));
  const changed = scatterChanges(image, Math.round((size * 0.02) / (64 * 1024)), 64 * 1024, 9);
  t = performance.now();
  const inc = await repo.writeRestorePoint({ vm: { id: 'v', name: 'v' }, parentId: full.restorePointId, disks: [{ name: 'd', sizeBytes: size, extents: changedExtents(image, repo.chunkSize, changed, 64 * 1024) }] });
  console.log('incremental', ((performance.now() - t) / 1000).toFixed(2), 's', JSON.stringify(inc.disks[0]));
  t = performance.now();
  await repo.restoreDisk(inc.restorePointId, 'd', join(dir, 'out.raw'));
  console.log('restore', rate(size, performance.now() - t));
  console.log('peak RSS', (process.resourceUsage().maxRSS / 1024).toFixed(0), 'MiB');
  await repo.close();
} finally {
  await rm(dir, { recursive: true, force: true });
}
