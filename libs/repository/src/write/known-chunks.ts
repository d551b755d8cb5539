// Which chunk ids the repository already holds, so a writer uploads only what is missing.
// A writer that checks few chunks (an incremental) asks the backend per chunk (`exists`);
// past `probeLimit` checks one listing of `chunks/` is cheaper and is loaded instead. What is
// learnt is kept across writes while no sweep has run since (the GC generation tells), and
// uploads under way are tracked so concurrent writers never reference a chunk not yet stored.
import type { Backend } from '../backend/backend.ts';
import { CHUNKS_PREFIX, chunkKey, idFromContentKey } from '../format/layout.ts';
import { readGeneration } from '../leases/leases.ts';

export class KnownChunks {
  private ids = new Set<string>();
  private listed?: Promise<void>;
  private complete = false;
  private probes = 0;
  private generation?: string;
  /** Uploads under way, so a writer never references a chunk another writer may still fail to store. */
  private readonly uploading = new Map<string, { readonly owner: object; readonly stored: Promise<void> }>();

  constructor(
    private readonly backend: Backend,
    private readonly probeLimit = 256,
  ) {}

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
    return this.ids.has(id);
  }

  /** Whether the repository holds chunk `id` (uploads of this process included). */
  async contains(id: string): Promise<boolean> {
    if (this.ids.has(id)) return true;
    if (this.complete) return false;
    if (this.probes < this.probeLimit && !this.listed) {
      this.probes++;
      const found = await this.backend.exists(chunkKey(id));
      if (found) this.ids.add(id);
      return found;
    }
    this.listed ??= this.list();
    await this.listed;
    return this.ids.has(id);
  }

  private async list(): Promise<void> {
    for await (const o of this.backend.list(CHUNKS_PREFIX)) {
      const id = idFromContentKey(o.key);
      if (id) this.ids.add(id);
    }
    this.complete = true;
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
      () => { this.ids.add(id); drop(); },
      drop,
    );
  }

  /** Forget everything (after a sweep). */
  invalidate(): void {
    this.generation = undefined;
    this.ids = new Set();
    this.listed = undefined;
    this.complete = false;
    this.probes = 0;
  }
}
