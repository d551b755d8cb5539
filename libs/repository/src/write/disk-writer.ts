// Writes one disk of a restore point: splits the caller's chunk-aligned extents into chunks,
// has the workers hash them, uploads the chunks the repository lacks (sealed by the workers),
// fills the regions the caller did not send from the parent's index (incremental) or with
// zeros (full), and stores the index as content-addressed pages. Reading, worker processing
// and uploads overlap; a semaphore bounds chunks in flight so memory does not grow with the disk.
import { InvalidExtentError } from '../errors.ts';
import { ObjectLockedError } from '../backend/object-lock.ts';
import { release } from '../format/envelope.ts';
import { chunkKey } from '../format/layout.ts';
import { rootChecksum, type DiskManifest, type DiskStats } from '../format/manifest.ts';
import { ENTRY_BYTES, type RepositoryCore } from '../repository-core.ts';
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
}

interface PageBuilder {
  readonly entries: Uint8Array;
  remaining: number;
}

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
  private parentPageCache = new Map<number, Uint8Array>();

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
          await this.slots.acquire();
          // A copy into a reused buffer (the caller keeps its extent): it travels to a worker
          // and back, then serves a later chunk, so no fresh memory is faulted in per chunk.
          const data = this.core.pool.borrow(n, this.cs);
          data.set(view);
          this.track(this.processChunk(first + o / this.cs, data).finally(() => this.slots.release()));
        }
        next = first + Math.ceil(len / this.cs);
        end = ext.offset + len;
      }
      if (!this.failure) await this.fillUncovered(next, this.nChunks);
    } catch (e) {
      this.failure ??= e;
    }
    while (this.tasks.size) await Promise.allSettled([...this.tasks]);
    if (this.failure) throw this.failure;
    if (this.pages.some((p) => p === '')) throw new Error(`disk ${name}: internal error, index incomplete`);
    return {
      name, sizeBytes, chunkSize: this.cs, pageEntries: this.E,
      pages: this.pages, rootChecksum: rootChecksum(this.pages), stats: this.stats,
    };
  }

  private track(p: Promise<void>): void {
    const t = p.catch((e: unknown) => { this.failure ??= e; }).finally(() => this.tasks.delete(t));
    this.tasks.add(t);
  }

  private async processChunk(index: number, data: Uint8Array): Promise<void> {
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
      return this.assign(index, null);
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
      this.reused(index, id);
      return;
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
    if (!result.created) return this.reused(index, id); // stored before (by anyone): same plaintext, same id
    this.newRate = this.newRate * 0.9 + 0.1;
    this.stats.chunksNew++;
    this.stats.bytesStored += result.bytes;
    this.assign(index, id);
  }

  /** Stores a chunk verify found damaged again, over the damaged object (a locked one stays as it is). */
  private async healChunk(index: number, id: string, sealed: Uint8Array | null, plain: Uint8Array | undefined): Promise<void> {
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
    if (bytes === 0) return this.reused(index, id);
    this.stats.chunksNew++;
    this.stats.bytesStored += bytes;
    this.assign(index, id);
  }

  private reused(index: number, id: string): void {
    this.stats.chunksReused++;
    this.newRate *= 0.9;
    this.assign(index, id);
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
        this.stats.pagesReused++;
        this.stats.chunksFromParent += pageEnd - pageStart;
        c = stop;
        continue;
      }
      const parentEntries = parent && c < parentChunks ? await this.parentPage(parent, p) : undefined;
      for (; c < stop; c++) {
        if (parentEntries && c < parentChunks) {
          const off = (c - pageStart) * ENTRY_BYTES;
          const entry = parentEntries.subarray(off, off + ENTRY_BYTES);
          const zero = entry.every((b) => b === 0);
          if (zero) this.stats.chunksZero++;
          else this.stats.chunksFromParent++;
          this.assignEntry(c, zero ? null : entry);
        } else {
          this.stats.chunksZero++;
          this.assignEntry(c, null);
        }
      }
    }
  }

  private async parentPage(parent: DiskManifest, p: number): Promise<Uint8Array> {
    const cached = this.parentPageCache.get(p);
    if (cached) return cached;
    const parentChunks = Math.ceil(parent.sizeBytes / this.cs);
    const entries = Math.min(this.E, parentChunks - p * this.E);
    const page = await this.core.readPage(parent.pages[p] as string, entries);
    this.parentPageCache.clear(); // extents come in order: one page at a time is enough
    this.parentPageCache.set(p, page);
    return page;
  }

  private assign(index: number, id: string | null): void {
    this.assignEntry(index, id === null ? null : Buffer.from(id, 'hex'));
  }

  private assignEntry(index: number, entry: Uint8Array | null): void {
    const p = Math.floor(index / this.E);
    let b = this.builders.get(p);
    if (!b) {
      const count = Math.min(this.E, this.nChunks - p * this.E);
      b = { entries: new Uint8Array(count * ENTRY_BYTES), remaining: count };
      this.builders.set(p, b);
    }
    if (entry) b.entries.set(entry, (index - p * this.E) * ENTRY_BYTES);
    if (--b.remaining === 0) {
      this.builders.delete(p);
      const entries = b.entries;
      this.track(this.core.writePage(entries, { deferSync: true, flushGroup: this.session.group }).then(({ id, bytes }) => {
        this.pages[p] = id;
        if (bytes > 0) { this.stats.pagesNew++; this.stats.bytesStored += bytes; } else this.stats.pagesReused++;
      }));
    }
  }
}
