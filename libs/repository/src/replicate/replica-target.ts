// The target side of replication: a copy repository on another site's backend, written
// without any key. It takes the source's config and wrapped key objects verbatim (so the
// copy opens with the source's passphrase or key provider, and only with those), sealed
// objects exactly as the source stored them, and the manifest last. Each object's SHA-256,
// checked on arrival against what the source read, is kept beside it under `replica/sums/`,
// so the copy can be verified here without the key: shape and digest of every object.
import { type Backend, NotFoundError } from '../backend/backend.ts';
import { RepositoryExistsError } from '../errors.ts';
import { parseConfig } from '../format/config.ts';
import { CONFIG_KEY, keyObjectKey } from '../format/layout.ts';
import { forEachLimit } from '../write/semaphore.ts';
import type { RepositoryIdentity } from './replication-source.ts';
import { sealedKey, sealedShapeProblem, sha256Hex, type SealedKind, type SealedRef } from './sealed-objects.ts';

export const REPLICA_SUMS_PREFIX = 'replica/sums/';

/** A sealed object arrived damaged or not the one announced; nothing was written. */
export class ReplicaIntegrityError extends Error {
  override readonly name = 'ReplicaIntegrityError';
  constructor(readonly ref: SealedRef, readonly detail: string) {
    super(`${ref.kind} ${ref.id}: ${detail}`);
  }
}

export type ReplicaDamage = 'missing' | 'digest-mismatch' | 'malformed' | 'no-digest';

export interface ReplicaDamagedObject extends SealedRef {
  readonly damage: ReplicaDamage;
  readonly detail: string;
}

export interface ReplicaVerifyReport {
  readonly ok: boolean;
  readonly objectsChecked: number;
  readonly bytesChecked: number;
  readonly damaged: readonly ReplicaDamagedObject[];
}

const sumKey = (ref: SealedRef): string => `${REPLICA_SUMS_PREFIX}${sealedKey(ref)}`;

function refOfSumKey(key: string): SealedRef | undefined {
  const rest = key.slice(REPLICA_SUMS_PREFIX.length);
  const id = rest.slice(rest.lastIndexOf('/') + 1);
  const kind: SealedKind | undefined = rest.startsWith('chunks/') ? 'chunk' : rest.startsWith('index/') ? 'index-page'
    : rest.startsWith('restore-points/') ? 'manifest' : undefined;
  if (!kind) return undefined;
  try { return sealedKey({ kind, id }) === rest ? { kind, id } : undefined; } catch { return undefined; }
}

export class ReplicaTarget {
  constructor(readonly backend: Backend, private readonly concurrency = 16) {}

  /** Id of the repository this copy holds, or undefined before the first `adopt`. */
  async repositoryId(): Promise<string | undefined> {
    try {
      return parseConfig(await this.backend.get(CONFIG_KEY), this.backend.location).repositoryId;
    } catch (e) {
      if (e instanceof NotFoundError) return undefined;
      throw e;
    }
  }

  /**
   * Makes this backend a copy of the source repository: key objects first, config last.
   * Again later, it adds key objects the source gained. Refuses another repository's copy.
   */
  async adopt(identity: RepositoryIdentity): Promise<'created' | 'same'> {
    const incoming = parseConfig(identity.config, 'replication source');
    if (incoming.repositoryId !== identity.repositoryId) throw new RangeError('identity: config and repository id disagree');
    const present = await this.repositoryId();
    if (present !== undefined && present !== identity.repositoryId) {
      throw new RepositoryExistsError(`${this.backend.location} holds a copy of repository ${present}, not ${identity.repositoryId}`);
    }
    for (const k of identity.keys) await this.backend.put(keyObjectKey(k.keyId), k.bytes, { ifNotExists: true });
    if (present !== undefined) return 'same';
    await this.backend.put(CONFIG_KEY, identity.config, { ifNotExists: true });
    return 'created';
  }

  /** The objects among `refs` this copy lacks (the object or its digest record is absent). */
  async missing(refs: readonly SealedRef[]): Promise<SealedRef[]> {
    const absent = new Array<boolean>(refs.length).fill(false);
    await forEachLimit(refs.map((r, i) => ({ r, i })), this.concurrency, async ({ r, i }) => {
      absent[i] = !(await this.backend.exists(sumKey(r))) || !(await this.backend.exists(sealedKey(r)));
    });
    return refs.filter((_, i) => absent[i]);
  }

  /**
   * Stores a sealed object after checking its shape and that its bytes hash to `sha256` (as
   * read at the source). Replaces what is there: this is also how a damaged copy is repaired.
   */
  async put(obj: SealedRef & { readonly bytes: Uint8Array; readonly sha256: string }): Promise<void> {
    const ref = { kind: obj.kind, id: obj.id };
    if (obj.kind === 'manifest') throw new RangeError('a manifest is written by commit(), last');
    this.check(ref, obj.bytes, obj.sha256);
    await this.backend.put(sealedKey(ref), obj.bytes);
    await this.backend.put(sumKey(ref), Buffer.from(obj.sha256 + '\n'));
  }

  /**
   * Replaces a damaged object, manifests included, with the source's (checked the same way).
   * Only for objects a verify reported: a manifest is otherwise written by `commit`, last.
   */
  async repair(obj: SealedRef & { readonly bytes: Uint8Array; readonly sha256: string }): Promise<void> {
    const ref = { kind: obj.kind, id: obj.id };
    this.check(ref, obj.bytes, obj.sha256);
    await this.backend.put(sealedKey(ref), obj.bytes);
    await this.backend.put(sumKey(ref), Buffer.from(obj.sha256 + '\n'));
  }

  /**
   * Commits a restore point: every index page it names must be here (chunks were checked
   * before their pages were sent), then the manifest. `false` when it was committed before.
   */
  async commit(manifest: { readonly id: string; readonly bytes: Uint8Array; readonly sha256: string }, pageIds: readonly string[]): Promise<boolean> {
    const ref: SealedRef = { kind: 'manifest', id: manifest.id };
    this.check(ref, manifest.bytes, manifest.sha256);
    const lacking = await this.missing([...new Set(pageIds)].map((id) => ({ kind: 'index-page' as const, id })));
    if (lacking.length) throw new ReplicaIntegrityError(ref, `${lacking.length} of its index pages are not in the copy (first ${lacking[0]!.id})`);
    const created = await this.backend.put(sealedKey(ref), manifest.bytes, { ifNotExists: true });
    await this.backend.put(sumKey(ref), Buffer.from(manifest.sha256 + '\n'));
    return created;
  }

  async hasRestorePoint(id: string): Promise<boolean> {
    return (await this.missing([{ kind: 'manifest', id }])).length === 0;
  }

  /** Checks every object of the copy against its digest record, without any key. */
  async verify(): Promise<ReplicaVerifyReport> {
    const refs: SealedRef[] = [];
    for await (const o of this.backend.list(REPLICA_SUMS_PREFIX)) {
      const ref = refOfSumKey(o.key);
      if (ref) refs.push(ref);
    }
    const damaged: ReplicaDamagedObject[] = [];
    let bytesChecked = 0;
    await forEachLimit(refs, this.concurrency, async (ref) => {
      const want = Buffer.from(await this.backend.get(sumKey(ref))).toString('utf8').trim();
      let bytes: Uint8Array;
      try {
        bytes = await this.backend.get(sealedKey(ref));
      } catch (e) {
        if (e instanceof NotFoundError) { damaged.push({ ...ref, damage: 'missing', detail: 'the object is gone' }); return; }
        throw e;
      }
      bytesChecked += bytes.length;
      const shape = sealedShapeProblem(ref.kind, bytes);
      if (shape) { damaged.push({ ...ref, damage: 'malformed', detail: shape }); return; }
      const got = sha256Hex(bytes);
      if (got !== want) damaged.push({ ...ref, damage: 'digest-mismatch', detail: `SHA-256 ${got}, recorded ${want}` });
    });
    damaged.sort((a, b) => (a.kind + a.id < b.kind + b.id ? -1 : 1));
    return { ok: damaged.length === 0, objectsChecked: refs.length, bytesChecked, damaged };
  }

  private check(ref: SealedRef, bytes: Uint8Array, sha256: string): void {
    const shape = sealedShapeProblem(ref.kind, bytes);
    if (shape) throw new ReplicaIntegrityError(ref, shape);
    const got = sha256Hex(bytes);
    if (got !== sha256) throw new ReplicaIntegrityError(ref, `arrived with SHA-256 ${got}, the source read ${sha256}`);
  }
}
