// What every part of an open repository shares: the backend, the verified config, the
// master keys, the worker pool, and typed access to sealed objects (chunks, index pages,
// manifests). Readers, the writer, verify and GC each take this and nothing wider.
import { type Backend, type FlushGroup, NotFoundError } from './backend/backend.ts';
import { CorruptObjectError, RestorePointNotFoundError, type ChunkDamage } from './errors.ts';
import type { RepositoryConfig } from './format/config.ts';
import { contentId, EnvelopeError, open, release, seal } from './format/envelope.ts';
import { CHUNKS_DIR_KEY, chunkKey, isRestorePointId, pageKey, RESTORE_POINTS_PREFIX, restorePointKey } from './format/layout.ts';
import { decodeIndexPage, encodeIndexPage, ENTRY_BYTES, IndexPage, IndexPageFormatError, maxPageBytes, type Slot } from './format/index-page.ts';
import { encodeManifest, parseManifest, ZERO_ID, type DiskManifest, type Manifest } from './format/manifest.ts';
import type { MasterKeys } from './keys/master-keys.ts';
import { ChunkWorkerPool } from './workers/chunk-worker-pool.ts';
import type { ChunkRange } from './workers/chunk-protocol.ts';
import { SharedWriterLease } from './leases/shared-writer-lease.ts';

export { ENTRY_BYTES };

/** A chunk or index page could not be read back intact. Internal: callers add the uses. */
export class ObjectReadError extends Error {
  constructor(
    readonly kind: 'chunk' | 'index-page',
    readonly id: string,
    readonly key: string,
    readonly damage: ChunkDamage,
    readonly detail: string,
  ) {
    super(`${kind} ${id} (${key}) is ${damage}: ${detail}`);
    this.name = 'ObjectReadError';
  }
}

/** Default `fetchConcurrency`: 8 restored 1 GiB in 2.5 s, 32 in 1.4-1.9 s, 64 no faster (probe.ts, page cache). */
export const DEFAULT_FETCH_CONCURRENCY = 32;

export interface RepositoryTuning {
  /** Worker threads for hashing/compression/encryption (default: one per core). */
  readonly workers?: number;
  /** Parallel object uploads of one writer (default 16: for S3, where each put is a round trip; a directory takes deferred puts at once). */
  readonly uploadConcurrency?: number;
  /** Parallel chunk fetches of a restore, verify or range read (default 32: each fetch is several
   *  thread-pool round trips, so fewer leave the workers idle even from the page cache). */
  readonly fetchConcurrency?: number;
  /** Parallel deletes of a garbage collection sweep (default 8). */
  readonly deleteConcurrency?: number;
  /** Decoded chunks an open disk keeps (default 32). */
  readonly readCacheChunks?: number;
  /** A writer's or sweeper's lease lifetime without heartbeat (default 10 min). */
  readonly leaseMs?: number;
  /** How often waiting writers and GC look again (default 1 s). */
  readonly pollMs?: number;
}

export class RepositoryCore {
  private workerPool?: ChunkWorkerPool;
  private sharedLease?: SharedWriterLease;

  constructor(
    readonly backend: Backend,
    readonly config: RepositoryConfig,
    readonly keys: MasterKeys,
    readonly tuning: RepositoryTuning = {},
  ) {}

  get chunkSize(): number {
    return this.config.chunkSize;
  }

  get pageEntries(): number {
    return this.config.pageEntries;
  }

  get pool(): ChunkWorkerPool {
    this.workerPool ??= new ChunkWorkerPool(
      {
        dataKey: this.keys.dataKey,
        idKey: this.keys.idKey,
        level: this.config.compression.level,
        maxPlainBytes: Math.max(this.config.chunkSize, maxPageBytes(this.config.pageEntries)),
      },
      this.tuning.workers,
    );
    return this.workerPool;
  }

  /** The writer lease the restore points this process writes at once share (shared-writer-lease.ts). */
  get writerLease(): SharedWriterLease {
    const t = this.tuning;
    this.sharedLease ??= new SharedWriterLease(this.backend, { leaseMs: t.leaseMs ?? 600_000, pollMs: t.pollMs ?? 1000, waitMs: t.leaseMs ?? 600_000 });
    return this.sharedLease;
  }

  async close(): Promise<void> {
    await this.workerPool?.close();
    this.workerPool = undefined;
  }

  /** Fetches and opens a chunk, checking its id; throws `ObjectReadError` on any damage. */
  readChunk(id: string): Promise<Uint8Array> {
    return this.withSealedChunk(id, (sealed) => this.pool.open('C', id, sealed, true));
  }

  /**
   * Reads chunk `id` and writes its checked plaintext (or `range` of it: a piece of an
   * incremental's slot) at `position` of the open file `fd` (full restore); the bytes written.
   */
  async readChunkTo(id: string, fd: number, position: number, range?: ChunkRange): Promise<number> {
    // A local directory repository: the worker reads the chunk's file itself (no main-thread
    // read, no buffer handed over). A file it cannot read goes the ordinary way, which maps
    // the failure (missing, no access) as every read does.
    const path = this.backend.localPath?.(chunkKey(id));
    if (path !== undefined) {
      let bytes: number | null;
      try {
        bytes = await this.pool.openFileTo(id, path, fd, position, range);
      } catch (e) {
        if (e instanceof EnvelopeError) throw new ObjectReadError('chunk', id, chunkKey(id), e.failure, e.message);
        throw e;
      }
      if (bytes !== null) return bytes;
    }
    return this.withSealedChunk(id, (sealed) => this.pool.openTo(id, sealed, fd, position, range));
  }

  /**
   * `readChunkTo` for a run of chunks (a restore's batch): from a local directory repository in
   * one trip to one worker, else chunk by chunk at once. Per chunk, in order: the bytes written,
   * or the `ObjectReadError` saying what is wrong with it; any other failure rejects the whole run.
   */
  async readChunksTo(chunks: ReadonlyArray<{ readonly id: string; readonly position: number; readonly range?: ChunkRange }>, fd: number): Promise<Array<number | ObjectReadError>> {
    const settle = (p: Promise<number>) => p.catch((e: unknown) => { if (e instanceof ObjectReadError) return e; throw e; });
    // A local directory repository: the worker makes each chunk's path from the chunks directory
    // (no key checked, joined and sent per chunk on this thread, which the stack's services share).
    const dir = this.backend.localPath?.(CHUNKS_DIR_KEY);
    if (dir === undefined) return Promise.all(chunks.map((c) => settle(this.readChunkTo(c.id, fd, c.position, c.range))));
    const { bytes, failures } = await this.pool.openFilesTo(chunks, fd, dir);
    const out: Array<number | ObjectReadError> = Array.from(bytes);
    if (!failures) return out;
    await Promise.all(failures.map(async ([i, r]) => {
      const { id, position, range } = chunks[i]!;
      if ('failure' in r) out[i] = new ObjectReadError('chunk', id, chunkKey(id), r.failure, r.message);
      // A file the worker could not read goes the ordinary way, which maps the failure (missing, no access) as every read does.
      else out[i] = await settle(this.withSealedChunk(id, (sealed) => this.pool.openTo(id, sealed, fd, position, range)));
    }));
    return out;
  }

  /** Fetches chunk `id` and hands it to `open` (a worker); a missing or damaged chunk becomes `ObjectReadError`. */
  private async withSealedChunk<T>(id: string, open: (sealed: Uint8Array) => Promise<T>): Promise<T> {
    const key = chunkKey(id);
    let sealed: Uint8Array;
    try {
      sealed = await this.backend.get(key);
    } catch (e) {
      if (e instanceof NotFoundError) throw new ObjectReadError('chunk', id, key, 'missing', `not found in ${this.backend.location}`);
      throw e;
    }
    try {
      return await open(sealed);
    } catch (e) {
      if (e instanceof EnvelopeError) throw new ObjectReadError('chunk', id, key, e.failure, e.message);
      throw e;
    }
  }

  /**
   * Page `p` of a disk's index, decoded in the disk's index format (an all-zero page for
   * ZERO_ID): the one way every reader of an index (restore, range reads, verify, GC, damage
   * reports, replication, an incremental's parent) gets at its slots.
   */
  readIndexPage(disk: Pick<DiskManifest, 'pages' | 'pageEntries' | 'sizeBytes' | 'chunkSize' | 'indexFormat'>, p: number): Promise<IndexPage> {
    const nChunks = Math.ceil(disk.sizeBytes / disk.chunkSize);
    const entries = Math.min(disk.pageEntries, nChunks - p * disk.pageEntries);
    return this.readPageById(disk.pages[p] ?? ZERO_ID, entries, disk.indexFormat ?? 1, disk.chunkSize);
  }

  /** Index page `id` of `entries` slots in index format `format`. */
  async readPageById(id: string, entries: number, format: 1 | 2, chunkSize: number): Promise<IndexPage> {
    if (id === ZERO_ID) return new IndexPage(new Array<Slot>(entries).fill(null));
    const key = pageKey(id);
    let plain: Uint8Array;
    try {
      const sealed = await this.backend.get(key);
      plain = open('P', id, sealed, this.keys.dataKey, { idKey: this.keys.idKey, maxPlainBytes: maxPageBytes(this.pageEntries) });
    } catch (e) {
      if (e instanceof NotFoundError) throw new ObjectReadError('index-page', id, key, 'missing', `not found in ${this.backend.location}`);
      if (e instanceof EnvelopeError) throw new ObjectReadError('index-page', id, key, e.failure, e.message);
      throw e;
    }
    try {
      return decodeIndexPage(plain, entries, format, chunkSize);
    } catch (e) {
      if (e instanceof IndexPageFormatError) throw new ObjectReadError('index-page', id, key, 'malformed', e.message);
      throw e;
    } finally {
      release(plain); // decoded into strings: freed now, not at a later GC
    }
  }

  /**
   * Stores an index page of `slots` unless present; returns its id and the bytes written (0 when reused).
   * `deferSync`: durable only after `backend.flush(flushGroup)` (the writer flushes before the manifest).
   */
  async writeIndexPage(slots: readonly Slot[], options: { deferSync?: boolean; flushGroup?: FlushGroup } = {}): Promise<{ id: string; bytes: number }> {
    if (slots.every((s) => s === null)) return { id: ZERO_ID, bytes: 0 };
    const plain = encodeIndexPage(slots);
    const id = contentId(this.keys.idKey, plain);
    const key = pageKey(id);
    // No lookup first: the conditional put answers whether the page was stored already (a
    // page is small, so sealing one that exists costs less than asking the backend each time).
    const { sealed } = seal('P', id, plain, this.keys.dataKey, this.config.compression.level);
    release(plain);
    const bytes = sealed.length;
    const created = await this.backend.put(key, sealed, { ifNotExists: true, deferSync: options.deferSync ?? false, ...(options.flushGroup ? { flushGroup: options.flushGroup } : {}) });
    // Stored (a backend keeps no reference once put resolves, as with chunks): freed now, not at a later GC.
    release(sealed);
    return { id, bytes: created ? bytes : 0 };
  }

  async readManifest(id: string): Promise<Manifest> {
    const key = restorePointKey(id);
    if (!isRestorePointId(id)) throw new RestorePointNotFoundError(id);
    let sealed: Uint8Array;
    try {
      sealed = await this.backend.get(key);
    } catch (e) {
      if (e instanceof NotFoundError) throw new RestorePointNotFoundError(id);
      throw e;
    }
    let plain: Uint8Array;
    try {
      plain = open('M', id, sealed, this.keys.dataKey, { maxPlainBytes: 256 * 1024 * 1024 });
    } catch (e) {
      if (e instanceof EnvelopeError) throw new CorruptObjectError(key, `manifest fails its check (${e.failure}: ${e.message})`);
      throw e;
    }
    try {
      return parseManifest(key, id, plain);
    } finally {
      release(plain); // parsed into objects: its memory is freed now, not at a later GC
    }
  }

  /** Writes a manifest: the restore point's commit. Never replaces one. */
  async writeManifest(m: Manifest): Promise<void> {
    const { sealed } = seal('M', m.id, encodeManifest(m), this.keys.dataKey, this.config.compression.level);
    // `false` can only mean a retried put whose first attempt landed: ids are random and unique.
    await this.backend.put(restorePointKey(m.id), sealed, { ifNotExists: true });
  }

  /** Ids of committed restore points, oldest first. */
  async listRestorePointIds(): Promise<string[]> {
    const ids: string[] = [];
    for await (const o of this.backend.list(RESTORE_POINTS_PREFIX)) {
      const id = o.key.slice(RESTORE_POINTS_PREFIX.length);
      if (isRestorePointId(id)) ids.push(id);
    }
    return ids.sort();
  }
}
