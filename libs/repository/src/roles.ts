// The repository's roles: what each kind of consumer may do with it, as restic's packages each
// take only the backend methods they use. A consumer declares the role it needs instead of the
// whole `Repository` (which implements them all), so what a service can do to the backups is
// visible in its types: a data mover's transfer writes, a restore reads, retention deletes and
// locks, replication sends sealed objects, the operator's tools maintain and hold the keys.
import type { RestorePointSummary, RepositoryStats } from './repository.ts';
import type { WriteRestorePointInput, WriteRestorePointResult } from './write/restore-point-writer.ts';
import type { DiskReader } from './read/disk-reader.ts';
import type { RestoreOptions, RestoreResult } from './read/restore-disk.ts';
import type { Manifest } from './format/manifest.ts';
import type { LockReport } from './maintenance/immutability.ts';
import type { VerifyOptions, VerifyReport } from './maintenance/verify.ts';
import type { GcOptions, GcReport } from './maintenance/gc.ts';
import type { DeletionInfo, DestroyReport } from './maintenance/destroy.ts';
import type { ReplicationSource } from './replicate/replication-source.ts';
import type { Credentials } from './keys/master-keys.ts';
import type { InvalidJournalObject, KeyActContext, KeyJournalEntry } from './keys/key-journal.ts';

/** What lists the restore points (every role that chooses among them). */
export interface RestorePointLister {
  listRestorePoints(): Promise<RestorePointSummary[]>;
}

/**
 * A backup's writer: writes a restore point (manifest last) and reads the parent's unchanged
 * data; lists the points to find the parent, or this job's point after a redelivery.
 */
export interface RestorePointWriter extends RestorePointLister {
  readonly chunkSize: number;
  writeRestorePoint(input: WriteRestorePointInput): Promise<WriteRestorePointResult>;
  openDisk(restorePointId: string, diskName: string): Promise<DiskReader>;
}

/** A restorer: reads restore points, their manifests and disks, and writes a disk out to a file. */
export interface RestorePointReader extends RestorePointLister {
  readonly location: string;
  getManifest(id: string): Promise<Manifest>;
  openDisk(restorePointId: string, diskName: string): Promise<DiskReader>;
  restoreDisk(restorePointId: string, diskName: string, targetPath: string, options?: RestoreOptions): Promise<RestoreResult>;
}

/** Retention: lets restore points go (their chunks go at the next GC) and locks them (immutability). */
export interface RetentionRole {
  deleteRestorePoint(id: string): Promise<void>;
  lockRestorePoint(id: string, retainUntil: Date): Promise<LockReport>;
  restorePointLockedUntil(id: string, at?: Date): Promise<Date | undefined>;
}

/** Replication's source: lists the points and sends their sealed objects verbatim (no key needed there). */
export interface ReplicationSourceRole extends RestorePointLister {
  replicationSource(): ReplicationSource;
}

/** Maintenance: check, collect garbage, count, and (after a four-eyes approval) destroy. */
export interface MaintenanceRole {
  readonly repositoryId: string;
  readonly location: string;
  verify(options?: VerifyOptions): Promise<VerifyReport>;
  gc(options: GcOptions): Promise<GcReport>;
  stats(): Promise<RepositoryStats>;
  latestLock(at?: Date): Promise<Date | undefined>;
  destroy(info?: DeletionInfo): Promise<DestroyReport>;
}

/** The keys: rotate, the recovery key and its export, the key journal. */
export interface KeyCustodianRole {
  readonly repositoryId: string;
  rotateKey(credentials: Credentials, context?: KeyActContext): Promise<{ keyId: string; journalEntry: KeyJournalEntry }>;
  exportRecoveryKey(): string;
  recoveryKeyFingerprint(): string;
  recordRecoveryKeyExport(details?: { file?: string }, context?: KeyActContext): Promise<KeyJournalEntry>;
  keyJournal(): Promise<{ entries: KeyJournalEntry[]; invalid: InvalidJournalObject[] }>;
}
