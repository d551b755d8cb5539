import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { constants as zc, zstdCompressSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { contentId, ENVELOPE_OVERHEAD, EnvelopeError, HEADER_BYTES, open, seal, zstdContentSize } from './envelope.ts';

const dataKey = randomBytes(32);
const idKey = randomBytes(32);
const text = Buffer.from('cairn '.repeat(10_000));

/** An authentic envelope around any payload marked zstd-compressed (what `seal` never writes). */
function sealZstdPayload(id: string, payload: Buffer): Buffer {
  const header = Buffer.from([0x43, 0x52, 0x4e, 0x43, 1, 1, 0, 0, 0, 0, 0, 0]);
  header.writeUInt32BE(payload.length, 8);
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', dataKey, nonce);
  cipher.setAAD(Buffer.concat([header.subarray(0, HEADER_BYTES), Buffer.from(id, 'utf8')]));
  return Buffer.concat([header, nonce, cipher.update(payload), cipher.final(), cipher.getAuthTag()]);
}

/** The (compressed) payload inside a sealed envelope, decrypted and authenticated here. */
function payloadOf(id: string, sealed: Uint8Array): Buffer {
  const b = Buffer.from(sealed);
  const length = b.readUInt32BE(8);
  const decipher = createDecipheriv('aes-256-gcm', dataKey, b.subarray(HEADER_BYTES, HEADER_BYTES + 12));
  decipher.setAAD(Buffer.concat([b.subarray(0, HEADER_BYTES), Buffer.from(id, 'utf8')]));
  decipher.setAuthTag(b.subarray(HEADER_BYTES + 12 + length));
  return Buffer.concat([decipher.update(b.subarray(HEADER_BYTES + 12, HEADER_BYTES + 12 + length)), decipher.final()]);
}

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

  it('writes, object after object and level after level, the frames a fresh zstdCompressSync writes', () => {
    // seal keeps one compressor per thread and level (and one output buffer, grown as needed):
    // nothing may carry from one object to the next, and each frame declares its content size.
    const words = Buffer.from('backup chunk restore point repository cairn disk ');
    const objects: Buffer[] = [];
    for (const size of [65_536, 100, 65_536, 262_144, 1, 65_536, 1_048_576, 4_096]) {
      const t = Buffer.alloc(size);
      for (let i = 0; i < size; i++) t[i] = words[(i * 7 + (i >> 9)) % words.length]!;
      objects.push(t, Buffer.alloc(size), Buffer.concat([randomBytes(size >> 1), t.subarray(0, size - (size >> 1))]));
    }
    for (const level of [1, 3, 1]) {
      for (const plain of objects) {
        const id = contentId(idKey, plain);
        const s = seal('C', id, plain, dataKey, level);
        // What seal wrote before it kept a compressor: a one-shot call with room for the worst case.
        const frame = zstdCompressSync(plain, { params: { [zc.ZSTD_c_compressionLevel]: level }, chunkSize: Math.max(64, plain.length + (plain.length >> 7) + 1024) });
        const payload = payloadOf(id, s.sealed);
        if (s.compressed) {
          expect(payload.equals(frame)).toBe(true);
          expect(zstdContentSize(payload)).toBe(plain.length);
        } else {
          expect(frame.length).toBeGreaterThanOrEqual(plain.length - (plain.length >> 5));
          expect(payload.equals(plain)).toBe(true);
        }
        expect(Buffer.from(open('C', id, s.sealed, dataKey, { idKey, maxPlainBytes: plain.length })).equals(plain)).toBe(true);
      }
    }
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

  it('opens into a reused buffer; a bad frame is refused and the next object opens whole', () => {
    const into = Buffer.alloc(text.length + 1);
    const id = contentId(idKey, text);
    const { sealed } = seal('C', id, text, dataKey, 1);
    const opts = { idKey, maxPlainBytes: text.length, into };
    const plain = open('C', id, sealed, dataKey, opts);
    expect(plain.buffer).toBe(into.buffer);
    expect(Buffer.from(plain).equals(text)).toBe(true);

    const frame = zstdCompressSync(text);
    const bad = [
      frame.subarray(0, frame.length - 3), // truncated frame
      Buffer.concat([frame, frame]), // a second frame after the first
      Buffer.concat([frame.subarray(0, 4), Buffer.alloc(20, 0xff)]), // not zstd after the magic
    ];
    for (const payload of bad) {
      expect(failure(() => open('C', id, sealZstdPayload(id, payload), dataKey, opts))).toBe('decompression');
      expect(failure(() => open('C', id, sealZstdPayload(id, payload), dataKey, { idKey, maxPlainBytes: text.length }))).toBe('decompression');
      expect(Buffer.from(open('C', id, sealed, dataKey, opts)).equals(text)).toBe(true);
    }
    // Objects after objects through the same decompressor, without a reset between whole frames.
    const other = Buffer.concat([randomBytes(50_000), text.subarray(0, 9_000)]);
    const otherId = contentId(idKey, other);
    const otherSealed = seal('C', otherId, other, dataKey, 1).sealed;
    expect(otherSealed.length).toBeLessThan(other.length);
    for (let i = 0; i < 4; i++) {
      expect(Buffer.from(open('C', otherId, otherSealed, dataKey, opts)).equals(other)).toBe(true);
      expect(Buffer.from(open('C', id, sealed, dataKey, opts)).equals(text)).toBe(true);
    }
    // Exactly the largest plaintext allowed fits; one byte less allowed is refused.
    expect(Buffer.from(open('C', id, sealZstdPayload(id, frame), dataKey, opts)).equals(text)).toBe(true);
    expect(failure(() => open('C', id, sealZstdPayload(id, frame), dataKey, { ...opts, maxPlainBytes: text.length - 1 }))).toBe('decompression');
    // A buffer too small to hold the largest plaintext is not used.
    const small = Buffer.alloc(10);
    expect(Buffer.from(open('C', id, sealed, dataKey, { idKey, maxPlainBytes: text.length, into: small })).equals(text)).toBe(true);
  });

  it('opens an object of a large limit (a manifest) into a buffer of the size its frame declares', () => {
    const id = 'manifest-id';
    const { sealed } = seal('C', id, text, dataKey, 3); // the kind does not matter here, the limit does
    const plain = open('C', id, sealed, dataKey, { maxPlainBytes: 256 * 1024 * 1024 });
    expect(Buffer.from(plain).equals(text)).toBe(true);
    expect(plain.buffer.byteLength).toBeLessThanOrEqual(text.length + 1); // not an 8 MiB output step

    const frame = zstdCompressSync(text);
    expect(zstdContentSize(frame)).toBe(text.length);
    expect(zstdContentSize(frame.subarray(0, 5))).toBeUndefined();
    expect(zstdContentSize(text)).toBeUndefined();
    // A frame that declares a size other than its content's is refused, larger or smaller.
    for (const delta of [-1, 1]) {
      const lying = Buffer.from(frame);
      lying.writeUInt16LE(text.length - 256 + delta, 5);
      expect(zstdContentSize(lying)).toBe(text.length + delta);
      expect(failure(() => open('C', id, sealZstdPayload(id, lying), dataKey, { maxPlainBytes: 256 * 1024 * 1024 }))).toBe('decompression');
    }
  });
});
