// Deterministic test disk images: zero runs, random (incompressible) runs and text-like
// (compressible) runs, from a seed, so every test run sees the same bytes.

/** xorshift32: tiny, fast, deterministic. */
export function prng(seed: number): () => number {
  let x = seed >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x;
  };
}

const WORDS = ['cairn', 'backup', 'restore', 'chunk', 'index', 'the', 'of', 'disk', 'guest', 'kernel', 'log', 'error', 'ok'];

/** Fills `out` with a mix of runs of `run` bytes: 40% zero, 30% random, 30% text. */
export function makeImage(size: number, seed: number, run = 192 * 1024): Uint8Array {
  const out = new Uint8Array(size);
  const next = prng(seed);
  for (let off = 0; off < size; off += run) {
    const end = Math.min(size, off + run);
    const kind = next() % 10;
    if (kind < 4) continue;
    if (kind < 7) {
      for (let i = off; i < end; i++) out[i] = next() & 0xff;
    } else {
      let i = off;
      while (i < end) {
        const w = WORDS[next() % WORDS.length] as string;
        for (let k = 0; k < w.length && i < end; k++) out[i++] = w.charCodeAt(k);
        if (i < end) out[i++] = next() % 7 === 0 ? 10 : 32;
      }
    }
  }
  return out;
}

/** Overwrites `count` scattered `block`-byte blocks (block-aligned) with random data; returns their offsets. */
export function scatterChanges(image: Uint8Array, count: number, block: number, seed: number): number[] {
  const next = prng(seed);
  const blocks = Math.floor(image.length / block);
  const chosen = new Set<number>();
  while (chosen.size < Math.min(count, blocks)) chosen.add(next() % blocks);
  const offsets = [...chosen].sort((a, b) => a - b).map((b) => b * block);
  for (const o of offsets) for (let i = o; i < o + block; i++) image[i] = next() & 0xff;
  return offsets;
}

/** The whole image as chunk-aligned extents of up to `extentBytes` (holes of zeros left out when `skipZero`). */
export function* fullExtents(image: Uint8Array, chunkSize: number, extentBytes = 4 * chunkSize): Generator<{ offset: number; data: Uint8Array }> {
  for (let o = 0; o < image.length; o += extentBytes) {
    yield { offset: o, data: image.subarray(o, Math.min(image.length, o + extentBytes)) };
  }
}

/** Chunk-aligned extents covering the given changed offsets (what a dirty bitmap yields, rounded out to chunks). */
export function* changedExtents(image: Uint8Array, chunkSize: number, changed: readonly number[], block: number): Generator<{ offset: number; data: Uint8Array }> {
  const chunks = new Set<number>();
  for (const o of changed) {
    for (let c = Math.floor(o / chunkSize); c <= Math.floor((o + block - 1) / chunkSize); c++) chunks.add(c);
  }
  const sorted = [...chunks].sort((a, b) => a - b);
  let i = 0;
  while (i < sorted.length) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === (sorted[j] as number) + 1) j++;
    const start = (sorted[i] as number) * chunkSize;
    const end = Math.min(image.length, ((sorted[j] as number) + 1) * chunkSize);
    yield { offset: start, data: image.subarray(start, end) };
    i = j + 1;
  }
}

/** Async iterable from a sync one, yielding to the event loop between items (like a real reader). */
export async function* asAsync<T>(items: Iterable<T>): AsyncGenerator<T> {
  for (const x of items) {
    await new Promise((r) => setImmediate(r));
    yield x;
  }
}
