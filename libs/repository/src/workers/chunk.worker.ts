// Chunk worker thread: hashes, compresses + encrypts, and opens chunks so every core works.
// Loaded by `new Worker(new URL(...))` as a .ts file through Node's type stripping, so it
// (and everything it imports) uses erasable TypeScript only.
import { createSecretKey } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { contentId, EnvelopeError, open, release, seal } from '../format/envelope.ts';
import { chunkSubpath, isContentId } from '../format/layout.ts';
import type { ChunkFailure, ChunkRange, OpenedFile, WorkerInit, WorkerReply, WorkerRequest } from './chunk-protocol.ts';

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

const outOfRange = (id: string, range: ChunkRange, size: number): ChunkFailure =>
  ({ failure: 'malformed', message: `chunk ${id}: the index asks for bytes ${range.from}+${range.length} of ${size}` });

/**
 * Where a chunk opened only to be written to a file is decompressed: one buffer per thread, so
 * a restore makes no 256 KiB of garbage per chunk. Its plaintext lives until the next open.
 */
const plainBuf = Buffer.allocUnsafeSlow(init.maxPlainBytes + 1);
/** A second such buffer (made on first use): a batch opens its next chunk while one waits to be written. */
let plainBuf2: Buffer | undefined;
/** `release`, except for views of `plainBuf` or `plainBuf2` (reused, never freed). */
const releasePlain = (plain: Uint8Array): void => { if (plain.buffer !== plainBuf.buffer && plain.buffer !== plainBuf2?.buffer) release(plain); };

/** Reads and opens (id checked) one chunk of a local file: its plaintext, or what went wrong (damage); any other failure throws. */
function openFile(id: string, path: string, into: Buffer = plainBuf): Uint8Array | ChunkFailure {
  const sealed = readSealedOrWhy(path);
  if (typeof sealed === 'string') return { unreadable: sealed };
  try {
    return open('C', id, sealed, dataKey, { maxPlainBytes: init.maxPlainBytes, idKey, into });
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

/**
 * The pool's write locks (WorkerInit.writeLocks): word `fd % length` is the lock of target `fd`,
 * 0 free, 1 taken, 2 taken with a worker waiting (a futex mutex on Atomics).
 */
const writeLocks = init.writeLocks ? new Int32Array(init.writeLocks) : undefined;
/**
 * How long a worker waits for a target's write lock before it takes it anyway: the lock only
 * spares the kernel's inode lock a sleeper (the kernel's lock keeps the writes correct), so a
 * holder that died with it (a worker terminated mid-write) costs the next writer this once.
 */
const WRITE_LOCK_WAIT_MS = 50;
/** How long a worker spins for a taken write lock before it sleeps: about two chunks' writes into the page cache. */
const WRITE_LOCK_SPIN_MS = 0.2;

/** Takes target `fd`'s write lock if it is free (always true without locks). */
function tryLockWrites(fd: number): boolean {
  return !writeLocks || Atomics.compareExchange(writeLocks, fd % writeLocks.length, 0, 1) === 0;
}

/** Waits for target `fd`'s write lock and takes it (after WRITE_LOCK_WAIT_MS whoever holds it). */
function lockWrites(fd: number): void {
  if (!writeLocks) return;
  const at = fd % writeLocks.length;
  let c = Atomics.compareExchange(writeLocks, at, 0, 1);
  if (c === 0) return;
  // The holder is most likely in the middle of a write (tens of µs): spin for it first, as the
  // kernel does for its own locks while their owner runs; sleep only on a longer hold.
  const spinUntil = performance.now() + WRITE_LOCK_SPIN_MS;
  while (performance.now() < spinUntil) {
    if (Atomics.load(writeLocks, at) === 0 && (c = Atomics.compareExchange(writeLocks, at, 0, 1)) === 0) return;
  }
  const deadline = performance.now() + WRITE_LOCK_WAIT_MS;
  if (c !== 2) c = Atomics.exchange(writeLocks, at, 2);
  while (c !== 0) {
    const left = deadline - performance.now();
    if (left <= 0) return; // taken over: the word says 2, this worker holds it now
    Atomics.wait(writeLocks, at, 2, left);
    c = Atomics.exchange(writeLocks, at, 2);
  }
}

function unlockWrites(fd: number): void {
  if (!writeLocks) return;
  const at = fd % writeLocks.length;
  // 1: nobody waits. Otherwise (2, or a word a taken-over lock's late unlock left off) free it and wake one.
  if (Atomics.sub(writeLocks, at, 1) !== 1) {
    Atomics.store(writeLocks, at, 0);
    Atomics.notify(writeLocks, at, 1);
  }
}

/** A chunk a batch opened: its plaintext (or why not), and the writes of it not yet made. */
interface OpenedChunk { readonly id: string; readonly opened: Uint8Array | ChunkFailure; pending: number; dropped: boolean }

/**
 * A batch of chunks opened from their files and written to one target (`openFilesTo`). Two
 * workers writing one file meet on its inode lock, and one that finds it taken sleeps until the
 * holder's write ends, longer when the holder lost its core meanwhile (85 such sleeps per
 * restore at load 8-22, docs/benchmarks.md "the restore's chunk phase"). So the workers take a
 * lock of their own around their writes first, without waiting: a worker that finds it taken
 * keeps the chunk's plaintext, opens the next chunk into its second buffer and writes both
 * once it holds the lock; only with two chunks waiting does it wait for the lock.
 */
function openFilesTo(msg: Extract<WorkerRequest, { op: 'openFilesTo' }>): Extract<WorkerReply, { op: 'openFilesTo' }> {
  const { fd, positions, ranges } = msg;
  const bytes = new Float64Array(msg.ids.length);
  let failures: Array<readonly [number, ChunkFailure]> | undefined;
  const failed = (i: number, why: ChunkFailure) => { bytes[i] = -1; (failures ??= []).push([i, why]); };
  const writes: Array<{ chunk: OpenedChunk; part: Uint8Array; position: number }> = [];
  /** Distinct chunks in `writes`. */
  let waiting = 0;
  const free = (chunk: OpenedChunk) => { if (chunk.opened instanceof Uint8Array) releasePlain(chunk.opened); };
  const flush = () => {
    for (let w = writes.shift(); w; w = writes.shift()) {
      writeAt(fd, w.part, w.position);
      if (--w.chunk.pending === 0 && w.chunk.dropped) free(w.chunk);
    }
    waiting = 0;
  };
  /** Writes what waits once this worker holds the target's lock; without `wait`, only if it is free now. */
  const flushLocked = (wait: boolean) => {
    if (wait) lockWrites(fd);
    else if (!tryLockWrites(fd)) return;
    try { flush(); } finally { unlockWrites(fd); }
  };
  // The last chunk opened stays open while the next items name it (pieces of one slot).
  let last: OpenedChunk | undefined;
  const drop = () => {
    if (!last) return;
    last.dropped = true;
    if (last.pending === 0) free(last);
    last = undefined;
  };
  try {
    for (let i = 0; i < msg.ids.length; i++) {
      const id = msg.ids[i]!;
      if (last?.id !== id) {
        drop();
        // The buffer the waiting chunk (at most one) does not hold.
        const held = writes[0]?.chunk.opened;
        const into = held instanceof Uint8Array && held.buffer === plainBuf.buffer ? (plainBuf2 ??= Buffer.allocUnsafeSlow(plainBuf.length)) : plainBuf;
        // Not a content id (a damaged index): no path of it here; the caller's backend read says what is wrong.
        const opened = isContentId(id) ? openFile(id, `${msg.dir}/${chunkSubpath(id)}`, into) : { unreadable: `not a chunk id: ${JSON.stringify(id)}` };
        last = { id, opened, pending: 0, dropped: false };
      }
      const chunk = last;
      if (!(chunk.opened instanceof Uint8Array)) { failed(i, chunk.opened); continue; }
      const range = ranges && ranges[2 * i]! >= 0 ? { from: ranges[2 * i]!, length: ranges[2 * i + 1]! } : null;
      const part = ranged(chunk.opened, range);
      if (part === null) { failed(i, outOfRange(id, range!, chunk.opened.byteLength)); continue; }
      if (chunk.pending++ === 0) waiting++;
      writes.push({ chunk, part, position: positions[i]! });
      bytes[i] = part.byteLength;
      flushLocked(waiting > 1);
    }
    if (writes.length) flushLocked(true);
  } finally {
    for (const w of writes.splice(0)) if (--w.chunk.pending === 0 && w.chunk.dropped) free(w.chunk); // a write failed: the batch fails
    drop();
  }
  return failures ? { seq: msg.seq, op: 'openFilesTo', bytes, failures } : { seq: msg.seq, op: 'openFilesTo', bytes };
}

const port = parentPort;
if (!port) throw new Error('chunk.worker.ts must run as a worker thread');

port.on('message', (msg: WorkerRequest) => {
  let reply: WorkerReply;
  let transfer: ArrayBuffer[] = [];
  try {
    if (msg.op === 'openFilesTo') {
      const done = openFilesTo(msg);
      port.postMessage(done, [done.bytes.buffer as ArrayBuffer]);
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
