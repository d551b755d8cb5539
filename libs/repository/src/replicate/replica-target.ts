// The target side of replication: a copy repository on another site's backend, written
// without any key. It takes the source's config and wrapped key objects verbatim (so the
// copy opens with the source's passphrase or key provider, and only with those), sealed
// objects exactly as the source stored them, and the manifest last. Each object's SHA-256,
// checked on arrival against what the source read, is kept beside it under `replica/sums/`,
// so the copy can be verified here without the key: shape and digest of every object.
//
// Lifecycle without the key: with each restore point the source sends the ids of the chunks
// and index pages it references (`replica/refs/<id>`, ids are object names, not secrets),
// before its manifest. `expire` removes a replica (manifest, digest, refs) and leaves a
// tombstone so a late commit cannot bring it back; `gc` deletes the chunks and pages no
// remaining replica references (mark: the union of their refs; sweep: unreferenced objects
// older than a grace period). A replica committed without refs (before copies carried them)
// makes its objects unknown, so `gc` then sweeps nothing. No sweep runs while a copy is being
// received (any transfer call within `busyMs`), copy calls wait for a running sweep, and a
// commit that straddles a sweep checks that every object its refs name is still here.
import { type Backend, NotFoundError } from '../backend/backend.ts';
import { RepositoryExistsError } from '../errors.ts';
import { parseConfig } from '../format/config.ts';
import { CHUNKS_PREFIX, CONFIG_KEY, INDEX_PREFIX, RESTORE_POINTS_PREFIX, isContentId, isRestorePointId, keyObjectKey } from '../format/layout.ts';
import { forEachLimit } from '../concurrency/semaphore.ts';
import type { RepositoryIdentity } from './replication-source.ts';
import { sealedKey, sealedShapeProblem, sha256Hex, type SealedKind, type SealedRef } from './sealed-objects.ts';

export const REPLICA_SUMS_PREFIX = 'replica/sums/';
export const REPLICA_REFS_PREFIX = 'replica/refs/';
export const REPLICA_EXPIRED_PREFIX = 'replica/expired/';

/** The restore point was expired at the source: this copy will not take it again. */
export class ReplicaExpiredError extends Error {
  override readonly name = 'ReplicaExpiredError';
  constructor(readonly restorePointId: string) {
    super(`restore point ${restorePointId} was expired at the source; this copy removed it and does not take it again`);
  }
}

/** The chunk and index-page ids one restore point references. */
export interface ReplicaRefs {
  readonly pages: readonly string[];
  readonly chunks: readonly string[];
}

const REFS_MAGIC = 'CRF1';

/** `CRF1`, u32 page count, u32 chunk count, then the 32-byte ids (pages first). */
export function encodeRefs(refs: ReplicaRefs): Uint8Array {
  const out = Buffer.alloc(12 + 32 * (refs.pages.length + refs.chunks.length));
  out.write(REFS_MAGIC, 0, 'latin1');
  out.writeUInt32BE(refs.pages.length, 4);
  out.writeUInt32BE(refs.chunks.length, 8);
  let o = 12;
  for (const id of [...refs.pages, ...refs.chunks]) {
    if (!isContentId(id)) throw new RangeError(`not a content id: ${JSON.stringify(id)}`);
    out.write(id, o, 32, 'hex');
    o += 32;
  }
  return out;
}

export function decodeRefs(bytes: Uint8Array): ReplicaRefs {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < 12 || b.toString('latin1', 0, 4) !== REFS_MAGIC) throw new RangeError('not a refs list');
  const pages = b.readUInt32BE(4);
  const chunks = b.readUInt32BE(8);
  if (b.length !== 12 + 32 * (pages + chunks)) throw new RangeError(`refs list of ${b.length} bytes, header says ${pages} pages and ${chunks} chunks`);
  const ids: string[] = [];
  for (let o = 12; o < b.length; o += 32) ids.push(b.toString('hex', o, o + 32));
  return { pages: ids.slice(0, pages), chunks: ids.slice(pages) };
}

export interface ReplicaGcReport {
  /** A copy was being received: nothing was swept. */
  readonly deferred: boolean;
  readonly liveReplicas: number;
  /** Replicas without a refs list: their objects are unknown, so nothing was swept. */
  readonly withoutRefs: number;
  readonly objectsDeleted: number;
  readonly bytesFreed: number;
  readonly objectsKeptYoung: number;
}

export interface ReplicaGcOptions {
  /** Unreferenced objects modified less than this long ago are kept (default 1 hour). */
  readonly graceMs?: number;
  readonly now?: Date;
}

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
  /** When the last transfer call (missing, put, refs, commit) came. */
  private lastActivity = 0;
  /** The sweep running now; transfer calls wait for it. */
  private sweeping?: Promise<unknown>;
  /** Sweeps that deleted something, and their count when the current copy began. */
  private sweeps = 0;
  private sweepsAtSessionStart = 0;

  /** `busyMs`: how long after a transfer call a copy counts as running (no sweep then). */
  constructor(readonly backend: Backend, private readonly concurrency = 16, readonly busyMs = 60_000) {}

  /** A transfer call: waits for a running sweep, and marks a copy as running. */
  private async activity(): Promise<void> {
    while (this.sweeping) await this.sweeping.catch(() => undefined);
    const now = Date.now();
    if (now - this.lastActivity > this.busyMs) this.sweepsAtSessionStart = this.sweeps; // a new copy session
    this.lastActivity = now;
  }

  /** A copy into this store is running (a transfer call within `busyMs`). */
  get copyRunning(): boolean {
    return Date.now() - this.lastActivity <= this.busyMs;
  }

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
    await this.activity();
    return this.lacking(refs);
  }

  private async lacking(refs: readonly SealedRef[]): Promise<SealedRef[]> {
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
    await this.activity();
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
    await this.activity();
    if (await this.backend.exists(REPLICA_EXPIRED_PREFIX + manifest.id)) {
      this.lastActivity = 0; // this copy ends here
      throw new ReplicaExpiredError(manifest.id);
    }
    // A sweep ran while this copy was under way: what `missing` called present before it may
    // have gone since. Every object the refs name must be here (else the copy sends it again).
    if (this.sweeps !== this.sweepsAtSessionStart) {
      const refs = await this.readRefs(manifest.id);
      if (refs) {
        const gone = await this.lacking([...refs.pages.map((id) => ({ kind: 'index-page' as const, id })), ...refs.chunks.map((id) => ({ kind: 'chunk' as const, id }))]);
        if (gone.length) {
          this.sweepsAtSessionStart = this.sweeps; // the copy run again asks again
          throw new ReplicaIntegrityError(ref, `${gone.length} objects it references went in a replica GC during the copy (first ${gone[0]!.kind} ${gone[0]!.id}); copy it again`);
        }
      }
    }
    const lacking = await this.lacking([...new Set(pageIds)].map((id) => ({ kind: 'index-page' as const, id })));
    if (lacking.length) throw new ReplicaIntegrityError(ref, `${lacking.length} of its index pages are not in the copy (first ${lacking[0]!.id})`);
    const created = await this.backend.put(sealedKey(ref), manifest.bytes, { ifNotExists: true });
    await this.backend.put(sumKey(ref), Buffer.from(manifest.sha256 + '\n'));
    this.lastActivity = 0; // the copy is done: a sweep may run (the next copy's calls wait for it)
    return created;
  }

  async hasRestorePoint(id: string): Promise<boolean> {
    return (await this.lacking([{ kind: 'manifest', id }])).length === 0;
  }

  /** Stores the refs list of a restore point (a ReplicaSink call; before its manifest). */
  putRefs(restorePointId: string, refs: ReplicaRefs): Promise<void> {
    const bytes = encodeRefs(refs);
    return this.storeRefs(restorePointId, bytes, sha256Hex(bytes));
  }

  /** Stores an encoded refs list as it came over a transfer, checked against its SHA-256. */
  async storeRefs(restorePointId: string, bytes: Uint8Array, sha256: string): Promise<void> {
    if (!isRestorePointId(restorePointId)) throw new RangeError(`not a restore point id: ${JSON.stringify(restorePointId)}`);
    const got = sha256Hex(bytes);
    if (got !== sha256) throw new ReplicaIntegrityError({ kind: 'manifest', id: restorePointId }, `refs list arrived with SHA-256 ${got}, the source sent ${sha256}`);
    decodeRefs(bytes);
    await this.activity();
    if (await this.backend.exists(REPLICA_EXPIRED_PREFIX + restorePointId)) {
      this.lastActivity = 0; // this copy ends here
      throw new ReplicaExpiredError(restorePointId);
    }
    await this.backend.put(REPLICA_REFS_PREFIX + restorePointId, bytes);
  }

  /** The refs list of a restore point, or undefined when it has none (copied before refs existed). */
  async readRefs(restorePointId: string): Promise<ReplicaRefs | undefined> {
    try {
      return decodeRefs(await this.backend.get(REPLICA_REFS_PREFIX + restorePointId));
    } catch (e) {
      if (e instanceof NotFoundError) return undefined;
      throw e;
    }
  }

  /**
   * Removes a replica: a tombstone first (a late commit of it is refused), then the manifest,
   * its digest record and its refs. Its chunks and pages go at the next `gc`. Returns whether
   * the copy held it.
   */
  async expire(restorePointId: string): Promise<boolean> {
    if (!isRestorePointId(restorePointId)) throw new RangeError(`not a restore point id: ${JSON.stringify(restorePointId)}`);
    while (this.sweeping) await this.sweeping.catch(() => undefined);
    const ref: SealedRef = { kind: 'manifest', id: restorePointId };
    await this.backend.put(REPLICA_EXPIRED_PREFIX + restorePointId, Buffer.from(new Date().toISOString() + '\n'));
    const held = await this.backend.exists(sealedKey(ref));
    await this.backend.delete(sealedKey(ref));
    await this.backend.delete(sumKey(ref));
    await this.backend.delete(REPLICA_REFS_PREFIX + restorePointId);
    return held;
  }

  /**
   * Deletes the chunks and index pages no replica here references, without the key. Deferred
   * while a copy is being received; sweeps nothing while a replica has no refs list.
   */
  async gc(o: ReplicaGcOptions = {}): Promise<ReplicaGcReport> {
    const empty = { liveReplicas: 0, withoutRefs: 0, objectsDeleted: 0, bytesFreed: 0, objectsKeptYoung: 0 };
    if (this.sweeping || this.copyRunning) return { deferred: true, ...empty };
    const run = this.sweep(o);
    this.sweeping = run;
    try {
      return await run;
    } finally {
      this.sweeping = undefined;
    }
  }

  private async sweep(o: ReplicaGcOptions): Promise<ReplicaGcReport> {
    const cutoff = (o.now ?? new Date()).getTime() - (o.graceMs ?? 3600_000);
    const live: string[] = [];
    for await (const x of this.backend.list(RESTORE_POINTS_PREFIX)) {
      const id = x.key.slice(RESTORE_POINTS_PREFIX.length);
      if (isRestorePointId(id)) live.push(id);
    }
    const chunks = new Set<string>();
    const pages = new Set<string>();
    let withoutRefs = 0;
    for (const id of live) {
      const refs = await this.readRefs(id);
      if (!refs) { withoutRefs++; continue; }
      for (const c of refs.chunks) chunks.add(c);
      for (const p of refs.pages) pages.add(p);
    }
    const report = { deferred: false, liveReplicas: live.length, withoutRefs, objectsDeleted: 0, bytesFreed: 0, objectsKeptYoung: 0 };
    if (withoutRefs > 0) return report; // never delete blind
    // A copy given up after sending its refs: its objects stay while the refs are young.
    for await (const x of this.backend.list(REPLICA_REFS_PREFIX)) {
      const id = x.key.slice(REPLICA_REFS_PREFIX.length);
      if (live.includes(id) || x.mtime.getTime() <= cutoff || !isRestorePointId(id)) continue;
      const refs = await this.readRefs(id);
      for (const c of refs?.chunks ?? []) chunks.add(c);
      for (const p of refs?.pages ?? []) pages.add(p);
    }
    const doomed: Array<{ ref: SealedRef; size: number }> = [];
    const oldChunks: Array<{ ref: SealedRef; size: number }> = [];
    let youngPage = false;
    for (const [prefix, kind, keep] of [[CHUNKS_PREFIX, 'chunk', chunks], [INDEX_PREFIX, 'index-page', pages]] as const) {
      for await (const x of this.backend.list(prefix)) {
        const id = x.key.slice(x.key.lastIndexOf('/') + 1);
        if (!isContentId(id) || keep.has(id)) continue;
        if (x.mtime.getTime() > cutoff) {
          report.objectsKeptYoung++;
          if (kind === 'index-page') youngPage = true;
          continue;
        }
        (kind === 'chunk' ? oldChunks : doomed).push({ ref: { kind, id }, size: x.size });
      }
    }
    // A page kept here vouches for its chunks to the next copy, and an unreferenced young
    // page's chunks are unknown (it is sealed): while one is here, unreferenced chunks stay.
    if (youngPage) report.objectsKeptYoung += oldChunks.length;
    else doomed.push(...oldChunks);
    await forEachLimit(doomed, this.concurrency, async ({ ref, size }) => {
      // Digest record first: `missing` reports the object absent from then on.
      await this.backend.delete(sumKey(ref));
      await this.backend.delete(sealedKey(ref));
      report.objectsDeleted++;
      report.bytesFreed += size;
    });
    // Digest records whose object is gone (a crash between the two deletes above).
    for await (const x of this.backend.list(REPLICA_SUMS_PREFIX)) {
      const ref = refOfSumKey(x.key);
      if (!ref || ref.kind === 'manifest' || (ref.kind === 'chunk' ? chunks : pages).has(ref.id)) continue;
      if (!(await this.backend.exists(sealedKey(ref)))) await this.backend.delete(x.key);
    }
    // Refs lists of restore points never committed here (a copy given up), once old.
    for await (const x of this.backend.list(REPLICA_REFS_PREFIX)) {
      const id = x.key.slice(REPLICA_REFS_PREFIX.length);
      if (!live.includes(id) && x.mtime.getTime() <= cutoff) await this.backend.delete(x.key);
    }
    if (report.objectsDeleted) this.sweeps++;
    return report;
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
