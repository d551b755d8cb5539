// The sealed-object envelope: how a chunk, an index page or a manifest is compressed,
// encrypted and authenticated before it leaves the process. Shared by the main thread and
// the chunk workers, so it uses nothing but node:crypto and node:zlib (erasable TS only).
//
// Layout (all integers big-endian):
//   0  'C' 'R' 'N'          magic
//   3  kind                 'C' chunk | 'P' index page | 'M' manifest
//   4  version              1
//   5  flags                bit 0: payload is zstd-compressed
//   6  reserved (2 bytes)   0
//   8  payload length       u32, ciphertext bytes between nonce and tag
//  12  nonce                12 bytes, random
//  24  ciphertext           AES-256-GCM of the (compressed) plaintext
//  ..  tag                  16 bytes
// Associated data = the 12 header bytes + the object's id (UTF-8), so an object cannot be
// swapped for another, moved to another id, or have its flags changed unnoticed.
import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';
import { constants as zc, zstdCompressSync, zstdDecompressSync } from 'node:zlib';

export const ENVELOPE_VERSION = 1;
export const HEADER_BYTES = 12;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
export const ENVELOPE_OVERHEAD = HEADER_BYTES + NONCE_BYTES + TAG_BYTES;
const FLAG_ZSTD = 1;
/** Largest single output buffer zstd gets (objects bigger than this grow in steps). */
const MAX_OUTPUT_STEP = 8 * 1024 * 1024;

/** Room for zstd's worst case (ZSTD_compressBound plus slack), capped like decompression. */
const zstdBound = (n: number): number => Math.max(64, Math.min(n + (n >> 7) + 1024, MAX_OUTPUT_STEP));

export type EnvelopeKind = 'C' | 'P' | 'M';

/** Raw key bytes, or a KeyObject made once (`createSecretKey`): cheaper per object on hot paths. */
export type Key = Uint8Array | KeyObject;

export type OpenFailure = 'truncated' | 'malformed' | 'authentication' | 'decompression' | 'id-mismatch';

export class EnvelopeError extends Error {
  // A plain field, not a parameter property: this module runs under Node's type stripping.
  readonly failure: OpenFailure;
  constructor(failure: OpenFailure, message: string) {
    super(message);
    this.failure = failure;
    this.name = 'EnvelopeError';
  }
}

/**
 * Frees a buffer this module made and no longer needs now (detaching its memory), not when the
 * garbage collector gets to it: V8 collects dead ArrayBuffers only after external memory grew by
 * ~64 MiB, so each thread sealing or opening 256 KiB chunks otherwise holds tens of MiB of
 * dead zstd and cipher outputs (issue 20: the stack's peak RSS). Never a buffer of the shared
 * pool (those are exactly Buffer.poolSize bytes) nor one that does not start its memory.
 */
export function release(b: Uint8Array): void {
  const ab = b.buffer as ArrayBuffer & { readonly detached?: boolean; transfer?: (length: number) => ArrayBuffer };
  if (b.byteOffset === 0 && ab instanceof ArrayBuffer && ab.byteLength > Buffer.poolSize && !ab.detached) ab.transfer?.(0);
}

/** Keyed content id: HMAC-SHA-256 under the repository's id key, as 64 hex chars. */
export function contentId(idKey: Key, data: Uint8Array): string {
  return createHmac('sha256', idKey).update(data).digest('hex');
}

/** Seals `plain`; compresses first (zstd at `level`) unless that does not pay. */
export function seal(
  kind: EnvelopeKind,
  id: string,
  plain: Uint8Array,
  dataKey: Key,
  level: number,
): { sealed: Uint8Array; compressed: boolean } {
  let payload: Uint8Array = plain;
  let flags = 0;
  if (level > 0 && plain.length > 0) {
    // One output buffer big enough for the worst case: zlib's default 16 KiB output steps
    // cost ~15x in throughput on a 256 KiB chunk (many native calls, then a concat).
    const c = zstdCompressSync(plain, { params: { [zc.ZSTD_c_compressionLevel]: level }, chunkSize: zstdBound(plain.length) });
    // Keep raw when compression saves under 1/32: decompressing costs more than it saves.
    if (c.length < plain.length - (plain.length >> 5)) {
      payload = c;
      flags |= FLAG_ZSTD;
    } else {
      release(c);
    }
  }
  // allocUnsafeSlow: never the shared pool, so workers can transfer `out.buffer` whole.
  const out = Buffer.allocUnsafeSlow(ENVELOPE_OVERHEAD + payload.length);
  out[0] = 0x43; out[1] = 0x52; out[2] = 0x4e;
  out[3] = kind.charCodeAt(0);
  out[4] = ENVELOPE_VERSION;
  out[5] = flags;
  out[6] = 0; out[7] = 0;
  out.writeUInt32BE(payload.length, 8);
  const nonce = randomBytes(NONCE_BYTES);
  nonce.copy(out, HEADER_BYTES);
  const cipher = createCipheriv('aes-256-gcm', dataKey, nonce);
  cipher.setAAD(Buffer.concat([out.subarray(0, HEADER_BYTES), Buffer.from(id, 'utf8')]));
  const body = HEADER_BYTES + NONCE_BYTES;
  const encrypted = cipher.update(payload);
  let n = encrypted.copy(out, body);
  release(encrypted);
  if (payload !== plain) release(payload);
  n += cipher.final().copy(out, body + n);
  cipher.getAuthTag().copy(out, body + n);
  return { sealed: out, compressed: (flags & FLAG_ZSTD) !== 0 };
}

/**
 * Opens a sealed object, checking everything: envelope shape, authentication, decompression,
 * and (when `idKey` is given) that the plaintext hashes to `id`. Throws `EnvelopeError`.
 */
export function open(
  kind: EnvelopeKind,
  id: string,
  sealed: Uint8Array,
  dataKey: Key,
  options: { idKey?: Key; maxPlainBytes: number },
): Uint8Array {
  const buf = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  if (buf.length < HEADER_BYTES) throw new EnvelopeError('truncated', `only ${buf.length} bytes, shorter than the header`);
  if (buf[0] !== 0x43 || buf[1] !== 0x52 || buf[2] !== 0x4e) throw new EnvelopeError('malformed', 'bad magic');
  if (buf[3] !== kind.charCodeAt(0)) throw new EnvelopeError('malformed', `object kind ${String.fromCharCode(buf[3] ?? 0)}, expected ${kind}`);
  if (buf[4] !== ENVELOPE_VERSION) throw new EnvelopeError('malformed', `envelope version ${buf[4]} unsupported`);
  const payloadLength = buf.readUInt32BE(8);
  const expected = ENVELOPE_OVERHEAD + payloadLength;
  if (buf.length < expected) throw new EnvelopeError('truncated', `${buf.length} bytes, header says ${expected}`);
  if (buf.length > expected) throw new EnvelopeError('malformed', `${buf.length} bytes, header says ${expected}`);
  const flags = buf[5] ?? 0;
  const body = HEADER_BYTES + NONCE_BYTES;
  const decipher = createDecipheriv('aes-256-gcm', dataKey, buf.subarray(HEADER_BYTES, body));
  decipher.setAAD(Buffer.concat([buf.subarray(0, HEADER_BYTES), Buffer.from(id, 'utf8')]));
  decipher.setAuthTag(buf.subarray(body + payloadLength));
  let payload: Buffer;
  try {
    const decrypted = decipher.update(buf.subarray(body, body + payloadLength));
    const rest = decipher.final(); // empty for GCM, a stream mode
    payload = rest.length ? Buffer.concat([decrypted, rest]) : decrypted;
    if (payload !== decrypted) release(decrypted);
  } catch {
    throw new EnvelopeError('authentication', 'authentication tag mismatch (content altered or wrong key)');
  }
  let plain: Uint8Array = payload;
  if (flags & FLAG_ZSTD) {
    try {
      // One byte more room than the largest plaintext: a plaintext that fills the output buffer
      // exactly (every full chunk) made Node's zlib allocate a second buffer of that size and
      // call zstd again to see the end, ~2x the CPU per chunk and 256 KiB of garbage each.
      plain = zstdDecompressSync(payload, { maxOutputLength: options.maxPlainBytes, chunkSize: Math.max(64, Math.min(options.maxPlainBytes + 1, MAX_OUTPUT_STEP)) });
    } catch (e) {
      throw new EnvelopeError('decompression', `zstd: ${(e as Error).message}`);
    }
    release(payload);
  }
  if (options.idKey) {
    const actual = Buffer.from(contentId(options.idKey, plain), 'hex');
    const want = Buffer.from(id, 'hex');
    if (actual.length !== want.length || !timingSafeEqual(actual, want)) {
      throw new EnvelopeError('id-mismatch', 'plaintext does not hash to its id');
    }
  }
  return plain;
}
