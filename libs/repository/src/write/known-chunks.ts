// Which chunk ids the repository already holds, so a writer uploads only what is missing.
// A writer that checks few chunks (an incremental) asks the backend per chunk (`exists`);
// past `probeLimit` checks one listing of `chunks/` is cheaper and is loaded instead. What is
// learnt is kept across writes while no sweep has run since (the GC generation tells), and
// uploads under way are tracked so concurrent writers never reference a chunk not yet stored.
//
// Memory stays bounded (issue 19): what is known lives in a `ChunkIdTable` (a sorted temporary
// file of whole ids plus 4 bytes per id in memory, exact on every answer); only ids learnt
// since the table was last rebuilt sit in a `Set`, folded into the table in the background once
// there are `max(65,536, table size / 32)` of them.
import { BackendError, type Backend } from '../backend/backend.ts';
import { CHUNKS_PREFIX, chunkKey, idFromContentKey } from '../format/layout.ts';
import { readGeneration } from '../leases/leases.ts';
import { ArrayCursor, ChunkIdTable, defaultTableDir, RunWriter, type Cursor } from './chunk-id-table.ts';

const MIN_DELTA = 65_536;

export class KnownChunks {
  /** Ids known stored, learnt since `table` was built. */
  private delta = new Set<string>();
  /** Ids being folded into a new table (still consulted until it replaces `table`). */
  private merging?: Set<string>;
  private table = ChunkIdTable.empty();
  /** One table rebuild at a time. */
  private rebuilding: Promise<void> = Promise.resolve();
  /** The table a rebuild is reading (closed only once it is done). */
  private reading?: ChunkIdTable;
  /** Bumped by `invalidate`: a listing or a rebuild of an older epoch is dropped. */
  private epoch = 0;
  /** A background fold that failed (disk full?) is retried once the delta has doubled. */
  private foldAt: number;
  private folding = false;
  private listed?: Promise<void>;
  private complete = false;
  private probes = 0;
  private generation?: string;
  /** Uploads under way, so a writer never references a chunk another writer may still fail to store. */
  private readonly uploading = new Map<string, { readonly owner: object; readonly stored: Promise<void> }>();

  constructor(
    private readonly backend: Backend,
    private readonly probeLimit = 256,
    /** Where the table's temporary files go (unlinked at once; ~32 bytes per chunk, 134 MB per TiB). */
    private readonly dir = defaultTableDir(),
    /** Ids learnt before the first fold into the table (tests use a few). */
    private readonly minDelta = MIN_DELTA,
  ) {
    this.foldAt = minDelta;
  }

  /** Drops what a sweep may have invalidated; returns the generation this writer relies on. */
  async refresh(): Promise<string> {
    const generation = await readGeneration(this.backend);
    if (generation !== this.generation) {
      this.invalidate();
      this.generation = generation;
    }
    return generation;
  }

  /** Whether chunk `id` is known to be stored, without asking the backend. */
  has(id: string): boolean {
    return this.delta.has(id) || (this.merging?.has(id) ?? false) || this.table.has(id);
  }

  /** Bytes held in memory by what is known (the table's index and the ids not yet folded in, estimated). */
  get memoryBytes(): number {
    return this.table.memoryBytes + (this.delta.size + (this.merging?.size ?? 0)) * 120;
  }

  /** Whether the repository holds chunk `id` (uploads of this process included). */
  async contains(id: string): Promise<boolean> {
    if (this.has(id)) return true;
    if (this.complete) return false;
    if (this.probes < this.probeLimit && !this.listed) {
      this.probes++;
      const epoch = this.epoch;
      const found = await this.backend.exists(chunkKey(id));
      if (found && epoch === this.epoch) this.add(id);
      return found;
    }
    if (!this.listed) {
      const listing = this.list();
      this.listed = listing;
      // A failed listing is not remembered: the next writer lists again.
      listing.catch(() => { if (this.listed === listing) this.listed = undefined; });
    }
    await this.listed;
    return this.has(id);
  }

  private async list(): Promise<void> {
    const epoch = this.epoch;
    const runs = new RunWriter(this.dir);
    try {
      for await (const o of this.backend.list(CHUNKS_PREFIX)) {
        const id = idFromContentKey(o.key);
        if (id) await runs.add(id);
        if (epoch !== this.epoch) return;
      }
      await this.rebuild(runs.cursors(), runs.count, epoch);
      if (epoch === this.epoch) this.complete = true;
    } catch (e) {
      // A local file failed (a backend's errors are BackendErrors, passed on as they are).
      if (!(e instanceof BackendError) && (e as NodeJS.ErrnoException).syscall !== undefined) {
        throw new Error(`the known-chunks table in ${this.dir} could not be written: ${(e as Error).message} (it takes ~32 bytes per chunk of the repository; TMPDIR chooses the directory)`, { cause: e });
      }
      throw e;
    } finally {
      await runs.close().catch(() => undefined);
    }
  }

  private add(id: string): void {
    this.delta.add(id);
    if (this.delta.size >= this.foldAt && !this.folding) {
      const size = this.delta.size;
      this.folding = true;
      this.rebuild([], 0, this.epoch).then(
        () => { this.foldAt = Math.max(this.minDelta, Math.ceil(this.table.count / 32)); },
        () => { this.foldAt = 2 * size; },
      ).finally(() => { this.folding = false; });
    }
  }

  /**
   * Replaces the table by its union with the ids learnt so far and `extra` (sorted cursors of
   * at most `extraCount` ids); one rebuild at a time, dropped if `invalidate` ran meanwhile.
   */
  private rebuild(extra: readonly Cursor[], extraCount: number, epoch: number): Promise<void> {
    const run = this.rebuilding.then(async () => {
      if (epoch !== this.epoch) return;
      const folding = this.delta;
      this.merging = folding;
      this.delta = new Set();
      const base = this.table;
      this.reading = base;
      let next: ChunkIdTable;
      try {
        next = await ChunkIdTable.merge(this.dir, [base.cursor(), new ArrayCursor(folding), ...extra], base.count + folding.size + extraCount);
      } catch (e) {
        if (epoch === this.epoch) {
          for (const id of folding) this.delta.add(id);
          this.merging = undefined;
        }
        throw e;
      } finally {
        this.reading = undefined;
        if (epoch !== this.epoch) base.close(); // invalidated meanwhile: dropped, not closed, by invalidate
      }
      if (epoch !== this.epoch) { next.close(); return; }
      this.table = next;
      this.merging = undefined;
      base.close();
    });
    this.rebuilding = run.catch(() => undefined);
    return run;
  }

  /** The upload of `id` under way in this process, if any, and which writer owns it. */
  inFlight(id: string): { readonly owner: object; readonly stored: Promise<void> } | undefined {
    return this.uploading.get(id);
  }

  /**
   * Records an upload by writer `owner`: `stored` settles when the put returned (other chunks
   * of the same writer may then reference it), `durable` when the writer's flush made it
   * durable and named; only then does the id count as held for every writer. A deferred
   * object is not named before its writer's flush, so another writer that needs it uploads its
   * own copy (content-addressed: the same object) rather than depend on a flush that may fail.
   */
  claim(id: string, owner: object, stored: Promise<void>, durable: Promise<void>): void {
    const entry = { owner, stored };
    this.uploading.set(id, entry);
    const drop = () => { if (this.uploading.get(id) === entry) this.uploading.delete(id); };
    stored.then(() => durable).then(
      () => { this.add(id); drop(); },
      drop,
    );
  }

  /** Forget everything (after a sweep). */
  invalidate(): void {
    this.epoch++;
    this.generation = undefined;
    this.delta = new Set();
    this.merging = undefined;
    if (this.table !== this.reading) this.table.close();
    this.table = ChunkIdTable.empty();
    this.foldAt = this.minDelta;
    this.listed = undefined;
    this.complete = false;
    this.probes = 0;
  }

  /** Releases the table's file (the repository closes it). */
  close(): void {
    this.invalidate();
  }
}
