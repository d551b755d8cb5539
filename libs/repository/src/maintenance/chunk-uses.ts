// Finds where chunks and index pages are used: which restore points, disks and offsets.
// Damage reports name these so an operator knows exactly what a bad chunk takes down.
import type { ChunkUse, DamagedObject } from '../errors.ts';
import { ZERO_ID, type Manifest } from '../format/manifest.ts';
import type { IndexPage } from '../format/index-page.ts';
import { ObjectReadError, type RepositoryCore } from '../repository-core.ts';

const MAX_OFFSETS = 64;

/** Calls `visit` for every chunk entry of every disk of `manifests` (page load errors go to `onPageError`). */
export async function walkIndexes(
  core: RepositoryCore,
  manifests: readonly Manifest[],
  visit: (chunkId: string, m: Manifest, disk: string, offset: number) => void,
  onPage: (pageId: string, m: Manifest, disk: string, offset: number) => void,
  onPageError: (error: ObjectReadError, m: Manifest, disk: string, offset: number) => void,
): Promise<void> {
  for (const m of manifests) {
    for (const d of m.disks) {
      for (let p = 0; p < d.pages.length; p++) {
        const pageId = d.pages[p] as string;
        const first = p * d.pageEntries;
        onPage(pageId, m, d.name, first * d.chunkSize);
        if (pageId === ZERO_ID) continue;
        let page: IndexPage;
        try {
          page = await core.readIndexPage(d, p);
        } catch (e) {
          if (e instanceof ObjectReadError) { onPageError(e, m, d.name, first * d.chunkSize); continue; }
          throw e;
        }
        // A chunk a slot uses in pieces is named at the disk offset where its first piece starts.
        for (const u of page.chunkUses()) visit(u.id, m, d.name, (first + u.slot) * d.chunkSize + u.at);
      }
    }
  }
}

/** Collects uses per id: Map<id, Map<"rp\0disk", ChunkUse>> flattened on demand. */
export class UseCollector {
  private readonly uses = new Map<string, Map<string, { restorePointId: string; disk: string; offsets: number[] }>>();

  add(id: string, restorePointId: string, disk: string, offset: number): void {
    let perId = this.uses.get(id);
    if (!perId) { perId = new Map(); this.uses.set(id, perId); }
    const k = `${restorePointId}\0${disk}`;
    let u = perId.get(k);
    if (!u) { u = { restorePointId, disk, offsets: [] }; perId.set(k, u); }
    if (u.offsets.length < MAX_OFFSETS) u.offsets.push(offset);
  }

  get(id: string): ChunkUse[] {
    return [...(this.uses.get(id)?.values() ?? [])];
  }

  ids(): IterableIterator<string> {
    return this.uses.keys();
  }

  get size(): number {
    return this.uses.size;
  }
}

/** Every use, across all committed restore points, of the given chunk/page ids. */
export async function findUses(core: RepositoryCore, ids: ReadonlySet<string>): Promise<UseCollector> {
  const found = new UseCollector();
  const manifests: Manifest[] = [];
  for (const id of await core.listRestorePointIds()) {
    try { manifests.push(await core.readManifest(id)); } catch { /* a damaged manifest uses nothing we can name */ }
  }
  await walkIndexes(
    core, manifests,
    (chunkId, m, disk, offset) => { if (ids.has(chunkId)) found.add(chunkId, m.id, disk, offset); },
    (pageId, m, disk, offset) => { if (ids.has(pageId)) found.add(pageId, m.id, disk, offset); },
    () => undefined,
  );
  return found;
}

export function toDamaged(e: ObjectReadError, uses: UseCollector | undefined): DamagedObject {
  return { kind: e.kind, id: e.id, key: e.key, damage: e.damage, detail: e.detail, uses: uses?.get(e.id) ?? [] };
}
