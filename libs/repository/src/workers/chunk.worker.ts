// Chunk worker thread: hashes, compresses + encrypts, and opens chunks so every core works.
// Loaded by `new Worker(new URL(...))` as a .ts file through Node's type stripping, so it
// (and everything it imports) uses erasable TypeScript only.
import { createSecretKey } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { contentId, EnvelopeError, open, release, seal } from '../format/envelope.ts';
import type { ChunkRange, OpenedFile, WorkerInit, WorkerReply, WorkerRequest } from './chunk-protocol.ts';

const init = workerData as WorkerInit;
// KeyObjects made once: creating a cipher or HMAC from raw bytes prepares the key every time.
const dataKey = createSecretKey(Buffer.from(init.dataKey));
const idKey = createSecretKey(Buffer.from(init.idKey));
let zeros = Buffer.alloc(0);

function isZero(b: Buffer): boolean {
  if (zeros.length < b.length) zeros = Buffer.alloc(b.length);
  return b.equals(zeros.subarray(0, b.length));
}

/** Hands `b`'s memory over whole when it owns it; otherwise copies into a fresh buffer. */
function transferable(b: Uint8Array): ArrayBuffer {
  if (b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer) return b.buffer;
  return new Uint8Array(b).buffer as ArrayBuffer;
}

/** The sealed chunk of a local file, in one buffer this thread reuses (opening never returns a view of it). */
let sealedBuf = Buffer.allocUnsafeSlow(0);
function readSealed(path: string): Buffer {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    if (sealedBuf.length < size) sealedBuf = Buffer.allocUnsafeSlow(size);
    let done = 0;
    while (done < size) {
      const n = readSync(fd, sealedBuf, done, size - done, done);
      if (n === 0) break; // shorter than fstat said: opening reports it truncated
      done += n;
    }
    return sealedBuf.subarray(0, done);
  } finally {
    closeSync(fd);
  }
}

/** The sealed chunk, or why its file could not be read. */
function readSealedOrWhy(path: string): Buffer | string {
  try {
    return readSealed(path);
  } catch (e) {
    return (e as Error).message;
  }
}

/** Writes all of `plain` at `position` of `fd`. */
function writeAt(fd: number, plain: Uint8Array, position: number): void {
  // Synchronous on purpose: this thread has nothing else to do meanwhile, and a write into
  // the page cache takes microseconds (an asynchronous one would cost more in dispatch).
  for (let done = 0; done < plain.byteLength;) done += writeSync(fd, plain, done, plain.byteLength - done, position + done);
}

/** The part of `plain` a range names (all of it without one); null when the range does not fit. */
function ranged(plain: Uint8Array, range: ChunkRange | null | undefined): Uint8Array | null {
  if (!range) return plain;
  if (range.from < 0 || range.length < 0 || range.from + range.length > plain.byteLength) return null;
  return plain.subarray(range.from, range.from + range.length);
}

const outOfRange = (id: string, range: ChunkRange, size: number): OpenedFile =>
  ({ failure: 'malformed', message: `chunk ${id}: the index asks for bytes ${range.from}+${range.length} of ${size}` });

/**
 * Where a chunk opened only to be written to a file is decompressed: one buffer per thread, so
 * a restore makes no 256 KiB of garbage per chunk. Its plaintext lives until the next open.
 */
const plainBuf = Buffer.allocUnsafeSlow(init.maxPlainBytes + 1);
/** `release`, except for views of `plainBuf` (reused, never freed). */
const releasePlain = (plain: Uint8Array): void => { if (plain.buffer !== plainBuf.buffer) release(plain); };

/** Reads and opens (id checked) one chunk of a local file: its plaintext, or what went wrong (damage); any other failure throws. */
function openFile(id: string, path: string): Uint8Array | OpenedFile {
  const sealed = readSealedOrWhy(path);
  if (typeof sealed === 'string') return { unreadable: sealed };
  try {
    return open('C', id, sealed, dataKey, { maxPlainBytes: init.maxPlainBytes, idKey, into: plainBuf });
  } catch (e) {
    if (e instanceof EnvelopeError) return { failure: e.failure, message: e.message };
    throw e;
  }
}

/** The range a single-chunk request names (none: the whole plaintext). */
const rangeOf = (m: { readonly from?: number; readonly length?: number }): ChunkRange | null =>
  (m.from === undefined ? null : { from: m.from, length: m.length! });

/** `writeRange` for one chunk of its own: releases the plaintext; a range that does not fit throws as damage. */
function writeOpened(id: string, plain: Uint8Array, fd: number, position: number, range: ChunkRange | null): number {
  try {
    const r = writeRange(id, plain, fd, position, range);
    if ('failure' in r) throw new EnvelopeError(r.failure, r.message);
    return (r as { bytes: number }).bytes;
  } finally {
    releasePlain(plain);
  }
}

/** Writes the range of an opened chunk at `position`: the bytes written, or why not. */
function writeRange(id: string, plain: Uint8Array, fd: number, position: number, range: ChunkRange | null | undefined): OpenedFile {
  const part = ranged(plain, range);
  if (part === null) return outOfRange(id, range!, plain.byteLength);
  writeAt(fd, part, position);
  return { bytes: part.byteLength };
}

const port = parentPort;
if (!port) throw new Error('chunk.worker.ts must run as a worker thread');

port.on('message', (msg: WorkerRequest) => {
  let reply: WorkerReply;
  let transfer: ArrayBuffer[] = [];
  try {
    if (msg.op === 'openFilesTo') {
      const results: OpenedFile[] = [];
      // The last chunk opened stays open while the next items name it (pieces of one slot).
      let last: { id: string; opened: Uint8Array | OpenedFile } | undefined;
      const drop = () => { if (last && last.opened instanceof Uint8Array) releasePlain(last.opened); last = undefined; };
      try {
        for (let i = 0; i < msg.ids.length; i++) {
          const id = msg.ids[i]!;
          if (last?.id !== id) { drop(); last = { id, opened: openFile(id, msg.paths[i]!) }; }
          const { opened } = last;
          results.push(opened instanceof Uint8Array ? writeRange(id, opened, msg.fd, msg.positions[i]!, msg.ranges?.[i]) : opened);
        }
      } finally {
        drop();
      }
      port.postMessage({ seq: msg.seq, op: 'openFilesTo', results } satisfies WorkerReply);
      return;
    }
    if (msg.op === 'openFileTo') {
      const sealed = readSealedOrWhy(msg.path);
      let done: WorkerReply;
      if (typeof sealed === 'string') {
        done = { seq: msg.seq, op: 'openFileTo', bytes: null, unreadable: sealed };
      } else {
        const plain = open('C', msg.id, sealed, dataKey, { maxPlainBytes: init.maxPlainBytes, idKey, into: plainBuf });
        done = { seq: msg.seq, op: 'openFileTo', bytes: writeOpened(msg.id, plain, msg.fd, msg.position, rangeOf(msg)) };
      }
      port.postMessage(done);
      return;
    }
    const data = Buffer.from(msg.buf, 0, msg.len);
    if (msg.op === 'hash') {
      const id = isZero(data) ? null : contentId(idKey, data);
      reply = { seq: msg.seq, op: 'hash', id, buf: msg.buf };
      transfer = [msg.buf];
    } else if (msg.op === 'hashSeal') {
      const id = isZero(data) ? null : contentId(idKey, data);
      const out = id === null ? null : transferable(seal('C', id, data, dataKey, init.level).sealed);
      reply = { seq: msg.seq, op: 'hashSeal', id, sealed: out, buf: msg.buf };
      transfer = out ? [out, msg.buf] : [msg.buf];
    } else if (msg.op === 'seal') {
      const { sealed, compressed } = seal(msg.kind, msg.id, data, dataKey, init.level);
      const out = transferable(sealed);
      reply = { seq: msg.seq, op: 'seal', sealed: out, compressed, buf: msg.buf };
      transfer = [out, msg.buf];
    } else if (msg.op === 'openTo') {
      const plain = open('C', msg.id, data, dataKey, { maxPlainBytes: init.maxPlainBytes, idKey, into: plainBuf });
      reply = { seq: msg.seq, op: 'openTo', bytes: writeOpened(msg.id, plain, msg.fd, msg.position, rangeOf(msg)) };
    } else {
      const plain = open(msg.kind, msg.id, data, dataKey, {
        maxPlainBytes: init.maxPlainBytes,
        ...(msg.checkId ? { idKey } : {}),
      });
      const out = transferable(plain);
      if (out !== plain.buffer) release(plain);
      reply = { seq: msg.seq, op: 'open', plain: out };
      transfer = [out];
    }
  } catch (e) {
    reply = e instanceof EnvelopeError
      ? { seq: msg.seq, op: 'error', failure: e.failure, message: e.message }
      : { seq: msg.seq, op: 'error', failure: 'internal', message: (e as Error).message };
  }
  port.postMessage(reply, transfer);
});
