// release() frees buffers the envelope made at once (detaching them) and never touches memory
// that others may share: the shared Buffer pool, a view into a larger buffer, the caller's data.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { open, release, seal } from './envelope.ts';

const key = randomBytes(32);

describe('envelope release', () => {
  it('detaches a buffer that owns its memory, and nothing else', () => {
    const owned = Buffer.allocUnsafeSlow(256 * 1024);
    release(owned);
    expect(owned.buffer.byteLength).toBe(0);
    const pooled = Buffer.from('a small buffer from the shared pool');
    release(pooled);
    expect(pooled.toString()).toBe('a small buffer from the shared pool');
    const big = Buffer.allocUnsafeSlow(64 * 1024).fill(7);
    const view = big.subarray(4096);
    release(view);
    expect(big[0]).toBe(7);
  });

  it('seal and open leave the caller\'s plaintext and sealed bytes intact', () => {
    const plain = Buffer.alloc(256 * 1024, 'compressible text, compressible text ');
    const copy = Buffer.from(plain);
    const random = randomBytes(256 * 1024);
    for (const data of [plain, random]) {
      const before = Buffer.from(data);
      const { sealed } = seal('C', 'id', data, key, 3);
      expect(Buffer.from(data).equals(before)).toBe(true);
      const sealedCopy = Buffer.from(sealed);
      expect(Buffer.from(open('C', 'id', sealed, key, { maxPlainBytes: 256 * 1024 })).equals(before)).toBe(true);
      expect(Buffer.from(sealed).equals(sealedCopy)).toBe(true);
    }
    expect(plain.equals(copy)).toBe(true);
  });
});
