// Provenance: the one table of which writer may emit which event kinds (and so into which
// stream categories, hence which NATS subjects), and what a writer's signature covers.
// A writer is one of a site's NATS identities (libs/nats-security): a service, the gateway
// acting for a person it authenticated (token, OIDC or a signed command), or `admin`, the
// operator's CLI and `cairn up` itself. Enforced three times: the append path refuses an event
// kind its writer may not emit, NATS publish permissions allow each identity only the subjects
// of its categories, and readers refuse and report (ProvenanceViolation) any event whose
// signature or writer does not fit this table. docs/security.md "Event provenance".
import { canonicalJson } from './command.ts';
import type { CairnEvent } from './envelope.ts';
import { EVENT_SCHEMAS, type EventType } from './events/registry.ts';

export const WRITERS = [
  'scheduler', 'snapshot-coordinator', 'data-mover', 'catalogue', 'gateway', 'audit-bridge', 'replication', 'notifier', 'admin',
] as const;
export type Writer = (typeof WRITERS)[number];

// The catalogue, the audit bridge and the notifier write no events but ProvenanceViolation reports.
const SERVICES_WITH_COMMANDS: readonly Writer[] = ['scheduler', 'snapshot-coordinator', 'data-mover', 'gateway', 'replication'];
const CONSUMERS: readonly Writer[] = ['scheduler', 'snapshot-coordinator', 'data-mover', 'replication', 'gateway'];

/**
 * Who may write each event kind. Identity and approval events come only from the gateway's
 * handlers (which authenticated the person), except the local operator's own user and key that
 * `cairn up` records on first start (`admin`). No worker identity writes identity, approval or
 * access-control events; `admin` writes no approval, token or deletion event.
 * A new event kind must get its row here (the type makes a missing row a compile error).
 */
export const EVENT_WRITERS: { readonly [K in EventType]: readonly Writer[] } = {
  // jobs: the scheduler drives the lifecycle, the coordinator the view, the data mover the transfer
  JobRequested: ['scheduler'],
  JobStarted: ['scheduler'],
  SnapshotRequested: ['scheduler'],
  SnapshotTaken: ['snapshot-coordinator'],
  SnapshotFailed: ['snapshot-coordinator'],
  SnapshotReleased: ['snapshot-coordinator'],
  TransferQueued: ['scheduler'],
  TransferStarted: ['data-mover'],
  RestorePointCommitted: ['data-mover'],
  JobCompleted: ['scheduler'],
  JobFailed: ['scheduler', 'data-mover'],
  JobCancelled: ['scheduler'],
  // inventory
  VmDiscovered: ['snapshot-coordinator'],
  DiskAttached: ['snapshot-coordinator'],
  DiskDetached: ['snapshot-coordinator'],
  VmPowerStateChanged: ['snapshot-coordinator'],
  VmRemoved: ['snapshot-coordinator'],
  // policies and retention
  PolicyCreated: ['scheduler'],
  PolicyUpdated: ['scheduler'],
  PolicyDeleted: ['scheduler'],
  PolicyPaused: ['scheduler'],
  PolicyResumed: ['scheduler'],
  RestorePointExpired: ['scheduler'],
  RestorePointLocked: ['data-mover'],
  MessageDeadLettered: CONSUMERS,
  // `cairn up` supervising the nats-server it started (its own connection is `admin`)
  NatsServerRestarted: ['admin'],
  // replication
  ReplicationPolicyCreated: ['replication'],
  ReplicationPolicyDeleted: ['replication'],
  ReplicaCommitted: ['replication'],
  ReplicaVerified: ['replication'],
  KeyEscrowReceived: ['replication'],
  // The hub's site watch (cairn hub), on the hub's own log.
  SiteSilent: ['admin'],
  // Global policies: the hub's CLI records the person-signed statement (each site checks the signature itself).
  GlobalPolicyPublished: ['admin'],
  SiteContactRestored: ['admin'],
  SiteAllowedGapSet: ['admin'],
  ReplicaRepaired: ['replication'],
  ReplicaExpired: ['replication'],
  ReplicaGarbageCollected: ['replication'],
  // people: only the gateway (and cairn up's bootstrap of the local operator)
  UserCreated: ['gateway', 'admin'],
  UserRolesChanged: ['gateway'],
  UserDisabled: ['gateway'],
  UserKeyAdded: ['gateway', 'admin'],
  UserKeyRevoked: ['gateway'],
  TokenIssued: ['gateway'],
  TokenRevoked: ['gateway'],
  SignedIn: ['gateway'],
  AccessRecovered: ['gateway'],
  AuthFailed: ['gateway'],
  AccessDenied: SERVICES_WITH_COMMANDS,
  ApprovalRequested: ['gateway'],
  ApprovalGranted: ['gateway'],
  ApprovalRejected: ['gateway'],
  ApprovalExecuted: ['gateway'],
  // destructive acts, recorded by the data mover that carried them out after checking the approval
  RestorePointDeleted: ['data-mover'],
  // file-level restore: the data mover that served the browse, copy or search
  RestorePointFilesBrowsed: ['data-mover'],
  FilesRestored: ['data-mover'],
  FilesSearched: ['data-mover'],
  DiskRestored: ['data-mover'],
  // restore jobs: any data mover records the request it accepted and the work it does
  RestoreRequested: ['data-mover'],
  RestoreStarted: ['data-mover'],
  RestoreProgressed: ['data-mover'],
  RestoreCompleted: ['data-mover'],
  RestoreFailed: ['data-mover'],
  // instant recovery: the data mover that started, mirrored or discarded the session
  InstantRecoveryStarted: ['data-mover'],
  InstantServing: ['data-mover'],
  InstantMirroring: ['data-mover'],
  InstantFinished: ['data-mover'],
  InstantDiscarded: ['data-mover'],
  InstantFailed: ['data-mover'],
  RepositoryDeleted: ['data-mover'],
  SiteDeclaredLost: ['data-mover'],
  // repository keys: the data mover's key journal, or the operator's CLI (`cairn repo …`)
  RepositoryInitialized: ['data-mover', 'admin'],
  RepositoryKeyRotated: ['data-mover', 'admin'],
  RecoveryKeyExported: ['data-mover', 'admin'],
  // notification routes: the operator's CLI (`cairn notify route …`)
  NotificationRouteAdded: ['admin'],
  NotificationRouteRemoved: ['admin'],
  // RPO watch: the scheduler, which knows the policies
  RpoMissed: ['scheduler'],
  CredentialExpiring: ['scheduler'],
  // replication lag watch: the source site's replication, which makes the copies
  ReplicationBehind: ['replication'],
  ReplicationCaughtUp: ['replication'],
  RpoRestored: ['scheduler'],
  // verify jobs: the data mover that holds the repository
  VerifyStarted: ['data-mover'],
  VerifyCompleted: ['data-mover'],
  RestorePointDamaged: ['data-mover'],
  TestRestoreStarted: ['data-mover'],
  TestRestorePassed: ['data-mover'],
  TestRestoreFailed: ['data-mover'],
  // a scheduled test restore the data mover would not start: the scheduler that asked
  TestRestoreRefused: ['scheduler'],
  // provenance itself
  EventSigningStarted: ['admin'],
  ProvenanceViolation: WRITERS,
};

export function isWriter(value: string): value is Writer {
  return (WRITERS as readonly string[]).includes(value);
}

/** Whether `writer` may emit events of `type` (unknown writers and types: no). */
export function mayWrite(writer: string, type: string): boolean {
  if (!Object.hasOwn(EVENT_WRITERS, type)) return false;
  return (EVENT_WRITERS[type as EventType] as readonly string[]).includes(writer);
}

/** The event kinds `writer` may emit. */
export function writableEventTypes(writer: Writer): EventType[] {
  return (Object.keys(EVENT_WRITERS) as EventType[]).filter((t) => EVENT_WRITERS[t].includes(writer));
}

/** The stream categories `writer` may append to (its NATS subjects are `cairn.<site>.evt.<category>.>`). */
export function writableCategories(writer: Writer): string[] {
  return [...new Set(writableEventTypes(writer).flatMap((t) => EVENT_SCHEMAS[t].categories))].sort();
}

/**
 * What an event signature covers: the canonical JSON (`canonicalJson`, as for command signatures:
 * sorted keys, no whitespace) of the whole event as written, with `provenance` holding only writer and public key.
 */
export function eventSigningString(event: CairnEvent, writer: string, publicKey: string): string {
  const { provenance: _p, ...rest } = event;
  return `cairn-event-v2\n${canonicalJson({ ...rest, provenance: { writer, publicKey } })}`;
}
