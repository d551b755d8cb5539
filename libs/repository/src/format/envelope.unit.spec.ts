import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { contentId, ENVELOPE_OVERHEAD, EnvelopeError, open, seal } from './envelope.ts';

const dataKey = randomBytes(32);
const idKey = randomBytes(32);
const text = Buffer.from('cairn '.repeat(10_000));

function failure(fn: () => unknown): string | undefined {
  try { fn(); } catch (e) { return e instanceof EnvelopeError ? e.failure : `other: ${(e as Error).message}`; }
  return undefined;
}

describe('sealed envelope', () => {
  it('round-trips, compressing what compresses and storing the rest raw', () => {
    const id = contentId(idKey, text);
    const s = seal('C', id, text, dataKey, 1);
    expect(s.compressed).toBe(true);
    expect(s.sealed.length).toBeLessThan(text.length / 10);
    expect(Buffer.from(open('C', id, s.sealed, dataKey, { idKey, maxPlainBytes: text.length })).equals(text)).toBe(true);

    const noise = randomBytes(65_536);
    const r = seal('C', contentId(idKey, noise), noise, dataKey, 1);
    expect(r.compressed).toBe(false);
    expect(r.sealed.length).toBe(noise.length + ENVELOPE_OVERHEAD);
  });

  it('classifies every kind of damage and never returns wrong plaintext', () => {
    const id = contentId(idKey, text);
    const { sealed } = seal('C', id, text, dataKey, 1);
    const opts = { idKey, maxPlainBytes: text.length };
    const flipped = Buffer.from(sealed);
    flipped[30]! ^= 1;
    expect(failure(() => open('C', id, flipped, dataKey, opts))).toBe('authentication');
    expect(failure(() => open('C', id, sealed.subarray(0, sealed.length - 5), dataKey, opts))).toBe('truncated');
    expect(failure(() => open('C', id, sealed.subarray(0, 5), dataKey, opts))).toBe('truncated');
    expect(failure(() => open('C', id, Buffer.concat([sealed, Buffer.from([0])]), dataKey, opts))).toBe('malformed');
    expect(failure(() => open('P', id, sealed, dataKey, opts))).toBe('malformed');
    expect(failure(() => open('C', '0'.repeat(64), sealed, dataKey, opts))).toBe('authentication');
    expect(failure(() => open('C', id, sealed, randomBytes(32), opts))).toBe('authentication');
    // Sealed under another id key's id: authentic, but the plaintext does not hash to its id.
    const otherId = contentId(randomBytes(32), text);
    const other = seal('C', otherId, text, dataKey, 1).sealed;
    expect(failure(() => open('C', otherId, other, dataKey, opts))).toBe('id-mismatch');
    expect(failure(() => open('C', id, sealed, dataKey, { idKey, maxPlainBytes: 100 }))).toBe('decompression');
  });
});
