// Replication's part of the repository: the source lists and reads sealed objects (it has
// the keys); the target stores them in a keyless copy repository and verifies them.
export { ReplicationSource, type RepositoryIdentity, type PageRef, type SealedObject } from './replication-source.ts';
export {
  ReplicaTarget, ReplicaIntegrityError, ReplicaExpiredError, REPLICA_SUMS_PREFIX, REPLICA_REFS_PREFIX, REPLICA_EXPIRED_PREFIX,
  encodeRefs, decodeRefs, type ReplicaRefs, type ReplicaGcReport, type ReplicaGcOptions,
  type ReplicaDamage, type ReplicaDamagedObject, type ReplicaVerifyReport,
} from './replica-target.ts';
export { sealedKey, sealedShapeProblem, sha256Hex, type SealedKind, type SealedRef } from './sealed-objects.ts';
export { copyRestorePoint, type ReplicaSink, type CopyOptions, type CopyResult } from './copy-restore-point.ts';
