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
import { constants as zc, createZstdCompress, createZstdDecompress, zstdCompressSync, zstdDecompressSync } from 'node:zlib';

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
  // The compressed bytes: a view of this thread's scratch buffer (kept compressor) or a buffer of their own.
  let compressed: Uint8Array | undefined;
  if (level > 0 && plain.length > 0) {
    const c = zstdCompressKept(plain, level) ?? zstdCompressSync(plain, { params: { [zc.ZSTD_c_compressionLevel]: level }, chunkSize: zstdBound(plain.length) });
    compressed = c;
    // Keep raw when compression saves under 1/32: decompressing costs more than it saves.
    if (c.length < plain.length - (plain.length >> 5)) {
      payload = c;
      flags |= FLAG_ZSTD;
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
  if (compressed && compressed.buffer !== zstdOut?.buffer) release(compressed);
  n += cipher.final().copy(out, body + n);
  cipher.getAuthTag().copy(out, body + n);
  return { sealed: out, compressed: (flags & FLAG_ZSTD) !== 0 };
}

/**
 * One zstd compressor per thread and level, kept across objects, and one output buffer it
 * compresses into. zstdCompressSync builds a stream and a compression context (its tables:
 * allocated, faulted in, freed) for every object: about half of a 64 KiB chunk's compression
 * CPU at level 1 (docs/benchmarks.md, "2026-12-07: one zstd compressor per thread"). Driven
 * through the stream's native handle as zstdCompressSync itself drives it (one `writeSync`
 * with ZSTD_e_end into an output of at least the worst case), so the frames are the same bytes;
 * zstd starts each frame afresh once the previous one ended, and declares its content size as
 * the one-shot call does. Anything unexpected (an error, a frame that did not end within the
 * output) drops the compressor and the object is compressed the old way.
 */
const compressors = new Map<number, ZstdEngine>();
/** The kept compressors' output buffer (grown as needed, up to KEPT_OUT_MAX). */
let zstdOut: Buffer | undefined;
/** Objects whose worst case is larger than this get a buffer of their own (manifests). */
const KEPT_OUT_MAX = 4 * 1024 * 1024 + 64 * 1024;

function compressor(level: number): ZstdEngine | null {
  const kept = compressors.get(level);
  if (kept) return kept;
  const stream = createZstdCompress({ params: { [zc.ZSTD_c_compressionLevel]: level } }) as unknown as { _handle?: ZstdHandle; _writeState?: unknown };
  const { _handle: handle, _writeState: state } = stream;
  if (!handle || typeof handle.writeSync !== 'function' || typeof handle.close !== 'function' || !(state instanceof Uint32Array)) return null;
  const engine: ZstdEngine = { handle, state, error: undefined, atFrameStart: true };
  handle.onerror = (message) => { engine.error = message; };
  compressors.set(level, engine);
  return engine;
}

/** One zstd frame of `plain` (a view of the thread's output buffer, valid until the next call), or undefined: use zstdCompressSync. */
function zstdCompressKept(plain: Uint8Array, level: number): Uint8Array | undefined {
  const bound = zstdBound(plain.length);
  if (bound >= MAX_OUTPUT_STEP || bound > KEPT_OUT_MAX) return undefined;
  const engine = compressor(level);
  if (!engine) return undefined;
  if (!zstdOut || zstdOut.length < bound) zstdOut = Buffer.allocUnsafeSlow(Math.max(bound, zstdOut?.length ?? 0));
  const out = zstdOut;
  engine.error = undefined;
  try {
    engine.handle.writeSync(zc.ZSTD_e_end, plain, 0, plain.byteLength, out, 0, out.length);
  } catch {
    dropCompressor(level, engine);
    return undefined;
  }
  const [outLeft = 0, inLeft = 0] = engine.state;
  // The frame ended within the output (room was left) and took all the input, without an error.
  if (engine.error !== undefined || inLeft !== 0 || outLeft === 0) {
    dropCompressor(level, engine);
    return undefined;
  }
  return out.subarray(0, out.length - outLeft);
}

function dropCompressor(level: number, engine: ZstdEngine): void {
  compressors.delete(level);
  try { engine.handle.close(); } catch { /* already closed */ }
}

/** The native side of a zstd decompressor (Node's zlib internals, Node 24). */
interface ZstdHandle {
  onerror: (message: string, errno: number) => void;
  reset(): void;
  close(): void;
  writeSync(flush: number, input: Uint8Array, inOff: number, inLen: number, out: Uint8Array, outOff: number, outLen: number): void;
}

interface ZstdEngine {
  readonly handle: ZstdHandle;
  readonly state: Uint32Array;
  error: string | undefined;
  /** The context is at a frame's start: new, or its last frame ended whole (no reset needed). */
  atFrameStart: boolean;
}

/**
 * One zstd decompressor per thread, kept across objects. zstdDecompressSync builds a stream,
 * creates a decompression context (its window buffers: mmap, page faults, munmap) and closes
 * it for every object: ~0.09 CPU-ms of a 256 KiB chunk's ~0.11 here. Node's public API has no
 * way to keep one (the sync call closes its stream), so this drives the stream's native handle
 * as zlib.js's own sync path does (`_handle.writeSync`, results in `_writeState`); a Node
 * without them gets zstdDecompressSync (envelope.unit.spec sees it: its plaintext is not a view
 * of `into`). The handle is dropped after an error and reset before a frame unless the previous
 * frame ended whole, so nothing carries from one object to the next. A frame that returns without
 * an error ended whole (Node reports a frame cut short as "unexpected end of file"), and zstd
 * starts the next frame afresh from there. A reset makes a new context (ZSTD_createDCtx): 10-28 µs of
 * CPU, about 2,750 times per restore of the 2 GiB benchmark disk (docs/benchmarks.md, "2026-12-07:
 * the restore's chunk phase").
 */
let zstd: ZstdEngine | null | undefined;

function zstdEngine(): ZstdEngine | null {
  if (zstd !== undefined) return zstd;
  const stream = createZstdDecompress() as unknown as { _handle?: ZstdHandle; _writeState?: unknown };
  const { _handle: handle, _writeState: state } = stream;
  if (!handle || typeof handle.writeSync !== 'function' || typeof handle.reset !== 'function' || typeof handle.close !== 'function' || !(state instanceof Uint32Array)) return (zstd = null);
  const engine: ZstdEngine = { handle, state, error: undefined, atFrameStart: true };
  handle.onerror = (message) => { engine.error = message; };
  return (zstd = engine);
}

/** Closes a handle that failed; the next object gets a new one. */
function dropZstd(engine: ZstdEngine): void {
  zstd = undefined;
  try { engine.handle.close(); } catch { /* already closed */ }
}

/**
 * Decompresses one zstd frame into `out` (which must have room for more than the largest
 * plaintext allowed): its plaintext, a view of `out` (a new buffer where Node offers no handle
 * to reuse). Throws on anything but exactly one whole frame that fits.
 */
function zstdFrameInto(payload: Uint8Array, out: Buffer, maxPlainBytes: number): Buffer {
  const engine = zstdEngine();
  if (!engine) return zstdDecompressSync(payload, { maxOutputLength: maxPlainBytes, chunkSize: out.length });
  engine.error = undefined;
  try {
    if (!engine.atFrameStart) engine.handle.reset();
    engine.atFrameStart = false;
    engine.handle.writeSync(zc.ZSTD_e_end, payload, 0, payload.byteLength, out, 0, out.length);
  } catch (e) {
    dropZstd(engine);
    throw e;
  }
  const [outLeft = 0, inLeft = 0] = engine.state;
  const produced = out.length - outLeft;
  let why: string | undefined = engine.error;
  if (why === undefined && inLeft !== 0) why = `${inLeft} bytes after the frame`;
  if (why === undefined && produced > maxPlainBytes) why = `more than ${maxPlainBytes} bytes`;
  if (why !== undefined) {
    if (engine.error !== undefined) dropZstd(engine);
    throw new Error(why);
  }
  engine.atFrameStart = true;
  return out.subarray(0, produced);
}

/**
 * The content size a zstd frame's header declares (RFC 8878, 3.1.1.1), if it declares one
 * (zstd checks the frame against it while decompressing).
 */
export function zstdContentSize(frame: Uint8Array): number | undefined {
  const b = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
  if (b.length < 6 || b.readUInt32LE(0) !== 0xfd2fb528) return undefined;
  const fhd = b[4] ?? 0;
  const singleSegment = (fhd & 0x20) !== 0;
  const fcsBytes = [singleSegment ? 1 : 0, 2, 4, 8][fhd >> 6] ?? 0;
  if (fcsBytes === 0) return undefined;
  const at = 5 + (singleSegment ? 0 : 1) + ([0, 1, 2, 4][fhd & 3] ?? 0);
  if (b.length < at + fcsBytes) return undefined;
  if (fcsBytes === 1) return b[at];
  if (fcsBytes === 2) return b.readUInt16LE(at) + 256;
  if (fcsBytes === 4) return b.readUInt32LE(at);
  const size = b.readBigUInt64LE(at);
  return size <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(size) : undefined;
}

/**
 * Opens a sealed object, checking everything: envelope shape, authentication, decompression,
 * and (when `idKey` is given) that the plaintext hashes to `id`. Throws `EnvelopeError`.
 * `into`: a buffer of more than `maxPlainBytes` the caller reuses; a compressed object's
 * plaintext is then a view of it, valid until the next `open` into it (never `release` it).
 */
export function open(
  kind: EnvelopeKind,
  id: string,
  sealed: Uint8Array,
  dataKey: Key,
  options: { idKey?: Key; maxPlainBytes: number; into?: Buffer },
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
      // One byte more room than the largest plaintext, so a plaintext that fills it is too big
      // (with zstdDecompressSync, one that filled it exactly cost a second output buffer and call).
      const max = options.maxPlainBytes;
      if (options.into && options.into.length > max) plain = zstdFrameInto(payload, options.into, max);
      else if (max < MAX_OUTPUT_STEP) plain = zstdFrameInto(payload, Buffer.allocUnsafeSlow(max + 1), max);
      else {
        // A large limit (manifests): a buffer of the frame's own content size, not an 8 MiB
        // output step per object (dead external memory that brings a mark-compact near).
        const size = zstdContentSize(payload);
        plain = size !== undefined && size <= max ? zstdFrameInto(payload, Buffer.allocUnsafeSlow(size + 1), size)
          : zstdDecompressSync(payload, { maxOutputLength: max, chunkSize: MAX_OUTPUT_STEP });
      }
    } catch (e) {
      throw new EnvelopeError('decompression', `zstd: ${(e as Error).message}`);
    }
    release(payload);
  }
  if (options.idKey) {
    // The digest's bytes against the id's, not the digest's hex (no string per chunk).
    const actual = createHmac('sha256', options.idKey).update(plain).digest();
    const want = Buffer.from(id, 'hex');
    if (actual.length !== want.length || !timingSafeEqual(actual, want)) {
      throw new EnvelopeError('id-mismatch', 'plaintext does not hash to its id');
    }
  }
  return plain;
}
