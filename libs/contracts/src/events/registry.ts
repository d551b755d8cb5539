// The registry of every event type Cairn writes: its data schema per version, the upcasters
// that lift an old version to the next, and the stream categories it may live in.
// Adding a version: move the current schema into `history` with an upcaster to the new one.
import type { Static, TSchema } from '@sinclair/typebox';
import {
  JobCancelledV1, JobCompletedV1, JobFailedV1, JobFailedV2, JobRequestedV1, JobStartedV1, JobStartedV2,
  RestorePointCommittedV1, upcastJobFailedV1, upcastJobStartedV1,
} from './job.events.ts';
import {
  SnapshotFailedV1, SnapshotReleasedV1, SnapshotRequestedV1, SnapshotTakenV1, TransferQueuedV1, TransferStartedV1,
} from './snapshot.events.ts';
import { DiskAttachedV1, DiskDetachedV1, VmDiscoveredV1, VmPowerStateChangedV1, VmRemovedV1 } from './inventory.events.ts';
import { PolicyCreatedV1, PolicyDeletedV1, PolicyPausedV1, PolicyResumedV1, PolicyUpdatedV1, RestorePointExpiredV1, RestorePointLockedV1 } from './policy.events.ts';
import { GlobalPolicyPublishedV1 } from './global-policy.events.ts';
import { MessageDeadLetteredV1, NatsServerRestartedV1 } from './messaging.events.ts';
import {
  ReplicaCommittedV1, ReplicaExpiredV1, ReplicaGarbageCollectedV1, ReplicaRepairedV1, ReplicaVerifiedV1, KeyEscrowReceivedV1, SiteSilentV1, SiteContactRestoredV1, SiteAllowedGapSetV1, ReplicationPolicyCreatedV1, ReplicationPolicyDeletedV1, ReplicationBehindV1, ReplicationCaughtUpV1 } from './replication.events.ts';
import {
  AccessDeniedV1, AccessRecoveredV1, AuthFailedV1, ApprovalExecutedV1, ApprovalGrantedV1, ApprovalRejectedV1, ApprovalRequestedV1, DiskRestoredV1, RepositoryDeletedV1, SiteDeclaredLostV1, RestorePointDeletedV1,
  SignedInV1, TokenIssuedV1, TokenRevokedV1, UserCreatedV1, UserDisabledV1, UserKeyAddedV1, UserKeyRevokedV1, UserRolesChangedV1,
} from './security.events.ts';
import { RestoreCompletedV1, RestoreFailedV1, RestoreProgressedV1, RestoreRequestedV1, RestoreStartedV1 } from './restore.events.ts';
import { InstantDiscardedV1, InstantFailedV1, InstantFinishedV1, InstantMirroringV1, InstantRecoveryStartedV1, InstantServingV1 } from './instant.events.ts';
import { FilesRestoredV1, FilesSearchedV1, RestorePointFilesBrowsedV1 } from './files.events.ts';
import { RecoveryKeyExportedV1, RepositoryInitializedV1, RepositoryKeyRotatedV1 } from './repository-key.events.ts';
import { EventSigningStartedV1, ProvenanceViolationV1 } from './provenance.events.ts';
import { RestorePointDamagedV1, TestRestoreFailedV1, TestRestoreRefusedV1, TestRestorePassedV1, TestRestoreStartedV1, VerifyCompletedV1, VerifyStartedV1 } from './verify.events.ts';
import { CredentialExpiringV1, NotificationRouteAddedV1, NotificationRouteRemovedV1, RpoMissedV1, RpoRestoredV1 } from './notification.events.ts';

/** An older version of an event's data and the function that lifts it one version up. */
export interface HistoricVersion {
  readonly data: TSchema;
  readonly upcast: (data: never) => unknown;
}

export interface EventDefinition<T extends string = string, L extends TSchema = TSchema> {
  readonly type: T;
  readonly description: string;
  /** Stream categories (`job`, `vm`, ...) an event of this type may be appended to. */
  readonly categories: readonly string[];
  /** Versions 1..n-1, oldest first; `upcast` of version i yields data of version i+1. */
  readonly history: readonly HistoricVersion[];
  /** Data schema of the current version (n = history.length + 1). */
  readonly latest: L;
}

function define<T extends string, L extends TSchema>(
  type: T,
  def: { description: string; categories: readonly string[]; latest: L; history?: readonly HistoricVersion[] },
): EventDefinition<T, L> {
  return { type, description: def.description, categories: def.categories, latest: def.latest, history: def.history ?? [] };
}

function historic<D extends TSchema>(data: D, upcast: (data: Static<D>) => unknown): HistoricVersion {
  return { data, upcast: upcast as (data: never) => unknown };
}

const JOB = ['job'] as const;

export const EVENT_SCHEMAS = {
  JobRequested: define('JobRequested', { description: 'A backup job was asked for (by a schedule slot or an operator).', categories: JOB, latest: JobRequestedV1 }),
  JobStarted: define('JobStarted', {
    description: 'The scheduler started an attempt of the job and asked for a point-in-time view of the VM disks (v2; v1 asked in a SnapshotRequested).',
    categories: JOB, latest: JobStartedV2, history: [historic(JobStartedV1, upcastJobStartedV1)],
  }),
  SnapshotRequested: define('SnapshotRequested', {
    description: 'A point-in-time view of the VM disks was asked for. No longer written (JobStarted v2 carries it); read in older logs.',
    categories: JOB, latest: SnapshotRequestedV1,
  }),
  SnapshotTaken: define('SnapshotTaken', { description: 'The view exists and is exported over NBD.', categories: JOB, latest: SnapshotTakenV1 }),
  SnapshotFailed: define('SnapshotFailed', { description: 'No view could be taken.', categories: JOB, latest: SnapshotFailedV1 }),
  SnapshotReleased: define('SnapshotReleased', { description: 'The view, its overlay and its export are gone.', categories: JOB, latest: SnapshotReleasedV1 }),
  TransferQueued: define('TransferQueued', { description: 'The transfer was put on the data movers\' work queue.', categories: JOB, latest: TransferQueuedV1 }),
  TransferStarted: define('TransferStarted', { description: 'A data mover took the transfer.', categories: JOB, latest: TransferStartedV1 }),
  RestorePointCommitted: define('RestorePointCommitted', { description: 'The restore point manifest was written: the backup exists.', categories: JOB, latest: RestorePointCommittedV1 }),
  JobCompleted: define('JobCompleted', { description: 'The job ended with a restore point.', categories: JOB, latest: JobCompletedV1 }),
  JobFailed: define('JobFailed', {
    description: 'The job ended without a restore point.',
    categories: JOB,
    latest: JobFailedV2,
    history: [historic(JobFailedV1, upcastJobFailedV1)],
  }),
  JobCancelled: define('JobCancelled', { description: 'The job was cancelled.', categories: JOB, latest: JobCancelledV1 }),
  VmDiscovered: define('VmDiscovered', { description: 'A VM was found on a hypervisor.', categories: ['vm'], latest: VmDiscoveredV1 }),
  DiskAttached: define('DiskAttached', { description: 'A disk appeared on a VM.', categories: ['vm'], latest: DiskAttachedV1 }),
  DiskDetached: define('DiskDetached', { description: 'A disk left a VM.', categories: ['vm'], latest: DiskDetachedV1 }),
  VmPowerStateChanged: define('VmPowerStateChanged', { description: 'The hypervisor reports a VM in another power state.', categories: ['vm'], latest: VmPowerStateChangedV1 }),
  VmRemoved: define('VmRemoved', { description: 'A VM left its hypervisor (deleted or unregistered there); its restore points stay.', categories: ['vm'], latest: VmRemovedV1 }),
  PolicyCreated: define('PolicyCreated', { description: 'A protection policy was created.', categories: ['policy'], latest: PolicyCreatedV1 }),
  PolicyUpdated: define('PolicyUpdated', { description: 'A protection policy was replaced by a new version.', categories: ['policy'], latest: PolicyUpdatedV1 }),
  PolicyDeleted: define('PolicyDeleted', { description: 'A protection policy was deleted (its restore points are kept).', categories: ['policy'], latest: PolicyDeletedV1 }),
  PolicyPaused: define('PolicyPaused', { description: 'A protection policy was paused: it schedules no new backups until resumed.', categories: ['policy'], latest: PolicyPausedV1 }),
  PolicyResumed: define('PolicyResumed', { description: 'A paused protection policy schedules backups again.', categories: ['policy'], latest: PolicyResumedV1 }),
  RestorePointExpired: define('RestorePointExpired', { description: 'Retention let a restore point go.', categories: ['restorepoint'], latest: RestorePointExpiredV1 }),
  RestorePointLocked: define('RestorePointLocked', { description: 'A restore point was locked: no delete or overwrite before retainUntil.', categories: ['restorepoint'], latest: RestorePointLockedV1 }),
  MessageDeadLettered: define('MessageDeadLettered', { description: 'A consumer gave up on a message.', categories: ['deadletter'], latest: MessageDeadLetteredV1 }),
  NatsServerRestarted: define('NatsServerRestarted', { description: '`cairn up` restarted the nats-server it supervises after it exited unasked.', categories: ['supervisor'], latest: NatsServerRestartedV1 }),
  ReplicationPolicyCreated: define('ReplicationPolicyCreated', { description: 'A replication policy was created at its source site.', categories: ['replpolicy'], latest: ReplicationPolicyCreatedV1 }),
  ReplicationPolicyDeleted: define('ReplicationPolicyDeleted', { description: 'A replication policy was deleted.', categories: ['replpolicy'], latest: ReplicationPolicyDeletedV1 }),
  ReplicaCommitted: define('ReplicaCommitted', { description: 'A restore point of another site was copied here, manifest last: the replica exists.', categories: ['replica'], latest: ReplicaCommittedV1 }),
  GlobalPolicyPublished: define('GlobalPolicyPublished', { description: 'A person-signed version of a global policy was recorded at the hub, to be applied by each site it selects.', categories: ['globalpolicy'], latest: GlobalPolicyPublishedV1 }),
  SiteSilent: define('SiteSilent', { description: 'The hub heard nothing from a site for longer than its allowed gap (raised once until contact returns).', categories: ['sitehealth'], latest: SiteSilentV1 }),
  SiteContactRestored: define('SiteContactRestored', { description: 'The hub reaches a site again after it was reported silent.', categories: ['sitehealth'], latest: SiteContactRestoredV1 }),
  SiteAllowedGapSet: define('SiteAllowedGapSet', { description: 'The hub\'s allowed gap for one site changed (cairn site set-gap, the signed command SetSiteAllowedGap): the site is reported silent only after this long without contact.', categories: ['sitehealth'], latest: SiteAllowedGapSetV1 }),
  KeyEscrowReceived: define('KeyEscrowReceived', { description: 'A source site\'s repository key arrived sealed for this site (key escrow), kept with its replicas.', categories: ['replicacheck'], latest: KeyEscrowReceivedV1 }),
  ReplicaVerified: define('ReplicaVerified', { description: 'This site checked its copy of another site\'s repository without the key.', categories: ['replicacheck'], latest: ReplicaVerifiedV1 }),
  ReplicaRepaired: define('ReplicaRepaired', { description: 'Damaged objects of a copy were sent again by the source site and checked.', categories: ['replicacheck'], latest: ReplicaRepairedV1 }),
  ReplicaExpired: define('ReplicaExpired', { description: 'The source site expired or deleted a restore point: its replica here was removed (its objects go at the next replica GC).', categories: ['replica'], latest: ReplicaExpiredV1 }),
  ReplicaGarbageCollected: define('ReplicaGarbageCollected', { description: 'Objects of this site\'s copy of another site\'s repository that no replica references any more were deleted, without the key.', categories: ['replicacheck'], latest: ReplicaGarbageCollectedV1 }),
  UserCreated: define('UserCreated', { description: 'An API user was created with its roles.', categories: ['user'], latest: UserCreatedV1 }),
  UserRolesChanged: define('UserRolesChanged', { description: 'An API user\'s roles were replaced.', categories: ['user'], latest: UserRolesChangedV1 }),
  UserDisabled: define('UserDisabled', { description: 'An API user can no longer sign in; its tokens stop working at once.', categories: ['user'], latest: UserDisabledV1 }),
  UserKeyAdded: define('UserKeyAdded', { description: 'A user got an operator key (public key only) to sign commands sent over NATS.', categories: ['user'], latest: UserKeyAddedV1 }),
  UserKeyRevoked: define('UserKeyRevoked', { description: 'A user\'s operator key was revoked: commands it signs are refused at once.', categories: ['user'], latest: UserKeyRevokedV1 }),
  TokenIssued: define('TokenIssued', { description: 'An API token was issued to a user (only its SHA-256 is recorded).', categories: ['token'], latest: TokenIssuedV1 }),
  TokenRevoked: define('TokenRevoked', { description: 'An API token was revoked: it stops working at once.', categories: ['token'], latest: TokenRevokedV1 }),
  SignedIn: define('SignedIn', { description: 'A user authenticated (first use of a token by a gateway, or an OIDC token).', categories: ['access'], latest: SignedInV1 }),
  AccessRecovered: define('AccessRecovered', { description: 'An administrator got a new API token through their own operator key (the locked-out site\'s way back in).', categories: ['access'], latest: AccessRecoveredV1 }),
  AuthFailed: define('AuthFailed', { description: 'Authentication failed at the gateway, aggregated per source and per user (not one per attempt); says when throttling started.', categories: ['access'], latest: AuthFailedV1 }),
  AccessDenied: define('AccessDenied', { description: 'An authenticated caller was refused an operation its roles do not allow.', categories: ['access'], latest: AccessDeniedV1 }),
  ApprovalRequested: define('ApprovalRequested', { description: 'An administrator asked for a destructive act that needs a second administrator (four-eyes).', categories: ['approval'], latest: ApprovalRequestedV1 }),
  ApprovalGranted: define('ApprovalGranted', { description: 'A second administrator approved the request.', categories: ['approval'], latest: ApprovalGrantedV1 }),
  ApprovalRejected: define('ApprovalRejected', { description: 'The request was rejected (or withdrawn); nothing happens.', categories: ['approval'], latest: ApprovalRejectedV1 }),
  ApprovalExecuted: define('ApprovalExecuted', { description: 'The approved act was carried out, or failed.', categories: ['approval'], latest: ApprovalExecutedV1 }),
  RestorePointDeleted: define('RestorePointDeleted', { description: 'A restore point was deleted after a four-eyes approval.', categories: ['restorepoint'], latest: RestorePointDeletedV1 }),
  RestoreRequested: define('RestoreRequested', { description: 'A restore job was asked for: which restore point, to which target.', categories: ['restore'], latest: RestoreRequestedV1 }),
  RestoreStarted: define('RestoreStarted', { description: 'A data mover took the restore job, with the plan it decided (source, files).', categories: ['restore'], latest: RestoreStartedV1 }),
  RestoreProgressed: define('RestoreProgressed', { description: 'A restore job wrote part of a disk (coarse steps; live progress goes to the progress subject).', categories: ['restore'], latest: RestoreProgressedV1 }),
  RestoreCompleted: define('RestoreCompleted', { description: 'Every disk of the restore job is in place under its final name.', categories: ['restore'], latest: RestoreCompletedV1 }),
  RestoreFailed: define('RestoreFailed', { description: 'The restore job ended without its target; nothing is left under the target name.', categories: ['restore'], latest: RestoreFailedV1 }),
  InstantRecoveryStarted: define('InstantRecoveryStarted', { description: 'An instant recovery session began: a restore point to be run as a VM straight from the repository (its plan: directory, disks, overlays, identity).', categories: ['instant'], latest: InstantRecoveryStartedV1 }),
  InstantServing: define('InstantServing', { description: 'The restore point is served over NBD by its exporter process and the VM runs (or is ready to run) on local overlays.', categories: ['instant'], latest: InstantServingV1 }),
  InstantMirroring: define('InstantMirroring', { description: 'The instantly recovered VM\'s disks are being mirrored to local storage while it runs.', categories: ['instant'], latest: InstantMirroringV1 }),
  InstantFinished: define('InstantFinished', { description: 'The mirror was pivoted: the VM runs from local disks, the export and overlays are gone.', categories: ['instant'], latest: InstantFinishedV1 }),
  InstantDiscarded: define('InstantDiscarded', { description: 'The instant recovery session was thrown away: VM stopped, exporter, overlays and sockets removed.', categories: ['instant'], latest: InstantDiscardedV1 }),
  InstantFailed: define('InstantFailed', { description: 'A step of an instant recovery session failed (which step, why, whether the VM still runs).', categories: ['instant'], latest: InstantFailedV1 }),
  DiskRestored: define('DiskRestored', { description: 'A disk of a restore point was restored to a target.', categories: ['restore'], latest: DiskRestoredV1 }),
  RestorePointFilesBrowsed: define('RestorePointFilesBrowsed', { description: 'Someone listed or looked at files inside a restore point (who, which point, which paths).', categories: ['files'], latest: RestorePointFilesBrowsedV1 }),
  FilesSearched: define('FilesSearched', { description: 'Someone searched the file indexes of restore points (who, which pattern, how many matches).', categories: ['files'], latest: FilesSearchedV1 }),
  FilesRestored: define('FilesRestored', { description: 'Files of a restore point were copied out (who, which point, which paths, where to).', categories: ['files'], latest: FilesRestoredV1 }),
  RepositoryInitialized: define('RepositoryInitialized', { description: 'A repository was created with its first key (recorded in its key journal, then in the log).', categories: ['repository'], latest: RepositoryInitializedV1 }),
  RepositoryKeyRotated: define('RepositoryKeyRotated', { description: 'A repository\'s master keys were re-wrapped under new credentials; the old ones no longer open it.', categories: ['repository'], latest: RepositoryKeyRotatedV1 }),
  SiteDeclaredLost: define('SiteDeclaredLost', { description: 'Another site was declared lost after a four-eyes approval: this site now opens the key it escrowed here and restores its replicas.', categories: ['repository'], latest: SiteDeclaredLostV1 }),
  RepositoryDeleted: define('RepositoryDeleted', { description: 'A repository and everything in it was deleted after a four-eyes approval (no lock was live).', categories: ['repository'], latest: RepositoryDeletedV1 }),
  RecoveryKeyExported: define('RecoveryKeyExported', { description: 'A repository\'s recovery key was exported (only its keyed fingerprint is recorded).', categories: ['repository'], latest: RecoveryKeyExportedV1 }),
  EventSigningStarted: define('EventSigningStarted', { description: 'From this event\'s position on, every event must be signed by its writer; unsigned events before it are legacy.', categories: ['provenance'], latest: EventSigningStartedV1 }),
  ProvenanceViolation: define('ProvenanceViolation', { description: 'A reader refused an event: unsigned, signed by an unknown key, altered, or by an identity that may not write it.', categories: ['provenance'], latest: ProvenanceViolationV1 }),
  NotificationRouteAdded: define('NotificationRouteAdded', { description: 'A notification route was added or replaced: which notices (kinds, severity, sites, VMs) go where (webhook, e-mail, syslog), and how often at most.', categories: ['notifyroute'], latest: NotificationRouteAddedV1 }),
  NotificationRouteRemoved: define('NotificationRouteRemoved', { description: 'A notification route was removed: nothing more is sent through it.', categories: ['notifyroute'], latest: NotificationRouteRemovedV1 }),
  CredentialExpiring: define('CredentialExpiring', { description: 'A credential with an expiry (an API token, a TLS certificate of the site) is within its warning time of it (raised once per expiry time).', categories: ['expiry'], latest: CredentialExpiringV1 }),
  ReplicationBehind: define('ReplicationBehind', { description: 'A replication target has fallen further behind than its policy allows: the oldest restore point in scope not yet there is older than maxLagMinutes (raised once until it caught up).', categories: ['repllag'], latest: ReplicationBehindV1 }),
  ReplicationCaughtUp: define('ReplicationCaughtUp', { description: 'A replication target that had fallen behind holds every restore point in scope older than the allowed lag again.', categories: ['repllag'], latest: ReplicationCaughtUpV1 }),
  RpoMissed: define('RpoMissed', { description: 'A VM has no restore point younger than its policy\'s recovery-point objective (raised once until it has one again).', categories: ['rpo'], latest: RpoMissedV1 }),
  RpoRestored: define('RpoRestored', { description: 'A VM that had missed its RPO has a restore point younger than it again.', categories: ['rpo'], latest: RpoRestoredV1 }),
  VerifyStarted: define('VerifyStarted', { description: 'A verify job of a repository started: which restore points (not verified within N days), what fraction of their chunks.', categories: ['verify'], latest: VerifyStartedV1 }),
  VerifyCompleted: define('VerifyCompleted', { description: 'A verify job ended: the restore points checked, chunks and bytes read, the damaged objects and every restore point using one.', categories: ['verify'], latest: VerifyCompletedV1 }),
  RestorePointDamaged: define('RestorePointDamaged', { description: 'A verify found damaged objects this restore point uses; the next backup of its VM reads it whole and sends those chunks again.', categories: ['restorepoint'], latest: RestorePointDamagedV1 }),
  TestRestoreStarted: define('TestRestoreStarted', { description: 'A restore point is being booted in isolation (no network, writes thrown away) to be judged by checks.', categories: ['testrestore'], latest: TestRestoreStartedV1 }),
  TestRestorePassed: define('TestRestorePassed', { description: 'The restore point booted and passed every check; a screenshot of its console is kept.', categories: ['testrestore'], latest: TestRestorePassedV1 }),
  TestRestoreRefused: define('TestRestoreRefused', { description: 'A policy\'s scheduled test restore was refused by the data mover (or none answered): it did not run; why.', categories: ['testrestore'], latest: TestRestoreRefusedV1 }),
  TestRestoreFailed: define('TestRestoreFailed', { description: 'The restore point failed a check (which, why), with the console tail and a screenshot; everything was torn down.', categories: ['testrestore'], latest: TestRestoreFailedV1 }),
} as const;

export type EventRegistry = typeof EVENT_SCHEMAS;
export type EventType = keyof EventRegistry;
/** Data of the current version of each event type. */
export type EventDataMap = { [K in EventType]: Static<EventRegistry[K]['latest']> };

export function isEventType(type: string): type is EventType {
  return Object.hasOwn(EVENT_SCHEMAS, type);
}

/** The current schema version of an event type. */
export function latestVersion(type: EventType): number {
  return EVENT_SCHEMAS[type].history.length + 1;
}

/** Data schema of one version (undefined when the version does not exist). */
export function dataSchema(type: EventType, version: number): TSchema | undefined {
  const def: EventDefinition = EVENT_SCHEMAS[type];
  if (!Number.isInteger(version) || version < 1) return undefined;
  if (version === def.history.length + 1) return def.latest;
  return def.history[version - 1]?.data;
}
