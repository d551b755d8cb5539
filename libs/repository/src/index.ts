// The chunked, deduplicated, encrypted repository: restore points of VM disks on a
// directory or S3.
export * from './backend/index.ts';
export * from './errors.ts';
export {
  initRepository, openRepository, openRepositoryWithRecoveryKey, Repository,
  DEFAULT_CHUNK_SIZE, DEFAULT_PAGE_ENTRIES, DEFAULT_COMPRESSION_LEVEL,
  type InitOptions, type OpenOptions, type RestorePointSummary, type RepositoryStats,
} from './repository.ts';
export type {
  RestorePointLister, RestorePointWriter, RestorePointReader, RetentionRole, ReplicationSourceRole, MaintenanceRole, KeyCustodianRole,
} from './roles.ts';
export type { RepositoryTuning } from './repository-core.ts';
export type { DiskInput, Extent } from './write/disk-writer.ts';
export type { VmInfo, WriteRestorePointInput, WriteRestorePointResult } from './write/restore-point-writer.ts';
export type { DiskReader } from './read/disk-reader.ts';
export type { RestoreOptions, RestoreResult } from './read/restore-disk.ts';
export type { VerifyOptions, VerifyReport } from './maintenance/verify.ts';
export type { GcOptions, GcReport } from './maintenance/gc.ts';
export type { Manifest, DiskManifest, DiskStats } from './format/manifest.ts';
export type { RepositoryConfig } from './format/config.ts';
export { FORMAT_VERSION } from './format/config.ts';
export type { Credentials, ScryptParams } from './keys/master-keys.ts';
export { DEFAULT_SCRYPT } from './keys/master-keys.ts';
export { FileKeyProvider, createKeyFile, type KeyProvider, type WrappedKey } from './keys/key-provider.ts';
export * from './replicate/index.ts';
export { decodeRecoveryKey } from './keys/recovery-key.ts';
export {
  KEY_JOURNAL_PREFIX, defaultKeyActor,
  type KeyJournalEntry, type KeyActContext, type KeyActor, type KeyWrapping, type OpenedWith, type InvalidJournalObject,
} from './keys/key-journal.ts';
export { keyJournalEvent, keyEventStream, publishKeyJournal, publishKeyJournalEntries, type KeyJournalLogger } from './keys/key-journal.publisher.ts';
export type { LockReport } from './maintenance/immutability.ts';
export type { DestroyReport } from './maintenance/destroy.ts';
export { chunkKey } from './format/layout.ts';
export { release as releaseBuffer } from './format/envelope.ts';
