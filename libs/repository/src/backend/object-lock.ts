// Object locks (immutability): a lock record `locks/<key>` says that `<key>` must not be
// deleted or overwritten before `retainUntil`. Records are ordinary objects, so every wrapper
// (retry, limits, faults) passes them through unchanged; the backends enforce them:
//
// - the directory backend refuses `delete(key)` and an overwriting `put(key)` while a record
//   for `key` holds; a record can only be extended, and cannot be deleted before it ends
//   (compliance mode: nobody shortens it, not even an administrator, through any API);
// - the S3 backend with `objectLock: true` also sets S3 Object Lock retention (COMPLIANCE)
//   on `key` and on the record, so the store itself refuses deletion.
//
// Setting a lock is always allowed; it never weakens an existing one.
import { BackendError } from './backend.ts';

export const LOCKS_PREFIX = 'locks/';
export const LOCK_RECORD_VERSION = 1;

export interface LockRecord {
  readonly version: 1;
  /** The locked object. */
  readonly key: string;
  /** ISO 8601 time before which the object cannot be deleted or overwritten. */
  readonly retainUntil: string;
  readonly mode: 'compliance';
}

export const lockKeyOf = (key: string): string => `${LOCKS_PREFIX}${key}`;
export const isLockKey = (key: string): boolean => key.startsWith(LOCKS_PREFIX);
/** The object a lock record protects (`locks/chunks/ab/…` → `chunks/ab/…`). */
export const lockedKeyOf = (lockKey: string): string => lockKey.slice(LOCKS_PREFIX.length);

export function encodeLockRecord(key: string, retainUntil: Date): Uint8Array {
  const record: LockRecord = { version: LOCK_RECORD_VERSION, key, retainUntil: retainUntil.toISOString(), mode: 'compliance' };
  return Buffer.from(JSON.stringify(record) + '\n');
}

/** Parses a lock record; `undefined` when it is not one (a damaged record locks nothing it names). */
export function parseLockRecord(bytes: Uint8Array): LockRecord | undefined {
  try {
    const raw = JSON.parse(Buffer.from(bytes).toString('utf8')) as Partial<LockRecord>;
    if (raw.version !== LOCK_RECORD_VERSION || typeof raw.key !== 'string' || typeof raw.retainUntil !== 'string') return undefined;
    if (Number.isNaN(Date.parse(raw.retainUntil))) return undefined;
    return { version: 1, key: raw.key, retainUntil: raw.retainUntil, mode: 'compliance' };
  } catch {
    return undefined;
  }
}

/** A delete or overwrite of an object (or lock record) refused because its lock still holds. Permanent. */
export class ObjectLockedError extends BackendError {
  constructor(
    key: string,
    readonly retainUntil: Date,
    readonly action: 'delete' | 'overwrite' | 'shorten',
    location: string,
  ) {
    super(
      action === 'shorten'
        ? `the lock on ${key} in ${location} holds until ${retainUntil.toISOString()} and cannot be shortened (compliance mode)`
        : `cannot ${action} ${key} in ${location}: it is locked until ${retainUntil.toISOString()} (compliance mode)`,
      false,
      key,
    );
    this.name = 'ObjectLockedError';
  }
}

/** What a backend gives the lock checks: raw reads that bypass the checks themselves. */
export interface LockStore {
  readonly location: string;
  /** The bytes of `key`, or undefined when it does not exist. */
  readRaw(key: string): Promise<Uint8Array | undefined>;
  existsRaw(key: string): Promise<boolean>;
  now(): number;
}

/** The end of the lock on `key` (ms) while it holds; `self`: `key` is a lock record itself. */
export async function activeLockUntil(store: LockStore, key: string, self = false): Promise<number | undefined> {
  const bytes = await store.readRaw(self ? key : lockKeyOf(key));
  const record = bytes && parseLockRecord(bytes);
  if (!record) return undefined;
  const until = Date.parse(record.retainUntil);
  return until > store.now() ? until : undefined;
}

/** Throws `ObjectLockedError` when a put of `key` would overwrite a locked object or shorten a lock. */
export async function checkPutAllowed(store: LockStore, key: string, data: Uint8Array, ifNotExists: boolean): Promise<void> {
  if (isLockKey(key)) {
    const next = parseLockRecord(data);
    if (!next || lockKeyOf(next.key) !== key) {
      throw new BackendError(`${key} in ${store.location}: not a lock record for the object it names`, false, key);
    }
    const until = await activeLockUntil(store, key, true);
    if (until !== undefined && Date.parse(next.retainUntil) < until) throw new ObjectLockedError(key, new Date(until), 'shorten', store.location);
    return;
  }
  if (ifNotExists) return; // never overwrites
  const until = await activeLockUntil(store, key);
  if (until !== undefined && (await store.existsRaw(key))) throw new ObjectLockedError(key, new Date(until), 'overwrite', store.location);
}

/** Throws `ObjectLockedError` when `key` (an object or a lock record) is locked. */
export async function checkDeleteAllowed(store: LockStore, key: string): Promise<void> {
  const self = isLockKey(key);
  const until = await activeLockUntil(store, key, self);
  if (until === undefined) return;
  // Deleting what is not there destroys nothing.
  if (!self && !(await store.existsRaw(key))) return;
  throw new ObjectLockedError(key, new Date(until), 'delete', store.location);
}
