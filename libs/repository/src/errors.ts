// Typed errors of the repository: each says what is wrong and where, so an operator (or the
// data mover) can act on it without reading a stack trace.

export class RepositoryError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The passphrase or key provider does not unwrap any key of the repository. */
export class WrongKeyError extends RepositoryError {}

/** The repository's `config` names a format this code does not understand. */
export class UnsupportedFormatError extends RepositoryError {}

/** No repository (no `config`) at the backend's location. */
export class RepositoryNotFoundError extends RepositoryError {}

/** The location held a repository that was deleted (four-eyes); its `deleted` marker says by whom. */
export class RepositoryDeletedError extends RepositoryError {
  constructor(readonly location: string, readonly record: DeletedRecord) {
    super(`the repository at ${location} was deleted at ${record.deletedAt}${record.requestedBy ? ` (requested by ${record.requestedBy}, approved by ${record.approvedBy ?? '?'}${record.approvalId ? `, approval ${record.approvalId}` : ''})` : ''}: `
      + `nothing can be restored from it; to reuse the location for a new repository, remove its \`deleted\` marker first`);
  }
}

export interface DeletedRecord {
  readonly repositoryId: string;
  readonly deletedAt: string;
  readonly approvalId?: string;
  readonly requestedBy?: string;
  readonly approvedBy?: string;
}

/** `initRepository` on a location that already holds a repository. */
export class RepositoryExistsError extends RepositoryError {}

/** A metadata object (config, key, manifest, index page, marker) is damaged or malformed. */
export class CorruptObjectError extends RepositoryError {
  constructor(
    readonly key: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`${key} is damaged: ${reason}`, options);
  }
}

export class RestorePointNotFoundError extends RepositoryError {
  constructor(readonly restorePointId: string) {
    super(`restore point ${restorePointId} does not exist (no manifest)`);
  }
}

export class DiskNotFoundError extends RepositoryError {
  constructor(
    readonly restorePointId: string,
    readonly disk: string,
    available: readonly string[],
  ) {
    super(`restore point ${restorePointId} has no disk "${disk}" (disks: ${available.join(', ') || 'none'})`);
  }
}

/** Extents handed to the writer break its contract (alignment, order, bounds). */
export class InvalidExtentError extends RepositoryError {}

/** A restore point could not be committed; nothing of it is visible. */
export class RestorePointWriteError extends RepositoryError {}

export type ChunkDamage = 'missing' | 'truncated' | 'authentication' | 'decompression' | 'id-mismatch' | 'malformed';

/** Where a chunk (or index page) is used: the restore point, the disk and byte offsets in it. */
export interface ChunkUse {
  readonly restorePointId: string;
  readonly disk: string;
  /** Byte offsets in the disk where the chunk (or the page's first chunk) sits; capped. */
  readonly offsets: readonly number[];
}

export interface DamagedObject {
  readonly kind: 'chunk' | 'index-page';
  readonly id: string;
  readonly key: string;
  readonly damage: ChunkDamage;
  readonly detail: string;
  readonly uses: readonly ChunkUse[];
}

export function describeDamage(d: DamagedObject): string {
  const uses = d.uses
    .map((u) => `${u.restorePointId}/${u.disk} at ${u.offsets.slice(0, 8).join(', ')}${u.offsets.length > 8 ? ', …' : ''}`)
    .join('; ');
  return `${d.kind} ${d.id} (${d.key}) is ${d.damage}: ${d.detail}; used by ${uses || 'no restore point'}`;
}

/** Stored data failed its checks. Never returned silently: readers and restores throw this. */
export class DamagedChunkError extends RepositoryError {
  constructor(readonly damaged: readonly DamagedObject[]) {
    super(`damaged data in the repository: ${damaged.map(describeDamage).join(' | ')}`);
  }
  get chunkIds(): string[] {
    return this.damaged.map((d) => d.id);
  }
}

/** A concurrent garbage collection or writer holds the repository for longer than we wait. */
export class RepositoryBusyError extends RepositoryError {}

/** A restore point is locked (immutability): it cannot be deleted or overwritten before `retainUntil`. */
export class RestorePointLockedError extends RepositoryError {
  constructor(
    readonly restorePointId: string,
    readonly retainUntil: Date,
    options?: { cause?: unknown },
  ) {
    super(`restore point ${restorePointId} is locked until ${retainUntil.toISOString()}: it cannot be deleted or overwritten before then`, options);
  }
}

/** Deleting the whole repository while a lock is live: `retainUntil` is the latest lock's end. */
export class RepositoryLockedError extends RepositoryError {
  constructor(readonly location: string, readonly retainUntil: Date, readonly key: string) {
    super(`repository at ${location} holds locked objects until ${retainUntil.toISOString()} (latest lock: ${key}): it cannot be deleted before then`);
  }
}
