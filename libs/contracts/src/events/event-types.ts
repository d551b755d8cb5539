// Static types of the events as code sees them (current version, after upcasting).
import type { CairnEvent } from '../envelope.ts';
import type { EventDataMap, EventType } from './registry.ts';

/** One event type at its current version. */
export type EventOf<K extends EventType> = CairnEvent<K, EventDataMap[K]>;
/** Any event this build knows, as a discriminated union on `type`. */
export type KnownEvent = { [K in EventType]: EventOf<K> }[EventType];

export type JobRequested = EventOf<'JobRequested'>;
export type JobStarted = EventOf<'JobStarted'>;
export type SnapshotRequested = EventOf<'SnapshotRequested'>;
export type SnapshotTaken = EventOf<'SnapshotTaken'>;
export type SnapshotFailed = EventOf<'SnapshotFailed'>;
export type SnapshotReleased = EventOf<'SnapshotReleased'>;
export type TransferQueued = EventOf<'TransferQueued'>;
export type TransferStarted = EventOf<'TransferStarted'>;
export type RestorePointCommitted = EventOf<'RestorePointCommitted'>;
export type JobCompleted = EventOf<'JobCompleted'>;
export type JobFailed = EventOf<'JobFailed'>;
export type JobCancelled = EventOf<'JobCancelled'>;
export type VmDiscovered = EventOf<'VmDiscovered'>;
export type DiskAttached = EventOf<'DiskAttached'>;
export type DiskDetached = EventOf<'DiskDetached'>;
export type PolicyCreated = EventOf<'PolicyCreated'>;
export type PolicyUpdated = EventOf<'PolicyUpdated'>;
export type PolicyDeleted = EventOf<'PolicyDeleted'>;
export type PolicyPaused = EventOf<'PolicyPaused'>;
export type PolicyResumed = EventOf<'PolicyResumed'>;
export type RestorePointExpired = EventOf<'RestorePointExpired'>;
export type RestorePointLocked = EventOf<'RestorePointLocked'>;
export type MessageDeadLettered = EventOf<'MessageDeadLettered'>;
export type ReplicationPolicyCreated = EventOf<'ReplicationPolicyCreated'>;
export type ReplicationPolicyDeleted = EventOf<'ReplicationPolicyDeleted'>;
export type ReplicaCommitted = EventOf<'ReplicaCommitted'>;
export type ReplicaVerified = EventOf<'ReplicaVerified'>;
export type ReplicaRepaired = EventOf<'ReplicaRepaired'>;
export type ReplicaExpired = EventOf<'ReplicaExpired'>;
export type ReplicaGarbageCollected = EventOf<'ReplicaGarbageCollected'>;
export type UserCreated = EventOf<'UserCreated'>;
export type TokenIssued = EventOf<'TokenIssued'>;
export type TokenRevoked = EventOf<'TokenRevoked'>;
export type ApprovalRequested = EventOf<'ApprovalRequested'>;
export type RestorePointDeleted = EventOf<'RestorePointDeleted'>;
export type RepositoryInitialized = EventOf<'RepositoryInitialized'>;
export type RepositoryKeyRotated = EventOf<'RepositoryKeyRotated'>;
export type RecoveryKeyExported = EventOf<'RecoveryKeyExported'>;
export type RepositoryDeleted = EventOf<'RepositoryDeleted'>;
export type EventSigningStarted = EventOf<'EventSigningStarted'>;
export type ProvenanceViolation = EventOf<'ProvenanceViolation'>;
export type NatsServerRestarted = EventOf<'NatsServerRestarted'>;
export type NotificationRouteAdded = EventOf<'NotificationRouteAdded'>;
export type NotificationRouteRemoved = EventOf<'NotificationRouteRemoved'>;
export type RpoMissed = EventOf<'RpoMissed'>;
export type RpoRestored = EventOf<'RpoRestored'>;
export type VerifyStarted = EventOf<'VerifyStarted'>;
export type VerifyCompleted = EventOf<'VerifyCompleted'>;
export type RestorePointDamaged = EventOf<'RestorePointDamaged'>;
