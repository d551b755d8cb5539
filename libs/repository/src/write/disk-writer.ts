// Writes one disk of a restore point: splits the caller's chunk-aligned extents into chunks,
// has the workers hash them, uploads the chunks the repository lacks (sealed by the workers),
// fills the regions the caller did not send from the parent's index (incremental) or with
// zeros (full), and stores the index as content-addressed pages. An incremental may send only
// the changed bytes (`partial`): a partly changed slot then becomes pieces, its changed bytes
// a range of a new chunk shared with the next partly changed slots (a pack) and the rest the
// parent's chunks (index format 2), with no parent read. Reading, worker processing
// and uploads overlap; a semaphore bounds chunks in flight so memory does not grow with the disk.
import { InvalidExtentError } from '../errors.ts';
import { ObjectLockedError } from '../backend/object-lock.ts';
import { release } from '../format/envelope.ts';
import { chunkKey } from '../format/layout.ts';
import { asPieces, piecesWithinBounds, mergePieces, slicePieces, slotOf, type IndexPage, type Piece, type Slot } from '../format/index-page.ts';
import { rootChecksum, ZERO_ID, type DiskManifest, type DiskStats } from '../format/manifest.ts';
import type { RepositoryCore } from '../repository-core.ts';
import { IndexedDisk } from '../read/disk-reader.ts';
import type { KnownChunks } from './known-chunks.ts';
import type { WriterSession } from './writer-session.ts';
import { Semaphore } from '../concurrency/semaphore.ts';

export interface Extent {
  readonly offset: number;
  readonly data: Uint8Array;
}

export interface DiskInput {
  readonly name: string;
  readonly sizeBytes: number;
  /**
   * Chunk-aligned regions to store, in increasing offset order, not overlapping. The writer
   * copies what it needs from an extent before it asks for the next one, so the producer may
   * read every extent into the same buffer.
   */
  readonly extents: AsyncIterable<Extent> | Iterable<Extent>;
  /**
   * The extents cover the whole disk (holes are zero) even though the restore point has a
   * parent, e.g. a disk new since the parent. Default: full when there is no parent.
   */
  readonly full?: boolean;
  /**
   * The extents are the changed bytes only, at any offset and length (an incremental's dirty
   * blocks); needs a parent disk of the same size. A slot they cover in part is stored as
   * pieces (a new chunk of its changed bytes, the parent's chunks for the rest) while that
   * stays within the bounds (format/index-page.ts), else whole, completed from the parent.
   */
  readonly partial?: boolean;
}

interface PageBuilder {
  readonly slots: Slot[];
  remaining: number;
}

/**
 * A slot of a partial disk whose changed bytes are being collected: copied once, one after the
 * other, into `buf` (a buffer of the worker pool, which goes on to the chunk workers as it is).
 */
interface OpenSlot {
  readonly index: number;
  /** Each changed range: its offset in the slot, its length, where its bytes start in `buf`. */
  readonly parts: Array<{ at: number; length: number; pos: number }>;
  readonly buf: Uint8Array;
  filled: number;
}

/**
 * The changed bytes of several partly changed slots, one after the other, to be stored as one
 * chunk (up to the chunk size): one object, worker trip and put for a few slots instead of one
 * each. A slot's bytes never straddle two packs, so its pieces keep naming one new chunk.
 */
interface Pack {
  readonly buf: Uint8Array;
  filled: number;
  /** Slots waiting for the pack's id: their pieces, the NEW ones at their offsets in `buf`. */
  readonly slots: Array<{ readonly index: number; readonly length: number; readonly pieces: readonly Piece[] }>;
}

/** Placeholder id of a slot's new chunk until it is hashed. */
const NEW = 'new';

let zeros = Buffer.alloc(0);

function isZero(view: Uint8Array): boolean {
  if (zeros.length < view.byteLength) zeros = Buffer.alloc(view.byteLength);
  return Buffer.from(view.buffer, view.byteOffset, view.byteLength).equals(zeros.subarray(0, view.byteLength));
}

const emptyStats = (): DiskStats => ({
  bytesRead: 0, bytesStored: 0, chunksNew: 0, chunksReused: 0, chunksZero: 0, chunksFromParent: 0, pagesNew: 0, pagesReused: 0,
});

export class DiskWriter {
  private readonly cs: number;
  private readonly E: number;
  private readonly nChunks: number;
  private readonly pages: string[];
  private readonly builders = new Map<number, PageBuilder>();
  private readonly tasks = new Set<Promise<void>>();
  private readonly stats = emptyStats();
  private failure?: unknown;
  /** Moving share of non-zero chunks that were new: decides whether sealing speculatively pays. */
  private newRate = 1;
  private parentPageCache = new Map<number, IndexPage>();
  /** A slot of pieces was written or taken over: the index is format 2. */
  private pieced = false;
  private open?: OpenSlot;
  private pack?: Pack;
  private parentReader?: IndexedDisk;

  constructor(
    private readonly core: RepositoryCore,
    private readonly known: KnownChunks,
    private readonly disk: DiskInput,
    private readonly parent: DiskManifest | undefined,
    private readonly slots: Semaphore,
    private readonly session: WriterSession,
    /** Damaged chunk ids to store again rather than trust (verify found them damaged). */
    private readonly heal: ReadonlySet<string> = new Set(),
  ) {
    this.cs = core.chunkSize;
    this.E = core.pageEntries;
    if (!Number.isSafeInteger(disk.sizeBytes) || disk.sizeBytes < 0) {
      throw new InvalidExtentError(`disk ${disk.name}: size ${disk.sizeBytes} is not a non-negative integer`);
    }
    this.nChunks = Math.ceil(disk.sizeBytes / this.cs);
    this.pages = new Array<string>(Math.ceil(this.nChunks / this.E)).fill('');
    if (parent && (parent.chunkSize !== this.cs || parent.pageEntries !== this.E)) {
      throw new InvalidExtentError(`disk ${disk.name}: parent uses chunk size ${parent.chunkSize}/${parent.pageEntries}, repository ${this.cs}/${this.E}`);
    }
    if (disk.partial && (!parent || disk.full || parent.sizeBytes !== disk.sizeBytes)) {
      throw new InvalidExtentError(`disk ${disk.name}: only the changed bytes (partial) need a parent disk of the same size`);
    }
  }

  async write(): Promise<DiskManifest> {
    const { name, sizeBytes } = this.disk;
    let next = 0; // first chunk index not yet accounted for
    let end = 0; // end offset of the previous extent
    try {
      for await (const ext of this.disk.extents) {
        if (this.failure) break;
        const len = ext.data.byteLength;
        if (len === 0) continue;
        if (!Number.isSafeInteger(ext.offset) || ext.offset < end) {
          throw new InvalidExtentError(`disk ${name}: extent at ${ext.offset} is out of order or overlaps the previous one (ending at ${end})`);
        }
        if (this.disk.partial) {
          if (ext.offset + len > sizeBytes) throw new InvalidExtentError(`disk ${name}: extent ${ext.offset}+${len} ends past the disk's ${sizeBytes} bytes`);
          next = await this.takeChanged(ext, next);
          end = ext.offset + len;
          continue;
        }
        if (ext.offset % this.cs !== 0) {
          throw new InvalidExtentError(`disk ${name}: extent at ${ext.offset} is not aligned to the ${this.cs}-byte chunk size (read whole chunks)`);
        }
        if (ext.offset + len > sizeBytes) {
          throw new InvalidExtentError(`disk ${name}: extent ${ext.offset}+${len} ends past the disk's ${sizeBytes} bytes`);
        }
        if (len % this.cs !== 0 && ext.offset + len !== sizeBytes) {
          throw new InvalidExtentError(`disk ${name}: extent ${ext.offset}+${len} is not a whole number of ${this.cs}-byte chunks and does not end at the disk's end`);
        }
        const first = ext.offset / this.cs;
        await this.fillUncovered(next, first);
        for (let o = 0; o < len && !this.failure; o += this.cs) {
          const n = Math.min(this.cs, len - o);
          const view = ext.data.subarray(o, o + n);
          this.stats.bytesRead += n;
          // All-zero chunks (a memcmp that stops at the first non-zero byte) never leave this thread.
          if (isZero(view)) {
            this.stats.chunksZero++;
            this.assign(first + o / this.cs, null);
            continue;
          }
          await this.storeWhole(first + o / this.cs, view);
        }
        next = first + Math.ceil(len / this.cs);
        end = ext.offset + len;
      }
      if (!this.failure && this.open) await this.finishOpen();
      if (!this.failure) await this.storePack();
      if (!this.failure) await this.fillUncovered(next, this.nChunks);
    } catch (e) {
      this.failure ??= e;
    }
    if (this.pack) { this.core.pool.recycle(this.pack.buf); this.pack = undefined; } // failed before it was stored
    while (this.tasks.size) await Promise.allSettled([...this.tasks]);
    if (this.failure) throw this.failure;
    if (this.pages.some((p) => p === '')) throw new Error(`disk ${name}: internal error, index incomplete`);
    return {
      name, sizeBytes, chunkSize: this.cs, pageEntries: this.E,
      pages: this.pages, rootChecksum: rootChecksum(this.pages), stats: this.stats,
      ...(this.pieced ? { indexFormat: 2 as const } : {}),
    };
  }

  /** Hands a whole slot's non-zero bytes (copied: the caller keeps `view`) to the chunk pipeline. */
  private async storeWhole(index: number, view: Uint8Array): Promise<void> {
    await this.slots.acquire();
    // A copy into a reused buffer (the caller keeps its extent): it travels to a worker
    // and back, then serves a later chunk, so no fresh memory is faulted in per chunk.
    const data = this.core.pool.borrow(view.byteLength, this.cs);
    data.set(view);
    this.track(this.storeChunk(index, data).then((id) => this.assign(index, id)).finally(() => this.slots.release()));
  }

  /** Collects a partial extent's bytes slot by slot; returns the first slot not yet accounted for. */
  private async takeChanged(ext: Extent, next: number): Promise<number> {
    const stop = ext.offset + ext.data.byteLength;
    this.stats.bytesRead += ext.data.byteLength;
    for (let o = ext.offset; o < stop && !this.failure;) {
      const index = Math.floor(o / this.cs);
      const slotStart = index * this.cs;
      const e = Math.min(stop, slotStart + this.cs);
      if (this.open && this.open.index !== index) await this.finishOpen();
      if (!this.open) {
        await this.fillUncovered(next, index);
        this.open = { index, parts: [], buf: this.core.pool.borrow(this.cs), filled: 0 };
        next = index + 1;
      }
      const open = this.open;
      open.buf.set(ext.data.subarray(o - ext.offset, e - ext.offset), open.filled);
      open.parts.push({ at: o - slotStart, length: e - o, pos: open.filled });
      open.filled += e - o;
      o = e;
    }
    return next;
  }

  /** Stores the open slot: whole when all of it changed, else as pieces within the bounds, else whole from the parent. */
  private async finishOpen(): Promise<void> {
    const { index, parts, buf, filled: changed } = this.open as OpenSlot;
    this.open = undefined;
    const slotLen = Math.min(this.cs, this.disk.sizeBytes - index * this.cs);
    // The changed bytes in the order they came: the slot itself when all of it changed.
    const data = buf.subarray(0, changed);
    if (changed === slotLen) return this.storeOrZero(index, data, true);
    const base = asPieces(await this.parentSlot(index), slotLen);
    const pieces: Piece[] = [];
    let at = 0;
    for (const p of parts) {
      if (p.at > at) pieces.push(...slicePieces(base, at, p.at));
      pieces.push({ id: NEW, offset: p.pos, length: p.length });
      at = p.at + p.length;
    }
    if (at < slotLen) pieces.push(...slicePieces(base, at, slotLen));
    const merged = mergePieces(pieces);
    if (piecesWithinBounds(merged)) {
      if (isZero(data)) {
        this.core.pool.recycle(buf);
        return this.finishPieced(index, slotLen, merged, null);
      }
      if (this.pack && this.pack.filled + changed > this.cs) await this.storePack();
      const pack = this.pack ??= { buf: this.core.pool.borrow(this.cs), filled: 0, slots: [] };
      const at = pack.filled;
      pack.buf.set(data, at);
      pack.filled += changed;
      pack.slots.push({ index, length: slotLen, pieces: merged.map((p) => (p.id === NEW ? { ...p, offset: at + p.offset } : p)) });
      this.core.pool.recycle(buf);
      return;
    }
    // Too many pieces or chunks for one slot: the parent's bytes with the changes over them, whole.
    this.parentReader ??= new IndexedDisk(this.core, 'parent', this.parent as DiskManifest);
    const whole = await this.parentReader.read(index * this.cs, slotLen);
    for (const p of parts) whole.set(buf.subarray(p.pos, p.pos + p.length), p.at);
    this.core.pool.recycle(buf);
    return this.storeOrZero(index, whole);
  }

  /** Stores the pack (if any) as one chunk; its slots are assigned once its id is known. */
  private async storePack(): Promise<void> {
    const pack = this.pack;
    if (!pack) return;
    this.pack = undefined;
    await this.slots.acquire();
    const first = (pack.slots[0] as Pack['slots'][number]).index;
    this.track(this.storeChunk(first, pack.buf.subarray(0, pack.filled)).then((id) => {
      for (const s of pack.slots) this.finishPieced(s.index, s.length, s.pieces, id);
    }).finally(() => this.slots.release()));
  }

  /** Assigns a slot of pieces once its new chunk's id is known (null: its changed bytes are zero). */
  private finishPieced(index: number, length: number, pieces: readonly Piece[], id: string | null): void {
    const slot = slotOf(pieces.map((p) => (p.id !== NEW ? p : id ? { ...p, id } : { id: ZERO_ID, offset: 0, length: p.length })), length);
    this.stats.slotsPieced = (this.stats.slotsPieced ?? 0) + (slot !== null && 'pieces' in slot ? 1 : 0);
    this.assignSlot(index, slot);
  }

  /** `borrowed`: `data` is a buffer of the worker pool this writer owns, handed on without a copy. */
  private async storeOrZero(index: number, data: Uint8Array, borrowed = false): Promise<void> {
    if (isZero(data)) {
      if (borrowed) this.core.pool.recycle(data);
      this.stats.chunksZero++;
      this.assign(index, null);
      return;
    }
    if (!borrowed) return this.storeWhole(index, data);
    await this.slots.acquire();
    this.track(this.storeChunk(index, data).then((id) => this.assign(index, id)).finally(() => this.slots.release()));
  }

  private async parentSlot(index: number): Promise<Slot> {
    const parent = this.parent as DiskManifest;
    const p = Math.floor(index / this.E);
    return (await this.parentPage(parent, p)).slot(index - p * this.E);
  }

  private track(p: Promise<void>): void {
    const t = p.catch((e: unknown) => { this.failure ??= e; }).finally(() => this.tasks.delete(t));
    this.tasks.add(t);
  }

  /** Hashes and, unless the repository has it, stores one chunk; its id (null: all zero). */
  private async storeChunk(index: number, data: Uint8Array): Promise<string | null> {
    // While most chunks turn out new (a first full backup, changed blocks), hash and seal in
    // one worker trip; once dedup hits dominate, hash first and seal only what is missing.
    const speculate = this.newRate > 0.5;
    let id: string | null;
    let plain: Uint8Array | undefined;
    let sealed: Uint8Array | null = null;
    if (speculate) ({ id, sealed } = await this.core.pool.hashSeal(data));
    else ({ id, data: plain } = await this.core.pool.hash(data));
    if (id === null) {
      this.stats.chunksZero++;
      return null;
    }
    // Another upload of the same chunk under way (this or another writer): reuse it once it landed.
    // A chunk sealed speculatively is not looked up in the repository: the conditional put
    // says whether it was there, which saves a lookup per chunk (and the listing of every
    // chunk once there are many) when most chunks are new.
    const pending = this.known.inFlight(id);
    const mine = pending?.owner === this.session;
    if (this.heal.has(id) && !mine) return this.healChunk(index, id, sealed, plain);
    const reuse = mine ? await pending.stored.then(() => true, () => false)
      : this.known.has(id) || (sealed === null && await this.known.contains(id));
    if (reuse) {
      if (plain) this.core.pool.recycle(plain);
      return this.reused(id);
    }
    const chunkId = id;
    const upload = (async () => {
      const body = sealed ?? (await this.core.pool.seal('C', chunkId, plain as Uint8Array)).sealed;
      // Durable and named at the writer's flush, before the manifest (one file-system sync per batch, not an fsync per chunk).
      const bytes = body.byteLength;
      const created = await this.core.backend.put(chunkKey(chunkId), body, { ifNotExists: true, deferSync: true, flushGroup: this.session.group });
      // Stored (a backend keeps no reference once put resolves): freed now, not at a later GC.
      release(body);
      return { created, bytes };
    })();
    this.known.claim(id, this.session, upload.then(() => undefined), this.session.durable);
    let result: { created: boolean; bytes: number };
    try {
      result = await upload;
    } catch (e) {
      throw new Error(`upload of chunk ${id} (disk ${this.disk.name}, offset ${index * this.cs}) failed: ${(e as Error).message}`, { cause: e });
    }
    if (!result.created) return this.reused(id); // stored before (by anyone): same plaintext, same id
    this.newRate = this.newRate * 0.9 + 0.1;
    this.stats.chunksNew++;
    this.stats.bytesStored += result.bytes;
    return id;
  }

  /** Stores a chunk verify found damaged again, over the damaged object (a locked one stays as it is). */
  private async healChunk(index: number, id: string, sealed: Uint8Array | null, plain: Uint8Array | undefined): Promise<string> {
    const upload = (async () => {
      const body = sealed ?? (await this.core.pool.seal('C', id, plain as Uint8Array)).sealed;
      try {
        await this.core.backend.put(chunkKey(id), body, { deferSync: true, flushGroup: this.session.group });
        return body.byteLength;
      } catch (e) {
        if (e instanceof ObjectLockedError) return 0;
        throw e;
      }
    })();
    this.known.claim(id, this.session, upload.then(() => undefined), this.session.durable);
    let bytes: number;
    try {
      bytes = await upload;
    } catch (e) {
      throw new Error(`healing chunk ${id} (disk ${this.disk.name}, offset ${index * this.cs}) failed: ${(e as Error).message}`, { cause: e });
    }
    if (bytes === 0) return this.reused(id);
    this.stats.chunksNew++;
    this.stats.bytesStored += bytes;
    return id;
  }

  private reused(id: string): string {
    this.stats.chunksReused++;
    this.newRate *= 0.9;
    return id;
  }

  /** Chunks [from, to) the caller did not send: the parent's ids (incremental) or zero. */
  private async fillUncovered(from: number, to: number): Promise<void> {
    const parent = this.disk.full ? undefined : this.parent;
    const parentChunks = parent ? Math.ceil(parent.sizeBytes / this.cs) : 0;
    let c = from;
    while (c < to) {
      const p = Math.floor(c / this.E);
      const pageStart = p * this.E;
      const pageEnd = Math.min(pageStart + this.E, this.nChunks);
      const stop = Math.min(to, pageEnd);
      // A page the caller did not touch at all, with the same extent in the parent: reuse it whole.
      if (parent && c === pageStart && stop === pageEnd && !this.builders.has(p) && pageEnd <= parentChunks
        && Math.min(pageStart + this.E, parentChunks) === pageEnd) {
        this.pages[p] = parent.pages[p] as string;
        if (parent.indexFormat === 2) this.pieced = true; // the page may hold slots of pieces
        this.stats.pagesReused++;
        this.stats.chunksFromParent += pageEnd - pageStart;
        c = stop;
        continue;
      }
      const parentPage = parent && c < parentChunks ? await this.parentPage(parent, p) : undefined;
      for (; c < stop; c++) {
        const slot = parentPage && c < parentChunks ? parentPage.slot(c - pageStart) : null;
        if (slot === null) this.stats.chunksZero++;
        else this.stats.chunksFromParent++;
        this.assignSlot(c, slot);
      }
    }
  }

  private async parentPage(parent: DiskManifest, p: number): Promise<IndexPage> {
    const cached = this.parentPageCache.get(p);
    if (cached) return cached;
    const page = await this.core.readIndexPage(parent, p);
    this.parentPageCache.clear(); // extents come in order: one page at a time is enough
    this.parentPageCache.set(p, page);
    return page;
  }

  private assign(index: number, id: string | null): void {
    this.assignSlot(index, id === null ? null : { chunk: id });
  }

  private assignSlot(index: number, slot: Slot): void {
    const p = Math.floor(index / this.E);
    let b = this.builders.get(p);
    if (!b) {
      const count = Math.min(this.E, this.nChunks - p * this.E);
      b = { slots: new Array<Slot>(count).fill(null), remaining: count };
      this.builders.set(p, b);
    }
    b.slots[index - p * this.E] = slot;
    if (slot !== null && 'pieces' in slot) this.pieced = true;
    if (--b.remaining === 0) {
      this.builders.delete(p);
      const slots = b.slots;
      this.track(this.core.writeIndexPage(slots, { deferSync: true, flushGroup: this.session.group }).then(({ id, bytes }) => {
        this.pages[p] = id;
        if (bytes > 0) { this.stats.pagesNew++; this.stats.bytesStored += bytes; } else this.stats.pagesReused++;
      }));
    }
  }
}
