// Chunk size study (docs/repository.md, "Chunk size"): writes the same generated disk and a
// copy with 2% changed in scattered 64 KiB blocks at several chunk sizes, and prints full
// and incremental cost, growth, object counts and index size. Run:
//   npx tsx libs/repository/src/testing/chunk-size-study.ts [MiB=256]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DirectoryBackend } from '../backend/directory.adapter.ts';
import { initRepository } from '../repository.ts';
import { changedExtents, fullExtents, prng, scatterChanges } from './test-image.ts';

const MiB = 1024 * 1024;
const size = Number(process.argv[2] ?? 256) * MiB;

/** The benchmark's mix: 40% zero, 30% random, 30% text-like, in 1-16 MiB runs. */
function benchImage(bytes: number, seed: number): Uint8Array {
  const out = new Uint8Array(bytes);
  const next = prng(seed);
  const words = Buffer.from('the quick cairn backs up a guest kernel log error ok disk index chunk restore ');
  for (let off = 0; off < bytes;) {
    const run = Math.min(bytes - off, (1 + (next() % 16)) * MiB);
    const kind = next() % 10;
    if (kind >= 4 && kind < 7) {
      for (let i = off; i < off + run; i += 4) {
        const v = next();
        out[i] = v; out[i + 1] = v >>> 8; out[i + 2] = v >>> 16; out[i + 3] = v >>> 24;
      }
    } else if (kind >= 7) {
      for (let i = off; i < off + run; i++) out[i] = words[(i * 7 + (i >>> 9)) % words.length] as number;
    }
    off += run;
  }
  return out;
}

async function main(): Promise<void> {
  const base = benchImage(size, 1);
  const changed = Uint8Array.from(base);
  const block = 64 * 1024;
  const offsets = scatterChanges(changed, Math.round((size * 0.02) / block), block, 2);
  console.log(`disk ${size / MiB} MiB, ${offsets.length} scattered 64 KiB changes (2%)`);
  console.log('chunk KiB | full s | full MiB stored | chunks | incr s | incr read MiB | growth MiB | new chunks | index KiB/GiB | pages/GiB');
  for (const cs of [64, 128, 256, 512, 1024, 4096].map((k) => k * 1024)) {
    const dir = await mkdtemp(join(tmpdir(), 'cairn-study-'));
    try {
      const repo = await initRepository(new DirectoryBackend(dir, { createRoot: true, fsync: false }), {
        passphrase: 'study', kdf: { N: 1024, r: 8, p: 1 }, chunkSize: cs,
      });
      let t = performance.now();
      const full = await repo.writeRestorePoint({ vm: { id: 's', name: 's' }, disks: [{ name: 'd', sizeBytes: size, extents: fullExtents(base, cs, 16 * MiB) }] });
      const fullS = (performance.now() - t) / 1000;
      t = performance.now();
      const inc = await repo.writeRestorePoint({
        vm: { id: 's', name: 's' }, parentId: full.restorePointId,
        disks: [{ name: 'd', sizeBytes: size, extents: changedExtents(changed, cs, offsets, block) }],
      });
      const incS = (performance.now() - t) / 1000;
      const f = full.disks[0]!;
      const i = inc.disks[0]!;
      const chunks = Math.ceil(size / cs);
      const indexPerGiB = (1024 / (size / MiB)) * chunks * 32 / 1024;
      const pagesPerGiB = Math.ceil(((1024 * MiB) / cs) / repo.pageEntries);
      console.log([
        cs / 1024, fullS.toFixed(2), (f.bytesStored / MiB).toFixed(1), f.chunksNew, incS.toFixed(2),
        (i.bytesRead / MiB).toFixed(1), (i.bytesStored / MiB).toFixed(2), i.chunksNew, indexPerGiB.toFixed(0), pagesPerGiB,
      ].join(' | '));
      await repo.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}

await main();
