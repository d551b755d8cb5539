import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { CHANGE_BLOCK_SIZE, MiB, changedBlocks, generateImage, imageLayout, layoutMix } from './image.ts';
import { chunkAlignedRegions } from './extents.ts';

const spec = { sizeBytes: 48 * MiB, seed: 'unit' };

function digest(pieceSize: number, variant: 'base' | 'changed'): string {
  const h = createHash('sha256');
  for (const p of generateImage(spec, variant, pieceSize)) h.update(p.data);
  return h.digest('hex');
}

describe('benchmark image', () => {
  it('is deterministic and does not depend on the piece size', () => {
    expect(digest(4 * MiB, 'base')).toBe(digest(CHANGE_BLOCK_SIZE * 3, 'base'));
    expect(digest(MiB, 'changed')).toBe(digest(4 * MiB, 'changed'));
  });

  it('covers the disk with 1-16 MiB runs close to 40/30/30', () => {
    const big = { sizeBytes: 2048 * MiB, seed: 'mix' };
    const runs = imageLayout(big);
    expect(runs.reduce((n, r) => n + r.length, 0)).toBe(big.sizeBytes);
    for (const r of runs.slice(0, -1)) {
      expect(r.length).toBeGreaterThanOrEqual(MiB);
      expect(r.length).toBeLessThanOrEqual(16 * MiB);
    }
    const mix = layoutMix(runs);
    expect(mix.zero).toBeCloseTo(0.4, 1);
    expect(mix.random).toBeCloseTo(0.3, 1);
    expect(mix.text).toBeCloseTo(0.3, 1);
  });

  it('changes exactly the listed 64 KiB blocks, about 2% of the disk', () => {
    const listed = changedBlocks(spec).map((b) => b.index);
    expect(listed.length).toBe(Math.round((0.02 * spec.sizeBytes) / CHANGE_BLOCK_SIZE));
    const base = generateImage(spec, 'base', CHANGE_BLOCK_SIZE);
    const differing: number[] = [];
    for (const changed of generateImage(spec, 'changed', CHANGE_BLOCK_SIZE)) {
      const b = base.next().value!;
      if (Buffer.compare(b.data, changed.data) !== 0) differing.push(changed.offset / CHANGE_BLOCK_SIZE);
    }
    expect(differing).toEqual(listed);
  });

  it('text runs compress, random runs do not', async () => {
    const { zstdCompressSync } = await import('node:zlib');
    const runs = imageLayout(spec);
    const pieces = [...generateImage(spec, 'base', MiB)];
    const sample = (kind: string) => {
      const run = runs.find((r) => r.kind === kind)!;
      return pieces[Math.ceil(run.offset / MiB)]!.data;
    };
    expect(zstdCompressSync(sample('text')).length).toBeLessThan(MiB / 2);
    expect(zstdCompressSync(sample('random')).length).toBeGreaterThan(MiB * 0.99);
  });
});

describe('chunk-aligned regions', () => {
  it('widens dirty blocks to whole chunks and merges neighbours', () => {
    const k = 64 * 1024;
    expect(chunkAlignedRegions([0, 1, 5, 70], k, 256 * 1024, 71 * k)).toEqual([
      { offset: 0, length: 512 * 1024 },
      { offset: 68 * k, length: 3 * k },
    ]);
  });
});
