// Deleting a whole repository (after a four-eyes approval, checked by the caller): refused while
// any lock record is live, so immutability holds against this too. Otherwise every object goes,
// restore points first and the keys and config last, so that a deletion cut short leaves a
// repository that still opens (and is deleted by running it again), never one missing its keys
// while it still holds data.
import { isLockKey, LOCKS_PREFIX, parseLockRecord } from '../backend/object-lock.ts';
import { NotFoundError } from '../backend/backend.ts';
import { RepositoryDeletedError, RepositoryLockedError, type DeletedRecord } from '../errors.ts';
import { CONFIG_KEY, DELETED_KEY, KEYS_PREFIX, RESTORE_POINTS_PREFIX } from '../format/layout.ts';
import type { Backend } from '../backend/backend.ts';
import type { RepositoryCore } from '../repository-core.ts';
import { forEachLimit } from '../concurrency/semaphore.ts';

export interface DestroyReport {
  readonly restorePointsDeleted: number;
  readonly objectsDeleted: number;
}

/** The latest live lock in the repository (ms since the epoch), or undefined when none is live. */
export async function latestLiveLock(core: RepositoryCore, now = Date.now()): Promise<{ until: number; key: string } | undefined> {
  let latest: { until: number; key: string } | undefined;
  for await (const o of core.backend.list(LOCKS_PREFIX)) {
    let record;
    try {
      record = parseLockRecord(await core.backend.get(o.key));
    } catch (e) {
      if (e instanceof NotFoundError) continue;
      throw e;
    }
    const until = record ? Date.parse(record.retainUntil) : NaN;
    if (until > now && (!latest || until > latest.until)) latest = { until, key: record!.key };
  }
  return latest;
}

/** Who deleted the repository, left behind as the `deleted` marker (no secret in it). */
export type DeletionInfo = Omit<DeletedRecord, 'repositoryId' | 'deletedAt'>;

export async function destroyRepository(core: RepositoryCore, info: DeletionInfo = {}, now = Date.now()): Promise<DestroyReport> {
  const lock = await latestLiveLock(core, now);
  if (lock) throw new RepositoryLockedError(core.backend.location, new Date(lock.until), lock.key);
  const keys: string[] = [];
  for await (const o of core.backend.list('')) keys.push(o.key);
  const rank = (k: string) => (k.startsWith(RESTORE_POINTS_PREFIX) ? 0 : k === CONFIG_KEY ? 4 : k.startsWith(KEYS_PREFIX) ? 3 : isLockKey(k) ? 2 : 1);
  let objectsDeleted = 0;
  for (const r of [0, 1, 2, 3, 4]) {
    await forEachLimit(keys.filter((k) => rank(k) === r), 16, async (k) => { await core.backend.delete(k); objectsDeleted++; });
  }
  // A marker instead of an empty location: a service or `cairn up` that opens it later is told
  // the repository was deleted and by whom, rather than finding nothing (or making a new one).
  const record: DeletedRecord = { repositoryId: core.config.repositoryId, deletedAt: new Date(now).toISOString(), ...info };
  await core.backend.put(DELETED_KEY, Buffer.from(JSON.stringify(record, null, 2) + '\n'));
  return { restorePointsDeleted: keys.filter((k) => rank(k) === 0).length, objectsDeleted };
}

/** Throws `RepositoryDeletedError` when `backend` holds the marker of a deleted repository. */
export async function assertNotDeleted(backend: Backend): Promise<void> {
  let raw: Uint8Array;
  try {
    raw = await backend.get(DELETED_KEY);
  } catch (e) {
    if (e instanceof NotFoundError) return;
    throw e;
  }
  let record: DeletedRecord;
  try {
    record = JSON.parse(Buffer.from(raw).toString('utf8')) as DeletedRecord;
  } catch {
    record = { repositoryId: '?', deletedAt: '?' };
  }
  throw new RepositoryDeletedError(backend.location, record);
}
