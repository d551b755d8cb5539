// Random access to any byte range of a disk in a restore point, without restoring it:
// the base of instant recovery (an NBD export) and file-level restore. Zero chunks are
// synthesised; decoded chunks and index pages are kept in small LRUs; damaged data is
// never returned: a chunk failing any check throws DamagedChunkError with its uses.
import { DamagedChunkError } from '../errors.ts';
import { slicePieces, type IndexPage, type Slot } from '../format/index-page.ts';
import { chunkKey } from '../format/layout.ts';
import { ZERO_ID, type DiskManifest } from '../format/manifest.ts';
import { findUses, toDamaged } from '../maintenance/chunk-uses.ts';
import { ObjectReadError, type RepositoryCore, DEFAULT_FETCH_CONCURRENCY } from '../repository-core.ts';
import { forEachLimit } from '../concurrency/semaphore.ts';
import { Lru } from './lru.ts';

export interface DiskReader {
  readonly restorePointId: string;
  readonly name: string;
  readonly sizeBytes: number;
  readonly chunkSize: number;
  /** Bytes [offset, offset+length) of the disk; the range must lie within the disk. */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Chunk id at chunk index `index` (`null` for a zero chunk; throws for a slot made of pieces, see IndexedDisk.slotAt). */
  chunkIdAt(index: number): Promise<string | null>;
}

/** Turns a read failure into the damage report naming every restore point that uses the object. */
export async function damagedError(core: RepositoryCore, errors: readonly ObjectReadError[]): Promise<DamagedChunkError> {
  const uses = await findUses(core, new Set(errors.map((e) => e.id)));
  return new DamagedChunkError(errors.map((e) => toDamaged(e, uses)));
}

export class IndexedDisk implements DiskReader {
  readonly name: string;
  readonly sizeBytes: number;
  readonly chunkSize: number;
  private readonly pages: Lru<number, Promise<IndexPage>>;
  private readonly chunks: Lru<string, Promise<Uint8Array>>;

  constructor(
    private readonly core: RepositoryCore,
    readonly restorePointId: string,
    private readonly disk: DiskManifest,
  ) {
    this.name = disk.name;
    this.sizeBytes = disk.sizeBytes;
    this.chunkSize = disk.chunkSize;
    this.pages = new Lru(16);
    this.chunks = new Lru(core.tuning.readCacheChunks ?? 32);
  }

  /** Index page `p`, decoded (a failed load is not cached). */
  indexPage(p: number): Promise<IndexPage> {
    let page = this.pages.get(p);
    if (!page) {
      page = this.core.readIndexPage(this.disk, p);
      page.catch(() => this.pages.delete(p));
      this.pages.set(p, page);
    }
    return page;
  }

  /** Slots per index page. */
  get pageEntries(): number {
    return this.disk.pageEntries;
  }

  /** Bytes of slot `index` (the last one may be short). */
  slotBytes(index: number): number {
    return Math.min(this.chunkSize, this.sizeBytes - index * this.chunkSize);
  }

  async slotAt(index: number): Promise<Slot> {
    const p = Math.floor(index / this.disk.pageEntries);
    if (this.disk.pages[p] === ZERO_ID) return null;
    return (await this.indexPage(p)).slot(index - p * this.disk.pageEntries);
  }

  async chunkIdAt(index: number): Promise<string | null> {
    const slot = await this.slotAt(index);
    if (slot === null) return null;
    if ('chunk' in slot) return slot.chunk;
    throw new Error(`slot ${index} of disk ${this.name} is made of ${slot.pieces.length} pieces, not one chunk (use slotAt)`);
  }

  private chunk(id: string): Promise<Uint8Array> {
    let c = this.chunks.get(id);
    if (!c) {
      c = this.core.readChunk(id);
      c.catch(() => this.chunks.delete(id));
      this.chunks.set(id, c);
    }
    return c;
  }

  /**
   * Copies bytes [from, to) of slot `index` (offsets inside the slot) into `out` at `at`; zero
   * bytes are left as they are (`out` starts zeroed). Throws ObjectReadError for a damaged chunk.
   */
  async readSlotInto(index: number, slot: Slot, from: number, to: number, out: Uint8Array, at: number): Promise<void> {
    if (slot === null) return;
    if ('chunk' in slot) {
      const data = await this.chunk(slot.chunk);
      out.set(data.subarray(from, to), at);
      return;
    }
    const total = slot.pieces.reduce((n, p) => n + p.length, 0);
    if (total !== this.slotBytes(index)) {
      throw new Error(`slot ${index} of disk ${this.name}: its pieces add up to ${total} bytes, the slot has ${this.slotBytes(index)}`);
    }
    await Promise.all(slicePieces(slot.pieces, from, to).map(async (piece, k, all) => {
      const pos = from + all.slice(0, k).reduce((n, q) => n + q.length, 0);
      if (piece.id === ZERO_ID) return;
      const data = await this.chunk(piece.id);
      if (piece.offset + piece.length > data.byteLength) {
        throw new ObjectReadError('chunk', piece.id, chunkKey(piece.id), 'malformed', `${data.byteLength} bytes, a piece of slot ${index} of disk ${this.name} needs ${piece.offset}+${piece.length}`);
      }
      out.set(data.subarray(piece.offset, piece.offset + piece.length), at + pos - from);
    }));
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.sizeBytes) {
      throw new RangeError(`read ${offset}+${length} is outside disk ${this.name} (${this.sizeBytes} bytes)`);
    }
    const out = new Uint8Array(length);
    if (length === 0) return out;
    const cs = this.chunkSize;
    const first = Math.floor(offset / cs);
    const last = Math.floor((offset + length - 1) / cs);
    const indexes = Array.from({ length: last - first + 1 }, (_, i) => first + i);
    const failures: ObjectReadError[] = [];
    await forEachLimit(indexes, this.core.tuning.fetchConcurrency ?? DEFAULT_FETCH_CONCURRENCY, async (ci) => {
      try {
        const slot = await this.slotAt(ci);
        const chunkStart = ci * cs;
        const from = Math.max(offset, chunkStart);
        const to = Math.min(offset + length, chunkStart + cs);
        await this.readSlotInto(ci, slot, from - chunkStart, to - chunkStart, out, from - offset);
      } catch (e) {
        if (e instanceof ObjectReadError) failures.push(e);
        else throw e;
      }
    });
    if (failures.length) throw await damagedError(this.core, failures);
    return out;
  }
}
