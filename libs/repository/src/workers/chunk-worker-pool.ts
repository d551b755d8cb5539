// A pool of chunk workers, one per core: the main thread reads and uploads while the
// workers hash, compress, encrypt and open. Workers keep the process alive only while
// they have work, so a forgotten `close()` never hangs a CLI.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { EnvelopeError, type EnvelopeKind } from '../format/envelope.ts';
import type { ChunkFailure, ChunkRange, WorkerInit, WorkerReply, WorkerRequest } from './chunk-protocol.ts';

interface Pending {
  resolve(reply: WorkerReply): void;
  reject(error: Error): void;
}

interface Slot {
  worker: Worker;
  inFlight: Map<number, Pending>;
}

/** Memory a worker may take over: the whole ArrayBuffer when `u8` owns it, else a copy. */
export function ownedBuffer(u8: Uint8Array): ArrayBuffer {
  if (u8.byteOffset === 0 && u8.byteLength === u8.buffer.byteLength && u8.buffer instanceof ArrayBuffer) return u8.buffer;
  return new Uint8Array(u8).buffer as ArrayBuffer;
}

/**
 * The worker's code: the TypeScript source beside this module, or, when this module was
 * bundled into a `.mjs` (tools/bench/src/bundle.ts), the worker bundle beside that file.
 */
const WORKER_URL = new URL(import.meta.url.endsWith('.ts') ? './chunk.worker.ts' : './chunk.worker.mjs', import.meta.url);

/** Write-lock slots shared by a pool's workers (a target's slot: its descriptor modulo this). */
const WRITE_LOCK_SLOTS = 64;

/** Spare buffers kept per size: enough for every chunk in flight, bounded whatever happens. */
const MAX_SPARES = 64;

export class ChunkWorkerPool {
  private readonly slots: Slot[] = [];
  /** Buffers of `borrow()`: they travel to a worker and come back, so memory is not faulted in per chunk. */
  private readonly pooled = new WeakSet<ArrayBuffer>();
  private readonly spares = new Map<number, ArrayBuffer[]>();
  private seq = 0;
  private outstanding = 0;
  private closed = false;
  /** The workers' shared write locks (WorkerInit.writeLocks: one Int32 word per slot, 0 when free). */
  readonly writeLocks = new SharedArrayBuffer(WRITE_LOCK_SLOTS * 4);

  constructor(
    private readonly init: WorkerInit,
    readonly size = Math.max(1, availableParallelism()),
  ) {}

  private spawn(): Slot {
    const worker = new Worker(WORKER_URL, { workerData: { ...this.init, writeLocks: this.writeLocks } satisfies WorkerInit });
    const slot: Slot = { worker, inFlight: new Map() };
    worker.unref();
    worker.on('message', (reply: WorkerReply) => {
      const p = slot.inFlight.get(reply.seq);
      if (!p) return;
      slot.inFlight.delete(reply.seq);
      this.settled();
      p.resolve(reply);
    });
    const fail = (error: Error) => {
      const idx = this.slots.indexOf(slot);
      if (idx >= 0) this.slots.splice(idx, 1);
      for (const p of slot.inFlight.values()) {
        this.settled();
        p.reject(new Error(`chunk worker failed: ${error.message}`, { cause: error }));
      }
      slot.inFlight.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => { if (!this.closed) fail(new Error(`chunk worker exited with code ${code}`)); });
    this.slots.push(slot);
    return slot;
  }

  private settled(): void {
    this.outstanding--;
    if (this.outstanding === 0) for (const s of this.slots) s.worker.unref();
  }

  private pick(): Slot {
    if (this.slots.length < this.size) return this.spawn();
    let best = this.slots[0] as Slot;
    for (const s of this.slots) if (s.inFlight.size < best.inFlight.size) best = s;
    return best;
  }

  private run(build: (seq: number) => WorkerRequest, transfer: ArrayBuffer[]): Promise<WorkerReply> {
    if (this.closed) return Promise.reject(new Error('chunk worker pool is closed'));
    const slot = this.pick();
    const seq = ++this.seq;
    if (this.outstanding++ === 0) for (const s of this.slots) s.worker.ref();
    slot.worker.ref();
    return new Promise<WorkerReply>((resolve, reject) => {
      slot.inFlight.set(seq, { resolve, reject });
      slot.worker.postMessage(build(seq), transfer);
    }).then((reply) => {
      if (reply.op === 'error') {
        if (reply.failure === 'internal') throw new Error(`chunk worker: ${reply.message}`);
        throw new EnvelopeError(reply.failure, reply.message);
      }
      return reply;
    });
  }

  /**
   * A buffer of `len` bytes (contents undefined) from the spares. Hand it to `hash`,
   * `hashSeal` or `seal`: it comes back to the spares when the worker is done with it.
   */
  borrow(len: number, capacity = len): Uint8Array {
    const buf = this.spares.get(capacity)?.pop() ?? new ArrayBuffer(capacity);
    this.pooled.add(buf);
    return new Uint8Array(buf, 0, len);
  }

  /** Returns a borrowed buffer that no worker needs any more (e.g. a chunk found to be known). */
  recycle(data: Uint8Array): void {
    const buf = data.buffer;
    if (!(buf instanceof ArrayBuffer) || !this.pooled.has(buf) || buf.byteLength === 0) return;
    this.spare(buf);
  }

  private spare(buf: ArrayBuffer): void {
    let list = this.spares.get(buf.byteLength);
    if (!list) { list = []; this.spares.set(buf.byteLength, list); }
    if (list.length < MAX_SPARES) list.push(buf);
  }

  /** What to transfer for `data`: a borrowed buffer whole (with the data's length), else `ownedBuffer`. */
  private transferOf(data: Uint8Array): { buf: ArrayBuffer; len: number; pooled: boolean } {
    const b = data.buffer;
    if (data.byteOffset === 0 && b instanceof ArrayBuffer && this.pooled.has(b)) return { buf: b, len: data.byteLength, pooled: true };
    const buf = ownedBuffer(data);
    return { buf, len: buf.byteLength, pooled: false };
  }

  /** A buffer back from a worker is a new object in this isolate: pool it again if it was pooled. */
  private returned(buf: ArrayBuffer, pooled: boolean): ArrayBuffer {
    if (pooled) this.pooled.add(buf);
    return buf;
  }

  /**
   * Starts every worker now (those not running yet), so that their start-up (an isolate, the
   * worker's modules: a few hundred ms on a loaded machine) overlaps what a backup does before its
   * first chunk (NBD connect, block status, the first read) instead of following it. Started
   * workers keep the process alive only while they have work, as always.
   */
  warm(): void {
    if (this.closed) return;
    while (this.slots.length < this.size) this.spawn();
  }

  /** Id of a chunk (`null` when all zero). `data` is handed to the worker and back. */
  async hash(data: Uint8Array): Promise<{ id: string | null; data: Uint8Array }> {
    const { buf, len, pooled } = this.transferOf(data);
    const r = await this.run((seq) => ({ seq, op: 'hash', buf, len }), [buf]);
    if (r.op !== 'hash') throw new Error(`unexpected worker reply ${r.op}`);
    return { id: r.id, data: new Uint8Array(this.returned(r.buf, pooled), 0, len) };
  }

  /** Id and sealed chunk in one trip (`data` consumed): for runs where most chunks are new. */
  async hashSeal(data: Uint8Array): Promise<{ id: string | null; sealed: Uint8Array | null }> {
    const { buf, len, pooled } = this.transferOf(data);
    const r = await this.run((seq) => ({ seq, op: 'hashSeal', buf, len }), [buf]);
    if (r.op !== 'hashSeal') throw new Error(`unexpected worker reply ${r.op}`);
    if (pooled) this.spare(this.returned(r.buf, true));
    return { id: r.id, sealed: r.sealed ? new Uint8Array(r.sealed) : null };
  }

  /** Compresses and encrypts `data` (consumed). */
  async seal(kind: EnvelopeKind, id: string, data: Uint8Array): Promise<{ sealed: Uint8Array; compressed: boolean }> {
    const { buf, len, pooled } = this.transferOf(data);
    const r = await this.run((seq) => ({ seq, op: 'seal', kind, id, buf, len }), [buf]);
    if (r.op !== 'seal') throw new Error(`unexpected worker reply ${r.op}`);
    if (pooled) this.spare(this.returned(r.buf, true));
    return { sealed: new Uint8Array(r.sealed), compressed: r.compressed };
  }

  /** Opens a sealed object (consumed); throws `EnvelopeError` on any damage. */
  async open(kind: EnvelopeKind, id: string, sealed: Uint8Array, checkId: boolean): Promise<Uint8Array> {
    const { buf, len } = this.transferOf(sealed);
    const r = await this.run((seq) => ({ seq, op: 'open', kind, id, buf, len, checkId }), [buf]);
    if (r.op !== 'open') throw new Error(`unexpected worker reply ${r.op}`);
    return new Uint8Array(r.plain);
  }

  /** Opens a sealed chunk (consumed, id checked) and writes its plaintext at `position` of `fd`; resolves to the bytes written. */
  async openTo(id: string, sealed: Uint8Array, fd: number, position: number, range?: ChunkRange): Promise<number> {
    const { buf, len } = this.transferOf(sealed);
    const r = await this.run((seq) => ({ seq, op: 'openTo', id, buf, len, fd, position, ...range }), [buf]);
    if (r.op !== 'openTo') throw new Error(`unexpected worker reply ${r.op}`);
    return r.bytes;
  }

  /**
   * Reads the sealed chunk from the local file `path` in a worker, opens it there and writes the
   * plaintext at `position` of `fd`. Null when the file could not be read (missing, no access):
   * the caller then reads the object through its backend, which says what is wrong with it.
   */
  async openFileTo(id: string, path: string, fd: number, position: number, range?: ChunkRange): Promise<number | null> {
    const r = await this.run((seq) => ({ seq, op: 'openFileTo', id, path, fd, position, ...range }), []);
    if (r.op !== 'openFileTo') throw new Error(`unexpected worker reply ${r.op}`);
    return r.bytes;
  }

  /**
   * `openFileTo` for a run of chunks in one trip to one worker (`chunks[i]`: chunk `id` in the
   * local file `<dir>/<chunkSubpath(id)>`, written at `position` of `fd`): per item, the bytes
   * written (-1: not written, `failures` says why).
   */
  async openFilesTo(chunks: ReadonlyArray<{ readonly id: string; readonly position: number; readonly range?: ChunkRange }>, fd: number, dir: string): Promise<{ bytes: Float64Array; failures?: ReadonlyArray<readonly [number, ChunkFailure]> }> {
    const n = chunks.length;
    const ids = new Array<string>(n);
    const positions = new Float64Array(n);
    let ranges: Float64Array | undefined;
    for (let i = 0; i < n; i++) {
      const c = chunks[i]!;
      ids[i] = c.id;
      positions[i] = c.position;
      if (c.range) {
        ranges ??= new Float64Array(2 * n).fill(-1);
        ranges[2 * i] = c.range.from;
        ranges[2 * i + 1] = c.range.length;
      }
    }
    const transfer = (ranges ? [positions.buffer, ranges.buffer] : [positions.buffer]) as ArrayBuffer[];
    const r = await this.run((seq) => ({ seq, op: 'openFilesTo', ids, dir, positions, ...(ranges ? { ranges } : {}), fd }), transfer);
    if (r.op !== 'openFilesTo') throw new Error(`unexpected worker reply ${r.op}`);
    return r.failures ? { bytes: r.bytes, failures: r.failures } : { bytes: r.bytes };
  }

  async close(): Promise<void> {
    this.closed = true;
    const slots = this.slots.splice(0);
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }
}
