// The source side of replication, on an open repository (it holds the keys): which objects
// a restore point is made of, and their sealed bytes, checked before they leave. Nothing is
// decrypted for the target: what is sent is the sealed object exactly as stored.
import { NotFoundError } from '../backend/backend.ts';
import { EnvelopeError, open } from '../format/envelope.ts';
import { keyObjectKey, KEYS_PREFIX, CONFIG_KEY } from '../format/layout.ts';
import { ZERO_ID, type Manifest } from '../format/manifest.ts';
import { ObjectReadError, type RepositoryCore } from '../repository-core.ts';
import { sealedKey, sha256Hex, type SealedKind } from './sealed-objects.ts';

/** The repository's identity as a copy needs it: config and wrapped key objects, verbatim. */
export interface RepositoryIdentity {
  readonly repositoryId: string;
  readonly config: Uint8Array;
  readonly keys: ReadonlyArray<{ readonly keyId: string; readonly bytes: Uint8Array }>;
}

/** One index page of a restore point's disk, where it sits in the disk's index. */
export interface PageRef {
  readonly id: string;
  readonly disk: string;
  /** Position of the page in the disk's index (0-based). */
  readonly index: number;
  /** Chunk entries the page holds. */
  readonly entries: number;
  /** The disk's index format (format/index-page.ts). */
  readonly format: 1 | 2;
  readonly chunkSize: number;
}

export interface SealedObject {
  readonly kind: SealedKind;
  readonly id: string;
  readonly bytes: Uint8Array;
  /** SHA-256 of `bytes`, for the keyless check at the target. */
  readonly sha256: string;
}

/** Made by `Repository.replicationSource()`, which hands it the repository's core. */
export class ReplicationSource {
  constructor(private readonly core: RepositoryCore) {}

  get repositoryId(): string { return this.core.config.repositoryId; }

  async identity(): Promise<RepositoryIdentity> {
    const keys: Array<{ keyId: string; bytes: Uint8Array }> = [];
    for await (const o of this.core.backend.list(KEYS_PREFIX)) {
      const keyId = o.key.slice(KEYS_PREFIX.length);
      if (keyObjectKey(keyId) === o.key) keys.push({ keyId, bytes: await this.core.backend.get(o.key) });
    }
    return { repositoryId: this.repositoryId, config: await this.core.backend.get(CONFIG_KEY), keys };
  }

  manifest(restorePointId: string): Promise<Manifest> {
    return this.core.readManifest(restorePointId);
  }

  /** The non-zero index pages of a restore point, disk by disk, in index order. */
  async pages(restorePointId: string): Promise<PageRef[]> {
    const m = await this.core.readManifest(restorePointId);
    const out: PageRef[] = [];
    for (const d of m.disks) {
      const chunks = Math.ceil(d.sizeBytes / d.chunkSize);
      d.pages.forEach((id, index) => {
        if (id !== ZERO_ID) out.push({ id, disk: d.name, index, entries: Math.min(d.pageEntries, chunks - index * d.pageEntries), format: d.indexFormat ?? 1, chunkSize: d.chunkSize });
      });
    }
    return out;
  }

  /** Chunk ids an index page points at (all-zero chunks left out, pieces included), in disk order. */
  async pageChunks(page: Pick<PageRef, 'id' | 'entries' | 'format' | 'chunkSize'>): Promise<string[]> {
    if (page.id === ZERO_ID) return [];
    const index = await this.core.readPageById(page.id, page.entries, page.format, page.chunkSize);
    return [...index.chunkUses()].map((u) => u.id);
  }

  /**
   * The sealed bytes of an object, opened once here (authentication, decompression and, for
   * chunks and pages, the content id) so that damage at the source is never replicated.
   * Throws `ObjectReadError` when the object is missing or damaged.
   */
  async sealed(kind: SealedKind, id: string): Promise<SealedObject> {
    const key = sealedKey({ kind, id });
    const readKind = kind === 'manifest' ? 'chunk' : kind; // ObjectReadError knows chunks and pages
    let bytes: Uint8Array;
    try {
      bytes = await this.core.backend.get(key);
    } catch (e) {
      if (e instanceof NotFoundError) throw new ObjectReadError(readKind, id, key, 'missing', `not found in ${this.core.backend.location}`);
      throw e;
    }
    try {
      if (kind === 'manifest') open('M', id, bytes, this.core.keys.dataKey, { maxPlainBytes: 256 * 1024 * 1024 });
      // The pool consumes what it opens: it gets a copy, the sealed bytes stay ours.
      else await this.core.pool.open(kind === 'chunk' ? 'C' : 'P', id, Uint8Array.from(bytes), true);
    } catch (e) {
      if (e instanceof EnvelopeError) throw new ObjectReadError(readKind, id, key, e.failure, e.message);
      throw e;
    }
    return { kind, id, bytes, sha256: sha256Hex(bytes) };
  }
}
