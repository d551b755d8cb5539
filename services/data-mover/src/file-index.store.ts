// File indexes kept in the repository: each is a small restore point of its own (one disk,
// `file-index`, the gzipped index) under the pseudo-VM `cairn-file-index`, labelled with the
// restore point it describes. So it is chunked, encrypted and deduplicated like any data,
// replicated with the rest, and read back without an appliance.
import { decodeFileIndex, encodeFileIndex, type FileIndex } from '@cairn/guest-files';
import type { RestorePointSummary, RestorePointWriter, RetentionRole } from '@cairn/repository';

/** What the index store does with a repository: write an index as a restore point, read it, drop it. */
export type IndexStoreRole = RestorePointWriter & Pick<RetentionRole, 'deleteRestorePoint'>;

export const INDEX_VM = { id: 'cairn-file-index', name: 'file indexes' } as const;
export const INDEX_OF = 'cairn.file-index-of';
const DISK = 'file-index';

export interface IndexedPoint {
  readonly indexId: string;
  readonly restorePointId: string;
}

/** The repository's file indexes and the restore points they describe (one listing). */
export function splitPoints(all: readonly RestorePointSummary[]): { points: RestorePointSummary[]; indexes: Map<string, string> } {
  const indexes = new Map<string, string>();
  const points: RestorePointSummary[] = [];
  for (const p of all) {
    const of = p.labels?.[INDEX_OF];
    if (p.vm.id === INDEX_VM.id) { if (of) indexes.set(of, p.id); } else points.push(p);
  }
  return { points, indexes };
}

export class FileIndexStore {
  private readonly cache = new Map<string, FileIndex>();

  constructor(private readonly repo: IndexStoreRole) {}

  async put(restorePointId: string, index: FileIndex): Promise<string> {
    const bytes = encodeFileIndex(index);
    const r = await this.repo.writeRestorePoint({
      vm: INDEX_VM,
      disks: [{ name: DISK, sizeBytes: bytes.length, extents: [{ offset: 0, data: bytes }], full: true }],
      labels: { [INDEX_OF]: restorePointId },
    });
    return r.restorePointId;
  }

  async read(indexId: string): Promise<FileIndex> {
    const hit = this.cache.get(indexId);
    if (hit) return hit;
    const disk = await this.repo.openDisk(indexId, DISK);
    const index = decodeFileIndex(await disk.read(0, disk.sizeBytes));
    if (this.cache.size >= 64) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(indexId, index);
    return index;
  }

  /** Deletes the index of a restore point that went (retention, deletion). */
  async remove(restorePointId: string): Promise<boolean> {
    const { indexes } = splitPoints(await this.repo.listRestorePoints());
    const id = indexes.get(restorePointId);
    if (!id) return false;
    await this.repo.deleteRestorePoint(id);
    this.cache.delete(id);
    return true;
  }
}
