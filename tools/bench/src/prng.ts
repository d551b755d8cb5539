// Deterministic randomness for the benchmark images: a small seeded PRNG for decisions
// (run lengths, which blocks change) and an AES-CTR keystream for bulk bytes, which is
// both fast (AES-NI) and addressable by offset, so any part of an image can be produced
// without producing what precedes it.
import { createCipheriv, createHash } from 'node:crypto';

/** sfc32: tiny, fast, good enough statistically for layout decisions. */
export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: string) {
    const h = createHash('sha256').update(`prng:${seed}`).digest();
    this.a = h.readUInt32LE(0);
    this.b = h.readUInt32LE(4);
    this.c = h.readUInt32LE(8);
    this.d = h.readUInt32LE(12);
    for (let i = 0; i < 16; i++) this.nextU32();
  }

  nextU32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform float in [0, 1). */
  next(): number {
    return this.nextU32() / 4294967296;
  }

  /** Uniform integer in [min, max] (inclusive). */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
}

/** Derives a 128-bit key for one named stream of a seed. */
export function streamKey(seed: string, stream: string): Buffer {
  return createHash('sha256').update(`stream:${seed}:${stream}`).digest().subarray(0, 16);
}

/**
 * Fills `out` with the keystream bytes at absolute stream position `position`
 * (must be a multiple of 16): AES-128-CTR of zeros with the counter = position / 16.
 */
export function fillKeystream(key: Buffer, position: number, out: Uint8Array): void {
  if (position % 16 !== 0) throw new Error(`keystream position ${position} is not 16-byte aligned`);
  const iv = Buffer.alloc(16);
  const block = position / 16;
  // 2^53 positions are plenty; write the counter as a 128-bit big-endian integer.
  iv.writeUInt32BE(Math.floor(block / 2 ** 32), 8);
  iv.writeUInt32BE(block % 2 ** 32, 12);
  const cipher = createCipheriv('aes-128-ctr', key, iv);
  out.fill(0);
  const n = cipher.update(out);
  out.set(n);
}
