// Which chunk ids the repository already holds, so a writer uploads only what is missing.
// Loaded from one listing of `chunks/` and kept across writes while no sweep has run since
// (the GC generation tells); ids added by this process are recorded as they are uploaded.
import type { Backend } from '../backend/backend.ts';
import { CHUNKS_PREFIX, idFromContentKey } from '../format/layout.ts';
import { readGeneration } from '../maintenance/leases.ts';

export class KnownChunks {
  private ids = new Set<string>();
  private generation?: string;
  /** Uploads under way, so a writer never references a chunk another writer may still fail to store. */
  private readonly uploading = new Map<string, Promise<void>>();

  constructor(private readonly backend: Backend) {}

  /** Makes sure the set reflects the repository (re-lists after a sweep); returns the generation. */
  async refresh(): Promise<string> {
    const generation = await readGeneration(this.backend);
    if (generation !== this.generation) {
      const ids = new Set<string>();
      for await (const o of this.backend.list(CHUNKS_PREFIX)) {
        const id = idFromContentKey(o.key);
        if (id) ids.add(id);
      }
      this.ids = ids;
      this.generation = generation;
    }
    return generation;
  }

  has(id: string): boolean {
    return this.ids.has(id);
  }

  /** The upload of `id` in progress (by any writer of this process), if any. */
  inFlight(id: string): Promise<void> | undefined {
    return this.uploading.get(id);
  }

  /** Records an upload; the id becomes known when it succeeds. */
  claim(id: string, upload: Promise<void>): void {
    this.uploading.set(id, upload);
    upload.then(
      () => { this.ids.add(id); this.uploading.delete(id); },
      () => { this.uploading.delete(id); },
    );
  }

  /** Forget everything (after this process swept). */
  invalidate(): void {
    this.generation = undefined;
    this.ids.clear();
  }

  get size(): number {
    return this.ids.size;
  }
}
