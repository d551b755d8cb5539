// The benchmark's test disk: a deterministic raw image of 40% zeros, 30% random and 30%
// text-like data in runs of 1–16 MiB, and a "changed" copy where 2% of the disk is
// rewritten in scattered 64 KiB blocks, plus the list of those blocks as a dirty bitmap
// of 64 KiB granularity would report them. Generated in bounded memory (one buffer at a
// time) and addressable: every byte depends only on (seed, offset), never on what came
// before, so the changed copy is the base with a few blocks replaced.
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { Prng, fillKeystream, streamKey } from './prng.ts';

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;
/** Granularity of the simulated dirty bitmap (QEMU's default for qcow2 is 64 KiB). */
export const CHANGE_BLOCK_SIZE = 64 * 1024;
/** Smallest unit of a run; a guest filesystem allocates in 4 KiB blocks. */
const RUN_UNIT = 4096;
const TEXT_BLOCK = 4096;

export type RunKind = 'zero' | 'random' | 'text';
const KINDS: readonly RunKind[] = ['zero', 'random', 'text'];
const SHARE: Readonly<Record<RunKind, number>> = { zero: 0.4, random: 0.3, text: 0.3 };

export interface ImageSpec {
  /** Disk size in bytes; a multiple of 1 MiB. */
  readonly sizeBytes: number;
  readonly seed: string;
  /** Fraction of the disk rewritten in the changed copy (default 0.02). */
  readonly changedFraction?: number;
}

export interface Run {
  readonly offset: number;
  readonly length: number;
  readonly kind: RunKind;
}

export interface ChangedBlock {
  /** Index in units of CHANGE_BLOCK_SIZE. */
  readonly index: number;
  /** What the guest wrote there. */
  readonly kind: 'random' | 'text';
}

export type ImageVariant = 'base' | 'changed';

function checkSpec(spec: ImageSpec): void {
  if (!Number.isSafeInteger(spec.sizeBytes) || spec.sizeBytes <= 0 || spec.sizeBytes % MiB !== 0) {
    throw new Error(`image size must be a positive multiple of 1 MiB, got ${spec.sizeBytes}`);
  }
}

/** The runs that make up the base image, in order, covering it exactly. */
export function imageLayout(spec: ImageSpec): Run[] {
  checkSpec(spec);
  const prng = new Prng(`${spec.seed}:layout`);
  const runs: Run[] = [];
  const used: Record<RunKind, number> = { zero: 0, random: 0, text: 0 };
  let offset = 0;
  while (offset < spec.sizeBytes) {
    const units = prng.int(MiB / RUN_UNIT, (16 * MiB) / RUN_UNIT);
    const length = Math.min(units * RUN_UNIT, spec.sizeBytes - offset);
    // Draw the kind in proportion to what each kind still lacks of its share, so the
    // mix comes out at 40/30/30 by bytes even with only a hundred runs.
    const lacking = KINDS.map((k) => Math.max(0, SHARE[k] * spec.sizeBytes - used[k]));
    const total = lacking.reduce((a, b) => a + b, 0);
    let p = prng.next() * total;
    let i = 0;
    while (i < KINDS.length - 1 && p >= lacking[i]!) p -= lacking[i++]!;
    const kind = total > 0 ? KINDS[i]! : 'zero';
    used[kind] += length;
    runs.push({ offset, length, kind });
    offset += length;
  }
  return runs;
}

/** The blocks rewritten in the changed copy, sorted by index, distinct, scattered uniformly. */
export function changedBlocks(spec: ImageSpec): ChangedBlock[] {
  checkSpec(spec);
  const total = spec.sizeBytes / CHANGE_BLOCK_SIZE;
  const count = Math.min(total, Math.round((spec.changedFraction ?? 0.02) * total));
  const prng = new Prng(`${spec.seed}:changes`);
  const chosen = new Map<number, ChangedBlock['kind']>();
  while (chosen.size < count) {
    const index = prng.int(0, total - 1);
    if (!chosen.has(index)) chosen.set(index, prng.next() < 0.5 ? 'random' : 'text');
  }
  return [...chosen].map(([index, kind]) => ({ index, kind })).sort((a, b) => a.index - b.index);
}

/** Fraction of bytes of each kind in the base image (for the report). */
export function layoutMix(runs: readonly Run[]): Record<RunKind, number> {
  const total = runs.reduce((n, r) => n + r.length, 0);
  const mix: Record<RunKind, number> = { zero: 0, random: 0, text: 0 };
  for (const r of runs) mix[r.kind] += r.length / total;
  return mix;
}

// ---- text-like bytes: pseudo-words drawn with a Zipf distribution, like prose or logs.

interface Vocabulary {
  readonly pool: Uint8Array;
  readonly start: Uint32Array;
  readonly length: Uint8Array;
  /** Maps a 16-bit random value to a word index, Zipf-distributed. */
  readonly pick: Uint16Array;
}

let vocabulary: Vocabulary | undefined;

function getVocabulary(): Vocabulary {
  if (vocabulary) return vocabulary;
  const prng = new Prng('cairn-bench-vocabulary');
  const syllables = ['ka', 'to', 're', 'mi', 'sa', 'an', 'el', 'or', 'in', 'tu', 'be', 'lo', 'da',
    'ne', 'ri', 'co', 'st', 'th', 'er', 'on', 'al', 'es', 'ti', 'us', 'ma', 'pe', 'ch', 'ou'];
  const words = 4096;
  const bytes: number[] = [];
  const start = new Uint32Array(words);
  const length = new Uint8Array(words);
  for (let w = 0; w < words; w++) {
    start[w] = bytes.length;
    const n = prng.int(1, 4);
    let word = '';
    for (let s = 0; s < n; s++) word += syllables[prng.int(0, syllables.length - 1)];
    const sep = prng.next();
    word += sep < 0.85 ? ' ' : sep < 0.95 ? ', ' : '.\n';
    for (let i = 0; i < word.length; i++) bytes.push(word.charCodeAt(i));
    length[w] = word.length;
  }
  // Zipf with s = 1 over the vocabulary, as a lookup table for 16-bit random values.
  const pick = new Uint16Array(65536);
  let harmonic = 0;
  for (let r = 1; r <= words; r++) harmonic += 1 / r;
  let cumulative = 0;
  let w = 0;
  for (let v = 0; v < 65536; v++) {
    while (w < words - 1 && (v + 0.5) / 65536 > cumulative + 1 / (w + 1) / harmonic) {
      cumulative += 1 / (w + 1) / harmonic;
      w++;
    }
    pick[v] = w;
  }
  vocabulary = { pool: Uint8Array.from(bytes), start, length, pick };
  return vocabulary;
}

/**
 * Writes text into `out` (a multiple of 4 KiB long), block by block; each 4 KiB block is
 * derived from the keystream bytes at its own position, so the result is addressable.
 */
function fillText(key: Buffer, position: number, out: Uint8Array): void {
  const { pool, start, length, pick } = getVocabulary();
  const ks = new Uint8Array(out.length);
  fillKeystream(key, position, ks);
  for (let block = 0; block < out.length; block += TEXT_BLOCK) {
    let k = block;
    let p = block;
    const end = block + TEXT_BLOCK;
    // Every word with its separator is >= 2 bytes, and each pick consumes 2 keystream
    // bytes, so one block of keystream always fills one block of text.
    while (p < end) {
      const w = pick[ks[k]! | (ks[k + 1]! << 8)]!;
      k += 2;
      let s = start[w]!;
      const e = s + length[w]!;
      while (s < e && p < end) out[p++] = pool[s++]!;
    }
  }
}

/** Keys of the byte streams of one image seed. */
interface ImageKeys {
  readonly random: Buffer;
  readonly text: Buffer;
  readonly changeRandom: Buffer;
  readonly changeText: Buffer;
}

function imageKeys(seed: string): ImageKeys {
  return {
    random: streamKey(seed, 'random'),
    text: streamKey(seed, 'text'),
    changeRandom: streamKey(seed, 'change-random'),
    changeText: streamKey(seed, 'change-text'),
  };
}

function fillKind(kind: RunKind, random: Buffer, text: Buffer, position: number, out: Uint8Array): void {
  if (kind === 'zero') out.fill(0);
  else if (kind === 'random') fillKeystream(random, position, out);
  else fillText(text, position, out);
}

export interface ImagePiece {
  readonly offset: number;
  readonly data: Uint8Array;
}

/**
 * Yields the image in order, in pieces of `pieceSize` bytes (a multiple of 64 KiB), each
 * a fresh buffer. Memory: one piece plus the run and change lists.
 */
export function* generateImage(spec: ImageSpec, variant: ImageVariant, pieceSize = 4 * MiB): Generator<ImagePiece> {
  checkSpec(spec);
  if (pieceSize <= 0 || pieceSize % CHANGE_BLOCK_SIZE !== 0) {
    throw new Error(`piece size must be a positive multiple of ${CHANGE_BLOCK_SIZE}`);
  }
  const keys = imageKeys(spec.seed);
  const runs = imageLayout(spec);
  const changes = variant === 'changed' ? changedBlocks(spec) : [];
  let runIndex = 0;
  let changeIndex = 0;
  for (let offset = 0; offset < spec.sizeBytes; offset += pieceSize) {
    const data = new Uint8Array(Math.min(pieceSize, spec.sizeBytes - offset));
    const end = offset + data.length;
    while (runIndex < runs.length && runs[runIndex]!.offset + runs[runIndex]!.length <= offset) runIndex++;
    for (let r = runIndex; r < runs.length && runs[r]!.offset < end; r++) {
      const run = runs[r]!;
      const from = Math.max(run.offset, offset);
      const to = Math.min(run.offset + run.length, end);
      if (run.kind !== 'zero') fillKind(run.kind, keys.random, keys.text, from, data.subarray(from - offset, to - offset));
    }
    while (changeIndex < changes.length && changes[changeIndex]!.index * CHANGE_BLOCK_SIZE < end) {
      const change = changes[changeIndex++]!;
      const at = change.index * CHANGE_BLOCK_SIZE;
      fillKind(change.kind, keys.changeRandom, keys.changeText, at,
        data.subarray(at - offset, at - offset + CHANGE_BLOCK_SIZE));
    }
    yield { offset, data };
  }
}

export interface WrittenImage {
  readonly path: string;
  readonly sizeBytes: number;
  /** SHA-256 (hex) of the whole image, to check restores against. */
  readonly sha256: string;
}

let zeros = new Uint8Array(0);

function isAllZero(data: Uint8Array): boolean {
  if (zeros.length < data.length) zeros = new Uint8Array(data.length);
  return Buffer.compare(data, zeros.subarray(0, data.length)) === 0;
}

/**
 * Writes the image to `path` as a sparse raw file (all-zero pieces are holes, as on a
 * thinly provisioned disk) and returns its checksum.
 */
export async function writeImage(spec: ImageSpec, variant: ImageVariant, path: string): Promise<WrittenImage> {
  const hash = createHash('sha256');
  const file = await open(path, 'w');
  // Two writes in flight, so generating the next piece overlaps writing this one.
  const inFlight: Promise<unknown>[] = [];
  try {
    for (const piece of generateImage(spec, variant)) {
      hash.update(piece.data);
      if (!isAllZero(piece.data)) {
        inFlight.push(file.write(piece.data, 0, piece.data.length, piece.offset));
        if (inFlight.length >= 2) await inFlight.shift();
      }
    }
    await Promise.all(inFlight.splice(0));
    await file.truncate(spec.sizeBytes);
  } finally {
    await Promise.allSettled(inFlight);
    await file.close();
  }
  return { path, sizeBytes: spec.sizeBytes, sha256: hash.digest('hex') };
}
