// Random access to any byte range of a disk in a restore point, without restoring it:
// the base of instant recovery (an NBD export) and file-level restore. Zero chunks are
// synthesised; decoded chunks and index pages are kept in small LRUs; damaged data is
// never returned: a chunk failing any check throws DamagedChunkError with its uses.
import { DamagedChunkError } from '../errors.ts';
import { ZERO_ID, type DiskManifest } from '../format/manifest.ts';
import { findUses, toDamaged } from '../maintenance/chunk-uses.ts';
import { ENTRY_BYTES, ObjectReadError, type RepositoryCore, DEFAULT_FETCH_CONCURRENCY } from '../repository-core.ts';
import { forEachLimit } from '../concurrency/semaphore.ts';
import { Lru } from './lru.ts';

export interface DiskReader {
  readonly restorePointId: string;
  readonly name: string;
  readonly sizeBytes: number;
  readonly chunkSize: number;
  /** Bytes [offset, offset+length) of the disk; the range must lie within the disk. */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Chunk id at chunk index `index` (`null` for a zero chunk). */
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
  private readonly nChunks: number;
  private readonly pages: Lru<number, Promise<Uint8Array>>;
  private readonly chunks: Lru<string, Promise<Uint8Array>>;

  constructor(
    private readonly core: RepositoryCore,
    readonly restorePointId: string,
    private readonly disk: DiskManifest,
  ) {
    this.name = disk.name;
    this.sizeBytes = disk.sizeBytes;
    this.chunkSize = disk.chunkSize;
    this.nChunks = Math.ceil(disk.sizeBytes / disk.chunkSize);
    this.pages = new Lru(16);
    this.chunks = new Lru(core.tuning.readCacheChunks ?? 32);
  }

  /** Entries of index page `p` (a failed load is not cached). */
  pageEntries(p: number): Promise<Uint8Array> {
    let page = this.pages.get(p);
    if (!page) {
      const count = Math.min(this.disk.pageEntries, this.nChunks - p * this.disk.pageEntries);
      page = this.core.readPage(this.disk.pages[p] ?? ZERO_ID, count);
      page.catch(() => this.pages.delete(p));
      this.pages.set(p, page);
    }
    return page;
  }

  async chunkIdAt(index: number): Promise<string | null> {
    const p = Math.floor(index / this.disk.pageEntries);
    if (this.disk.pages[p] === ZERO_ID) return null;
    const entries = await this.pageEntries(p);
    const o = (index - p * this.disk.pageEntries) * ENTRY_BYTES;
    const e = entries.subarray(o, o + ENTRY_BYTES);
    return e.every((b) => b === 0) ? null : Buffer.from(e).toString('hex');
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
        const id = await this.chunkIdAt(ci);
        if (id === null) return;
        const data = await this.chunk(id);
        const chunkStart = ci * cs;
        const from = Math.max(offset, chunkStart);
        const to = Math.min(offset + length, chunkStart + cs);
        out.set(data.subarray(from - chunkStart, to - chunkStart), from - offset);
      } catch (e) {
        if (e instanceof ObjectReadError) failures.push(e);
        else throw e;
      }
    });
    if (failures.length) throw await damagedError(this.core, failures);
    return out;
  }
}
