// Dedup probe for the known-chunks path (not a test): writes a generated image, reopens the
// repository (nothing known in memory) and writes the same image again as a new full backup of
// another VM, so every chunk is a dedup hit: probes, then one listing of chunks/ and lookups
// in what it learnt. Prints both writes' MB/s and peak RSS.
//   npx tsx libs/repository/src/testing/dedup-probe.ts [MiB=256]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DirectoryBackend } from '../backend/directory.adapter.ts';
import { initRepository, openRepository } from '../repository.ts';
import { fullExtents, makeImage } from './test-image.ts';

const MiB = 1024 * 1024;
const size = Number(process.argv[2] ?? 256) * MiB;
const image = makeImage(size, 5, 4 * MiB);
const dir = await mkdtemp(join(tmpdir(), 'cairn-dedup-probe-'));
const rate = (bytes: number, ms: number) => `${((bytes / MiB) / (ms / 1000)).toFixed(0)} MiB/s`;
const kdf = { N: 1024, r: 8, p: 1 };
try {
  const backend = () => new DirectoryBackend(join(dir, 'repo'), { createRoot: true, fsync: false });
  const first = await initRepository(backend(), { passphrase: 'p', kdf });
  let t = performance.now();
  const a = await first.writeRestorePoint({ vm: { id: 'a', name: 'a' }, disks: [{ name: 'd', sizeBytes: size, extents: fullExtents(image, first.chunkSize, 4 * MiB) }] });
  console.log('full', rate(size, performance.now() - t), `new ${a.disks[0]?.chunksNew}`);
  await first.close();
  const again = await openRepository(backend(), { passphrase: 'p' });
  t = performance.now();
  const b = await again.writeRestorePoint({ vm: { id: 'b', name: 'b' }, disks: [{ name: 'd', sizeBytes: size, extents: fullExtents(image, again.chunkSize, 4 * MiB) }] });
  console.log('dedup full', rate(size, performance.now() - t), `new ${b.disks[0]?.chunksNew}`);
  console.log('peak RSS', (process.resourceUsage().maxRSS / 1024).toFixed(0), 'MiB');
  await again.close();
} finally {
  await rm(dir, { recursive: true, force: true });
}
