// Locking a restore point for its retention period: a lock record (backend/object-lock.ts)
// for every object it needs — its index pages and chunks first, its manifest last — so that
// once the manifest is locked, nothing it references can be deleted or overwritten either
// (chunks shared with other restore points keep the latest lock of any of them).
// The backend enforces the records; the repository only writes them and names the error.
import { NotFoundError, type Backend } from '../backend/backend.ts';
import { encodeLockRecord, lockKeyOf, ObjectLockedError, parseLockRecord } from '../backend/object-lock.ts';
import { CorruptObjectError, RestorePointLockedError } from '../errors.ts';
import { chunkKey, pageKey, restorePointKey } from '../format/layout.ts';
import { ZERO_ID } from '../format/manifest.ts';
import type { RepositoryCore } from '../repository-core.ts';
import { forEachLimit } from '../concurrency/semaphore.ts';
import { walkIndexes } from './chunk-uses.ts';

export interface LockReport {
  readonly restorePointId: string;
  readonly retainUntil: Date;
  /** Lock records written or extended (the rest already held until `retainUntil` or later). */
  readonly objectsLocked: number;
  readonly objectsAlreadyLocked: number;
}

/** The current lock of `key` (ms), or undefined when none holds at `now`. */
export async function objectLockedUntil(backend: Backend, key: string, now = Date.now()): Promise<number | undefined> {
  try {
    const record = parseLockRecord(await backend.get(lockKeyOf(key)));
    if (!record) return undefined;
    const until = Date.parse(record.retainUntil);
    return until > now ? until : undefined;
  } catch (e) {
    if (e instanceof NotFoundError) return undefined;
    throw e;
  }
}

async function extendLock(backend: Backend, key: string, until: number): Promise<boolean> {
  const current = await objectLockedUntil(backend, key, 0);
  if (current !== undefined && current >= until) return false;
  await backend.put(lockKeyOf(key), encodeLockRecord(key, new Date(until)));
  return true;
}

export async function lockRestorePoint(core: RepositoryCore, id: string, retainUntil: Date): Promise<LockReport> {
  const until = retainUntil.getTime();
  if (!Number.isFinite(until)) throw new RangeError('retainUntil is not a valid date');
  const manifest = await core.readManifest(id);
  const keys = new Set<string>();
  await walkIndexes(
    core, [manifest],
    (chunkId) => { if (chunkId !== ZERO_ID) keys.add(chunkKey(chunkId)); },
    (pageId) => { if (pageId !== ZERO_ID) keys.add(pageKey(pageId)); },
    (e) => { throw new CorruptObjectError(e.key, `cannot lock restore point ${id}: an index page is unreadable (${e.damage})`); },
  );
  let locked = 0;
  await forEachLimit(keys, 16, async (key) => { if (await extendLock(core.backend, key, until)) locked++; });
  // The manifest last: a locked manifest means everything it needs is locked too.
  if (await extendLock(core.backend, restorePointKey(id), until)) locked++;
  return { restorePointId: id, retainUntil, objectsLocked: locked, objectsAlreadyLocked: keys.size + 1 - locked };
}

/** When the restore point's lock ends, or undefined when it is not locked (any more). */
export async function restorePointLockedUntil(core: RepositoryCore, id: string, now = Date.now()): Promise<Date | undefined> {
  const until = await objectLockedUntil(core.backend, restorePointKey(id), now);
  return until === undefined ? undefined : new Date(until);
}

/** Translates the backend's refusal into the repository's typed error for that restore point. */
export function asRestorePointLocked(id: string, e: unknown): unknown {
  return e instanceof ObjectLockedError ? new RestorePointLockedError(id, e.retainUntil, { cause: e }) : e;
}
