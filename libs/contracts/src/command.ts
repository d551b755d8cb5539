// Commands: imperative requests (`RequestBackup`) sent as NATS request/reply on
// `cairn.<site>.cmd.<service>.<name>`. One envelope for all, a payload schema per command
// and version, and one reply shape that says accepted or why not.
// Adding a version: add the schema under the next number in `versions`; senders use `latest`.
import './formats.ts';
import { createHash } from 'node:crypto';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { lazySchema } from './lazy-schema.ts';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import { Actor, TraceContext } from './envelope.ts';
import { Id, Name, PlainName, Reason } from './events/common.ts';
import { PolicyFields, QuiescePolicy, TestRestoreCheckFields } from './events/policy.events.ts';
import { GlobalPolicyStatement } from './events/global-policy.events.ts';
import { ReplicationPolicyFields } from './events/replication.events.ts';
import { ApprovalAction, PersonSignature } from './events/security.events.ts';
import { RequestRestoreResult, RequestRestoreV1 } from './restore-commands.ts';
import { DiscardInstantV1, FinishInstantV1, InstantResult, ListInstantResult, ListInstantV1, ManageInstantDomainResult, ManageInstantDomainV1, StartInstantResult, StartInstantV1 } from './events/instant.events.ts';
import { BrowseFilesResult, BrowseFilesV1, OpenFileDownloadResult, OpenFileDownloadV1, RestoreFilesResult, RestoreFilesV1, SearchFilesResult, SearchFilesV1, WriteGuestFilesResult, WriteGuestFilesV1 } from './files.ts';

/**
 * Who vouches for a command: an ed25519 signature (an nkey: a person's operator key, or a
 * service identity's key) over `commandSigningString` (docs/security.md, signed commands).
 */
export const CommandAuth = lazySchema(() => Type.Object({
  /** The signer's public nkey (`U…`). */
  publicKey: Type.String({ pattern: '^U[A-Z2-7]{55}$' }),
  /** base64url of the ed25519 signature. */
  signature: Type.String({ minLength: 16, maxLength: 256, pattern: '^[A-Za-z0-9_-]+$' }),
  /** When it was signed; receivers refuse a signature more than 5 minutes off their clock. */
  issuedAt: Type.String({ format: 'date-time' }),
}, { $id: 'CommandAuth', additionalProperties: false }));
export type CommandAuth = Static<typeof CommandAuth>;

/** The envelope every command travels in; `payload` is checked against the command's schema. */
export const CommandEnvelope = lazySchema(() => Type.Object({
  id: Type.String({ format: 'uuid', description: 'Id of this request (one per send, retries included).' }),
  name: Type.String({ pattern: '^[A-Z][A-Za-z0-9]{0,127}$', description: 'PascalCase, imperative.' }),
  schemaVersion: Type.Integer({ minimum: 1 }),
  idempotencyKey: Type.String({
    minLength: 1,
    maxLength: 256,
    description: 'Same key within the idempotency window: the first reply is returned, the handler does not run again.',
  }),
  actor: Actor,
  site: Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$' }),
  time: Type.String({ format: 'date-time' }),
  trace: Type.Optional(TraceContext),
  /** The signature of the actor's key (or of the service identity that authenticated the actor). */
  auth: Type.Optional(CommandAuth),
  payload: Type.Unknown(),
}, { $id: 'CommandEnvelope', additionalProperties: false }));

/** A command as sent: envelope plus typed payload. */
export interface Command<N extends string = string, P = unknown> {
  readonly id: string;
  readonly name: N;
  readonly schemaVersion: number;
  readonly idempotencyKey: string;
  readonly actor: Actor;
  readonly site: string;
  readonly time: string;
  readonly trace?: TraceContext;
  readonly auth?: CommandAuth;
  readonly payload: P;
}

/** JSON with object keys sorted at every level and no whitespace (what signatures cover). */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

/**
 * What a command signature covers: the command's id and idempotency key, name and version,
 * site, actor, the signing time and the SHA-256 of its canonical payload, one per line.
 */
export function commandSigningString(command: Omit<Command, 'auth'>, issuedAt: string): string {
  const payloadSha256 = createHash('sha256').update(canonicalJson(command.payload)).digest('hex');
  return [
    'cairn-command-v1', command.id, command.idempotencyKey, command.name, String(command.schemaVersion), command.site,
    `${command.actor.kind}:${command.actor.id}`, issuedAt, payloadSha256,
  ].join('\n');
}

/** Error codes every command handler may reply with; services may add their own (snake_case). */
export const COMMAND_ERROR_CODES = {
  /** Envelope or payload does not match the schema; `details.problems` lists what. */
  invalidCommand: 'invalid_command',
  /** No such command, or not at that schema version. */
  unknownCommand: 'unknown_command',
  /** The request is larger than the receiver accepts. */
  payloadTooLarge: 'payload_too_large',
  /** The idempotency key was used before with a different payload. */
  idempotencyConflict: 'idempotency_conflict',
  /** The same idempotency key is being handled right now; retry later. */
  inProgress: 'in_progress',
  notFound: 'not_found',
  /** The command conflicts with current state (e.g. the job already ended). */
  conflict: 'conflict',
  forbidden: 'forbidden',
  /** The command's signature is missing, wrong, stale, or by a key that is not (or no longer) the actor's. */
  unauthenticated: 'unauthenticated',
  /** A dependency is down; the same command may succeed later. */
  unavailable: 'unavailable',
  /** Unexpected failure in the handler; nothing was decided. */
  internal: 'internal',
} as const;
export type CommandErrorCode = (typeof COMMAND_ERROR_CODES)[keyof typeof COMMAND_ERROR_CODES];

export const CommandError = lazySchema(() => Type.Object({
  code: Type.String({ pattern: '^[a-z][a-z0-9_]{0,63}$' }),
  message: Type.String({ maxLength: 4096 }),
  details: Type.Optional(Type.Unknown()),
}, { additionalProperties: false }));
export type CommandError = Static<typeof CommandError>;

export const CommandAccepted = lazySchema(() => Type.Object({
  accepted: Type.Literal(true),
  result: Type.Optional(Type.Unknown()),
}, { additionalProperties: false }));

export const CommandRejected = lazySchema(() => Type.Object({
  accepted: Type.Literal(false),
  error: CommandError,
}, { additionalProperties: false }));

export const CommandReply = lazySchema(() => Type.Union([CommandAccepted, CommandRejected], { $id: 'CommandReply' }));
export type CommandRejected = Static<typeof CommandRejected>;
/** A reply, typed by the result of an accepted command. */
export type CommandReply<R = unknown> = { readonly accepted: true; readonly result?: R } | CommandRejected;

// ---- payloads -------------------------------------------------------------------------------

const Disk = Name;

/**
 * Where the sender left the job's stream: the receiver appends its fact expecting this revision
 * (no read), and reads the stream only when it moved on since.
 */
const JobStreamPosition = {
  /** Revision of the job stream's last event when the command was sent. */
  jobRevision: Type.Optional(Type.Integer({ minimum: 0 })),
  /**
   * Global position (stream sequence) of that event, learnt with its revision: the receiver's
   * append expects it as the stream's last, so it does not read the stream's head first.
   */
  jobPosition: Type.Optional(Type.Integer({ minimum: 1 })),
  /** Id of that event: the cause of what the receiver records. */
  causationId: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
};

export const RequestBackupV1 = lazySchema(() => Type.Object({
  vmId: Id,
  policyId: Type.Optional(Id),
  /** `auto`: incremental when a usable parent and bitmap exist, full otherwise. */
  mode: Type.Union([Type.Literal('auto'), Type.Literal('full')]),
  /** Most bytes per second this backup reads (instead of its policy's limit). */
  bandwidthBytesPerSec: Type.Optional(Type.Integer({ minimum: 1024 })),
}, { additionalProperties: false }));
export const RequestBackupResult = lazySchema(() => Type.Object({ jobId: Id }, { additionalProperties: false }));

export const RequestSnapshotV1 = lazySchema(() => Type.Object({
  jobId: Id,
  vmId: Id,
  /** Disks to include; all of the VM's disks when omitted. */
  disks: Type.Optional(Type.Array(Disk, { minItems: 1 })),
  /**
   * Freeze guest file systems through the guest agent first: `required`, `preferred` (the
   * default), `off`; `true`/`false` mean preferred/off.
   */
  quiesce: Type.Optional(Type.Union([Type.Boolean(), QuiescePolicy])),
  /** How long the view may live before the coordinator releases it on its own. */
  leaseMs: Type.Optional(Type.Integer({ minimum: 1000, maximum: 7 * 24 * 3600 * 1000 })),
  // What the job's stream says, sent along so that the coordinator never reads it to learn it.
  /** The snapshot id the job asked for (JobStarted v2; SnapshotRequested before); the idempotency key when omitted. */
  snapshotId: Type.Optional(Id),
  /** The job's mode (default auto). */
  mode: Type.Optional(Type.Union([Type.Literal('auto'), Type.Literal('full')])),
  /** The job's policy: its changed-block history (bitmap chain). None: the manual chain. */
  policyId: Type.Optional(Type.Union([Id, Type.Null()])),
  /**
   * The restore point the transfer will build on and the snapshot it was taken at; null when
   * there is none it can build on (then the view is full, for `reason`). Absent: the
   * coordinator goes by the changed-block history alone.
   */
  parent: Type.Optional(Type.Union([
    Type.Object({ restorePointId: Id, snapshotId: Id }, { additionalProperties: false }),
    Type.Object({ none: Reason }, { additionalProperties: false }),
  ])),
  ...JobStreamPosition,
}, { additionalProperties: false }));
export const RequestSnapshotResult = lazySchema(() => Type.Object({ snapshotId: Id }, { additionalProperties: false }));

export const ReleaseSnapshotV1 = lazySchema(() => Type.Object({
  jobId: Id,
  snapshotId: Id,
  /** `success` advances the changed-block generation; `failure` keeps the changes for the next backup. Default failure. */
  outcome: Type.Optional(Type.Union([Type.Literal('success'), Type.Literal('failure')])),
  reason: Type.Optional(Reason),
  ...JobStreamPosition,
}, { additionalProperties: false }));

export const CreatePolicyV1 = lazySchema(() => Type.Object({
  ...PolicyFields,
  name: PlainName,
  /** Chosen by the scheduler when omitted. */
  policyId: Type.Optional(PolicyFields.policyId),
}, { additionalProperties: false }));
export const CreatePolicyResult = lazySchema(() => Type.Object({ policyId: Id }, { additionalProperties: false }));

export const CancelJobV1 = lazySchema(() => Type.Object({
  jobId: Id,
  reason: Type.Optional(Reason),
}, { additionalProperties: false }));

export const RestoreTarget = lazySchema(() => Type.Union([
  /** A raw image file on the data mover's host. */
  Type.Object({ kind: Type.Literal('file'), path: Type.String({ minLength: 1, maxLength: 4096 }) }, { additionalProperties: false }),
  /** An existing disk of a VM, overwritten in place. */
  Type.Object({ kind: Type.Literal('vm-disk'), vmId: Id, disk: Disk }, { additionalProperties: false }),
  /** Instant recovery: the restore point served read-write over NBD, writes kept in an overlay. */
  Type.Object({ kind: Type.Literal('nbd-export'), exportName: PlainName }, { additionalProperties: false }),
]));

export const RestoreDiskV1 = lazySchema(() => Type.Object({
  restorePointId: Id,
  disk: Disk,
  target: RestoreTarget,
  /** Replace an existing target file (default: refuse, nothing changed). */
  overwrite: Type.Optional(Type.Boolean()),
  /** Image format of a file target (default raw). */
  format: Type.Optional(Type.Union([Type.Literal('raw'), Type.Literal('qcow2')])),
}, { additionalProperties: false }));
export const RestoreDiskResult = lazySchema(() => Type.Object({
  restoreId: Id,
  path: Type.Optional(Type.String()),
  /** For an nbd-export target: where the restore point is served (read-write, writes kept in an overlay). */
  nbd: Type.Optional(Type.Object({ socket: Type.String(), exportName: Name }, { additionalProperties: false })),
  sizeBytes: Type.Integer({ minimum: 0 }),
  durationMs: Type.Integer({ minimum: 0 }),
}, { additionalProperties: false }));

export const LockRestorePointV1 = lazySchema(() => Type.Object({
  restorePointId: Id,
  /** Until when it cannot be deleted or overwritten (compliance mode: never shortened). */
  retainUntil: Type.String({ format: 'date-time' }),
}, { additionalProperties: false }));
export const LockRestorePointResult = lazySchema(() => Type.Object({
  restorePointId: Id,
  retainUntil: Type.String({ format: 'date-time' }),
  /** Lock records written or extended (manifest, index pages, chunks). */
  objectsLocked: Type.Integer({ minimum: 0 }),
}, { additionalProperties: false }));

/** Replaces a policy (same id); keeping fewer restore points of any kind needs a granted four-eyes approval. */
export const UpdatePolicyV1 = lazySchema(() => Type.Object({
  policy: Type.Object({ ...PolicyFields, name: PlainName }, { additionalProperties: false }),
  /** A granted `shorten-retention` approval for exactly this policy, when retention shortens. */
  approvalId: Type.Optional(Id),
}, { additionalProperties: false }));
export const UpdatePolicyResult = lazySchema(() => Type.Object({ policyId: Id }, { additionalProperties: false }));

/**
 * A global policy statement offered by the hub (docs/sites.md, "Global policies"). Its authority
 * is the person's signature inside it, checked by the scheduler against the site's own users,
 * keys and roles — not the command's sender, which is the hub.
 */
export const ApplyGlobalPolicyV1 = lazySchema(() => Type.Object({ statement: GlobalPolicyStatement }, { additionalProperties: false }));
export const ApplyGlobalPolicyResult = lazySchema(() => Type.Object({
  policyId: Id,
  /** The version the site runs now. */
  version: Type.Integer({ minimum: 1 }),
  /** created / updated / deleted (withdrawn, or this version no longer selects the site): applied now; current: the site already had this version or a newer one. */
  outcome: Type.Union([Type.Literal('created'), Type.Literal('updated'), Type.Literal('deleted'), Type.Literal('current')]),
}, { additionalProperties: false }));

/** Pauses, resumes or deletes a policy (deleting keeps its restore points). */
export const PolicyRefV1 = lazySchema(() => Type.Object({ policyId: Id }, { additionalProperties: false }));
export const PolicyRefResult = lazySchema(() => Type.Object({ policyId: Id }, { additionalProperties: false }));

/** Deletes a restore point; only with an approval whose request and grant are by two different administrators. */
export const DeleteRestorePointV1 = lazySchema(() => Type.Object({
  restorePointId: Id,
  /** The granted four-eyes approval (stream `approval-<approvalId>`), checked by the data mover in the log. */
  approvalId: Id,
}, { additionalProperties: false }));
export const DeleteRestorePointResult = lazySchema(() => Type.Object({
  restorePointId: Id,
  /** False when the restore point was already gone. */
  deleted: Type.Boolean(),
}, { additionalProperties: false }));

/**
 * Deletes a repository and everything in it; only with a `delete-repository` approval whose
 * request and grant are by two different administrators, and only when no lock is live.
 */
export const DeleteRepositoryV1 = lazySchema(() => Type.Object({
  repository: Name,
  approvalId: Id,
}, { additionalProperties: false }));
export const DeleteRepositoryResult = lazySchema(() => Type.Object({
  repository: Name,
  repositoryId: Type.String(),
  restorePointsDeleted: Type.Integer({ minimum: 0 }),
  objectsDeleted: Type.Integer({ minimum: 0 }),
}, { additionalProperties: false }));

/** Declare another site lost (after a four-eyes approval): this site may then open the key it escrowed here. */
export const DeclareSiteLostV1 = lazySchema(() => Type.Object({
  site: Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$' }),
  approvalId: Id,
}, { additionalProperties: false }));
export const DeclareSiteLostResult = lazySchema(() => Type.Object({
  site: Type.String(),
  repositoryId: Type.String(),
  /** False when it was declared lost before (nothing recorded again). */
  declared: Type.Boolean(),
}, { additionalProperties: false }));

/**
 * Whole-VM restore onto a libvirt hypervisor: the data mover that wrote every disk asks the
 * snapshot coordinator to define (and start, if the request said so) the domain. The
 * coordinator reads what to define from the restore job's own stream (the recorded plan and
 * the restore point's domain XML), never from the sender: the command names only the job.
 */
export const DefineRestoredVmV1 = lazySchema(() => Type.Object({
  restoreId: Id,
}, { additionalProperties: false }));
export const DefineRestoredVmResult = lazySchema(() => Type.Object({
  host: Type.String(),
  domain: Type.String(),
  uuid: Type.String(),
  /** MAC addresses of the new domain's NICs, in order. */
  macs: Type.Array(Type.String()),
  started: Type.Boolean(),
  /** Set when the hypervisor is VMware: the vSphere VM created or attached to (its managed object id), and the disks attached. */
  vmware: Type.Optional(Type.Object({ moref: Type.String(), attached: Type.Optional(Type.Array(Type.String())) }, { additionalProperties: false })),
}, { additionalProperties: false }));

/**
 * In-place restore onto libvirt, before any disk is written: the coordinator checks the domain
 * the restore job names (from its own stream) is shut off and answers where its disks are.
 */
export const PrepareInPlaceRestoreV1 = lazySchema(() => Type.Object({
  restoreId: Id,
}, { additionalProperties: false }));
export const PrepareInPlaceRestoreResult = lazySchema(() => Type.Object({
  domain: Type.String(),
  uuid: Type.String(),
  disks: Type.Array(Type.Object({ target: Type.String(), path: Type.String(), format: Type.String() }, { additionalProperties: false })),
}, { additionalProperties: false }));

/** Whether a data mover of the site holds this repository (a request about an unknown one is 404 at once). */
export const DescribeRepositoryV1 = lazySchema(() => Type.Object({
  repository: Name,
}, { additionalProperties: false }));
export const DescribeRepositoryResult = lazySchema(() => Type.Object({
  repository: Name,
  repositoryId: Type.String(),
  /** Set when the repository was deleted (four-eyes) while this data mover ran: who and why. */
  deleted: Type.Optional(Type.String()),
}, { additionalProperties: false }));

/**
 * A locked-out site's way back in (docs/security.md, Accounts): an administrator whose own
 * operator key signs this (the local CLI, `cairn access recover`) gets a new API token from the
 * gateway, which records AccessRecovered and TokenIssued. Not through the REST API, not for a
 * command a service signed.
 */
/**
 * Four-eyes over NATS (commands through the hub, issue 24): the same request and decision as
 * `POST /v1/approvals…` at the site's gateway, signed by the person (command and approval
 * statement both), for an operator who reaches the site only through the hub.
 */
export const RequestApprovalV1 = lazySchema(() => Type.Object({
  approvalId: Id,
  action: ApprovalAction,
  reason: Type.Optional(Reason),
  signature: PersonSignature,
}, { additionalProperties: false }));
export const DecideApprovalV1 = lazySchema(() => Type.Object({
  approvalId: Id,
  decision: Type.Union([Type.Literal('approve'), Type.Literal('reject')]),
  reason: Type.Optional(Reason),
  signature: PersonSignature,
}, { additionalProperties: false }));
export const ApprovalReply = lazySchema(() => Type.Object({
  approvalId: Id,
  status: Type.String(),
  requestedBy: Type.String(),
  approvedBy: Type.Optional(Type.Union([Type.String(), Type.Null()])),
}, { additionalProperties: true }));

/** The hub's allowed gap for one site (the hub's site watch; signed by the hub's admin identity on a secure hub). */
export const SetSiteAllowedGapV1 = lazySchema(() => Type.Object({
  site: Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$' }),
  allowedGapMs: Type.Integer({ minimum: 1000, maximum: 30 * 24 * 3600_000 }),
}, { additionalProperties: false }));
export const SetSiteAllowedGapResult = lazySchema(() => Type.Object({
  site: Type.String(),
  allowedGapMs: Type.Integer(),
  previousMs: Type.Integer(),
}, { additionalProperties: false }));

export const RecoverAccessV1 = lazySchema(() => Type.Object({
  reason: Reason,
}, { additionalProperties: false }));
export const RecoverAccessResult = lazySchema(() => Type.Object({
  userId: Type.String(),
  tokenId: Id,
  /** The new API token: shown once, only in this reply. */
  token: Type.String(),
}, { additionalProperties: false }));

export const StopRestoreExportV1 = lazySchema(() => Type.Object({
  exportName: PlainName,
}, { additionalProperties: false }));

export const ListRestoreExportsV1 = lazySchema(() => Type.Object({}, { additionalProperties: false }));
export const ListRestoreExportsResult = lazySchema(() => Type.Object({
  /** The data mover that answered (each mover serves its own exports). */
  worker: Type.String(),
  items: Type.Array(Type.Object({
    exportName: Type.String(),
    socket: Type.String(),
    restorePointId: Type.String(),
    disk: Type.String(),
    sizeBytes: Type.Integer({ minimum: 0 }),
    since: Type.String({ format: 'date-time' }),
    purpose: Type.Union([Type.Literal('restore'), Type.Literal('files'), Type.Literal('test-restore')]),
  }, { additionalProperties: false })),
}, { additionalProperties: false }));

/** Boot a restore point in isolation and judge it (issue 16); the result comes as TestRestorePassed/Failed in `testrestore-<id>`. */
export const TestRestoreV1 = lazySchema(() => Type.Object({
  restorePointId: Id,
  ...TestRestoreCheckFields,
  /** Sent by the scheduler for a policy's `testRestore` schedule: recorded in TestRestoreStarted. */
  policyId: Type.Optional(Id),
  /** The scheduler names it (one per policy, VM and slot) so a slot asked twice boots once. */
  testRestoreId: Type.Optional(Id),
}, { additionalProperties: false }));
export const TestRestoreResult = lazySchema(() => Type.Object({ testRestoreId: Type.String(), worker: Type.String() }, { additionalProperties: false }));

export const AddHypervisorV1 = lazySchema(() => Type.Union([
  Type.Object({
    /** Host name the VMs of this hypervisor are reported under. */
    name: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }),
    kind: Type.Literal('qemu'),
    /** QMP socket of a running QEMU or qemu-storage-daemon (reachable by the coordinator). */
    qmpSocket: Type.String({ minLength: 1, maxLength: 1024 }),
    guestAgentSocket: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
  }, { additionalProperties: false }),
  Type.Object({
    name: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }),
    kind: Type.Literal('libvirt'),
    /** libvirt connection URI: qemu:///system (qemu+ssh:// and qemu+tls:// for the inventory). */
    uri: Type.String({ pattern: '^[a-z0-9+]+://\\S*$', maxLength: 1024 }),
    /** A libvirt auth.conf on the coordinator's host with the credentials (never the secret itself). */
    credentialsFile: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
    /**
     * qemu+tls:// only: directory on the coordinator's host with the NBD client certificate
     * (cacert.pem, clientcert.pem, clientkey.pem; default the URI's pkipath, else libvirt's client PKI).
     */
    nbdTlsDir: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
    /** qemu+tls:// only: first and last TCP port on the host the NBD exports may listen on (default 10809–10899). */
    nbdPorts: Type.Optional(Type.Tuple([Type.Integer({ minimum: 1, maximum: 65535 }), Type.Integer({ minimum: 1, maximum: 65535 })])),
  }, { additionalProperties: false }),
  Type.Object({
    name: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }),
    kind: Type.Literal('vmware'),
    /** vCenter or ESXi SDK endpoint (https://vcenter/sdk). */
    url: Type.String({ pattern: '^https://\\S+$', maxLength: 1024 }),
    /** A file on the coordinator's host with the username and password (never the secret itself). */
    credentialsFile: Type.String({ minLength: 1, maxLength: 1024 }),
    /** PEM file of the CA (or self-signed certificate) vCenter's certificate chains to. */
    caFile: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
    /** SHA-1 or SHA-256 fingerprint of vCenter's certificate, pinned instead of a CA. */
    thumbprint: Type.Optional(Type.String({ pattern: '^[0-9A-Fa-f:]{40,95}$' })),
  }, { additionalProperties: false }),
]));
export const AddHypervisorResult = lazySchema(() => Type.Object({
  name: Type.String(),
  vms: Type.Array(Type.String()),
}, { additionalProperties: false }));

const Site = Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$' });

export const CreateReplicationPolicyV1 = lazySchema(() => Type.Object({
  ...ReplicationPolicyFields,
  name: PlainName,
  /** Chosen by the replication service when omitted. */
  policyId: Type.Optional(ReplicationPolicyFields.policyId),
  /** The site receiving the command when omitted. */
  sourceSite: Type.Optional(ReplicationPolicyFields.sourceSite),
}, { additionalProperties: false }));
export const CreateReplicationPolicyResult = lazySchema(() => Type.Object({ policyId: Id }, { additionalProperties: false }));

export const DeleteReplicationPolicyV1 = lazySchema(() => Type.Object({ policyId: Id }, { additionalProperties: false }));

export const ReplicateRestorePointV1 = lazySchema(() => Type.Object({
  restorePointId: Id,
  targetSite: Site,
}, { additionalProperties: false }));
export const ReplicationCopyResult = lazySchema(() => Type.Object({
  restorePointId: Id,
  targetSite: Site,
  /** False when the target held the restore point already. */
  committed: Type.Boolean(),
  chunksSent: Type.Integer({ minimum: 0 }),
  chunkBytesSent: Type.Integer({ minimum: 0 }),
  pagesSent: Type.Integer({ minimum: 0 }),
  /** Every byte of the transfer's messages to the target, headers included. */
  bytesSent: Type.Integer({ minimum: 0 }),
  durationMs: Type.Integer({ minimum: 0 }),
}, { additionalProperties: false }));

export const VerifyReplicaV1 = lazySchema(() => Type.Object({
  /** The site whose repository this site holds a copy of. */
  sourceSite: Site,
}, { additionalProperties: false }));
export const VerifyReplicaResult = lazySchema(() => Type.Object({
  ok: Type.Boolean(),
  objectsChecked: Type.Integer({ minimum: 0 }),
  bytesChecked: Type.Integer({ minimum: 0 }),
  damaged: Type.Array(Type.Object({ kind: Type.String(), id: Type.String(), damage: Type.String(), detail: Type.String() })),
}, { additionalProperties: false }));

export const RepairReplicaV1 = lazySchema(() => Type.Object({
  /** The site holding the damaged copy; the source (the site receiving this) sends the objects again. */
  targetSite: Site,
}, { additionalProperties: false }));
export const RepairReplicaResult = lazySchema(() => Type.Object({
  damaged: Type.Integer({ minimum: 0 }),
  repaired: Type.Integer({ minimum: 0 }),
  /** Damaged objects the source cannot supply (gone or damaged at the source too). */
  unrepairable: Type.Array(Type.String()),
}, { additionalProperties: false }));

export const CollectReplicaGarbageV1 = lazySchema(() => Type.Object({
  /** The site whose repository this site holds a copy of. */
  sourceSite: Site,
  /** Unreferenced objects younger than this are kept (default 1 hour). */
  graceMs: Type.Optional(Type.Integer({ minimum: 0 })),
}, { additionalProperties: false }));
export const CollectReplicaGarbageResult = lazySchema(() => Type.Object({
  /** True when a copy into this replica store was running: nothing was swept, try again later. */
  deferred: Type.Boolean(),
  liveReplicas: Type.Integer({ minimum: 0 }),
  withoutRefs: Type.Integer({ minimum: 0 }),
  objectsDeleted: Type.Integer({ minimum: 0 }),
  bytesFreed: Type.Integer({ minimum: 0 }),
  objectsKeptYoung: Type.Integer({ minimum: 0 }),
}, { additionalProperties: false }));

// ---- registry -------------------------------------------------------------------------------

export interface CommandDefinition<N extends string = string, L extends TSchema = TSchema, R extends TSchema = TSchema> {
  readonly name: N;
  readonly description: string;
  /** The service that handles it (the `<service>` of its subject). */
  readonly service: string;
  /** Payload schema per schema version; the highest is the one senders use. */
  readonly versions: Readonly<Record<number, TSchema>>;
  readonly latest: L;
  /** Schema of `result` in an accepted reply. */
  readonly result: R;
}

function define<N extends string, L extends TSchema, R extends TSchema = TSchema>(
  name: N,
  def: { description: string; service: string; latest: L; older?: readonly TSchema[]; result?: R },
): CommandDefinition<N, L, R> {
  const older = def.older ?? [];
  const versions: Record<number, TSchema> = {};
  older.forEach((schema, i) => { versions[i + 1] = schema; });
  versions[older.length + 1] = def.latest;
  return {
    name,
    description: def.description,
    service: def.service,
    versions,
    latest: def.latest,
    result: (def.result ?? Type.Undefined()) as R,
  };
}

export const COMMAND_SCHEMAS = {
  RequestBackup: define('RequestBackup', {
    description: 'Back up one VM now (outside or within a policy).',
    service: 'scheduler',
    latest: RequestBackupV1,
    result: RequestBackupResult,
  }),
  CancelJob: define('CancelJob', { description: 'Stop a job; what it holds is released.', service: 'scheduler', latest: CancelJobV1 }),
  CreatePolicy: define('CreatePolicy', {
    description: 'Create a protection policy.',
    service: 'scheduler',
    latest: CreatePolicyV1,
    result: CreatePolicyResult,
  }),
  UpdatePolicy: define('UpdatePolicy', {
    description: 'Replace a protection policy; shortening its retention needs a four-eyes approval.',
    service: 'scheduler',
    latest: UpdatePolicyV1,
    result: UpdatePolicyResult,
  }),
  PausePolicy: define('PausePolicy', {
    description: 'Pause a protection policy: it schedules no new backups until resumed.',
    service: 'scheduler',
    latest: PolicyRefV1,
    result: PolicyRefResult,
  }),
  ResumePolicy: define('ResumePolicy', {
    description: 'Resume a paused protection policy.',
    service: 'scheduler',
    latest: PolicyRefV1,
    result: PolicyRefResult,
  }),
  DeletePolicy: define('DeletePolicy', {
    description: 'Delete a protection policy; its restore points are kept (and no longer expire by its retention).',
    service: 'scheduler',
    latest: PolicyRefV1,
    result: PolicyRefResult,
  }),
  ApplyGlobalPolicy: define('ApplyGlobalPolicy', {
    description: 'Apply a person-signed global policy statement from the hub as a hub-managed policy of this site (checked here: signature, key, roles, version); one that no longer selects the site deletes its copy, as a withdrawal does.',
    service: 'scheduler',
    latest: ApplyGlobalPolicyV1,
    result: ApplyGlobalPolicyResult,
  }),
  RequestSnapshot: define('RequestSnapshot', {
    description: 'Take a point-in-time view of a VM\'s disks and export it over NBD.',
    service: 'snapshot-coordinator',
    latest: RequestSnapshotV1,
    result: RequestSnapshotResult,
  }),
  ReleaseSnapshot: define('ReleaseSnapshot', {
    description: 'Release a view, its overlay, bitmap hold and export.',
    service: 'snapshot-coordinator',
    latest: ReleaseSnapshotV1,
  }),
  TestRestore: define('TestRestore', {
    description: 'Boot a restore point in isolation (no network, writes thrown away) and judge it by a serial-console pattern and, when asked, the guest agent, TCP ports on an isolated network and an operator script; answers at once with the id, the outcome follows as TestRestorePassed or TestRestoreFailed.',
    service: 'data-mover',
    latest: TestRestoreV1,
    result: TestRestoreResult,
  }),
  ListRestoreExports: define('ListRestoreExports', {
    description: 'The restore points a data mover serves over NBD now (its own: each mover answers for itself).',
    service: 'data-mover',
    latest: ListRestoreExportsV1,
    result: ListRestoreExportsResult,
  }),
  StopRestoreExport: define('StopRestoreExport', {
    description: 'Stop serving a restore point over NBD; writes made to the export are discarded.',
    service: 'data-mover',
    latest: StopRestoreExportV1,
  }),
  LockRestorePoint: define('LockRestorePoint', {
    description: 'Lock a restore point and everything it references until a time: no delete or overwrite before then (extend only).',
    service: 'data-mover',
    latest: LockRestorePointV1,
    result: LockRestorePointResult,
  }),
  DeleteRestorePoint: define('DeleteRestorePoint', {
    description: 'Delete a restore point after a four-eyes approval (refused while it is locked).',
    service: 'data-mover',
    latest: DeleteRestorePointV1,
    result: DeleteRestorePointResult,
  }),
  DeleteRepository: define('DeleteRepository', {
    description: 'Delete a repository (restore points, chunks, index, keys) after a four-eyes approval; refused while any lock is live.',
    service: 'data-mover',
    latest: DeleteRepositoryV1,
    result: DeleteRepositoryResult,
  }),
  DeclareSiteLost: define('DeclareSiteLost', {
    description: 'Declare another site lost after a four-eyes approval: the data mover opens the key that site escrowed here, checks it opens the replica, and records SiteDeclaredLost; restores of that site\'s replicas then use it.',
    service: 'data-mover',
    latest: DeclareSiteLostV1,
    result: DeclareSiteLostResult,
  }),
  AddHypervisor: define('AddHypervisor', {
    description: 'Connect the snapshot coordinator to a hypervisor (kept across restarts).',
    service: 'snapshot-coordinator',
    latest: AddHypervisorV1,
    result: AddHypervisorResult,
  }),
  DefineRestoredVm: define('DefineRestoredVm', {
    description: 'Define (and start when asked) the libvirt domain of a whole-VM restore whose disks are written, from the plan in its restore stream (sent by the data mover).',
    service: 'snapshot-coordinator',
    latest: DefineRestoredVmV1,
    result: DefineRestoredVmResult,
  }),
  ManageInstantDomain: define('ManageInstantDomain', {
    description: 'The libvirt domain of an instant recovery session, from its stream: define (and start), mirror (blockcopy; again: progress), pivot, remove (sent by the data mover).',
    service: 'snapshot-coordinator',
    latest: ManageInstantDomainV1,
    result: ManageInstantDomainResult,
  }),
  PrepareInPlaceRestore: define('PrepareInPlaceRestore', {
    description: 'Check that the libvirt domain an in-place restore job names is shut off and say where its disks are (sent by the data mover).',
    service: 'snapshot-coordinator',
    latest: PrepareInPlaceRestoreV1,
    result: PrepareInPlaceRestoreResult,
  }),
  RequestApproval: define('RequestApproval', {
    description: 'Ask for a four-eyes act at this site (a restore point\'s or repository\'s deletion, declaring a site lost), signed by the administrator: the same as POST /v1/approvals at its gateway, for an operator at the hub.',
    service: 'gateway',
    latest: RequestApprovalV1,
    result: ApprovalReply,
  }),
  DecideApproval: define('DecideApproval', {
    description: 'Approve (and carry out) or reject another administrator\'s request at this site, signed by the deciding administrator: the same as POST /v1/approvals/<id>/approve|reject, for an operator at the hub.',
    service: 'gateway',
    latest: DecideApprovalV1,
    result: ApprovalReply,
  }),
  SetSiteAllowedGap: define('SetSiteAllowedGap', {
    description: 'At the hub: how long one site may go without contact before the hub reports it silent (SiteSilent); recorded as SiteAllowedGapSet.',
    service: 'site-watch',
    latest: SetSiteAllowedGapV1,
    result: SetSiteAllowedGapResult,
  }),
  RecoverAccess: define('RecoverAccess', {
    description: 'A new API token for the administrator whose own operator key signed this: the way back into a locked-out site.',
    service: 'gateway',
    latest: RecoverAccessV1,
    result: RecoverAccessResult,
  }),
  DescribeRepository: define('DescribeRepository', {
    description: 'Name the repository a data mover holds under this name, or that it was deleted (not_found when it never held one).',
    service: 'data-mover',
    latest: DescribeRepositoryV1,
    result: DescribeRepositoryResult,
  }),
  RestoreDisk: define('RestoreDisk', {
    description: 'Restore one disk of a restore point to a target.',
    service: 'data-mover',
    latest: RestoreDiskV1,
    result: RestoreDiskResult,
  }),
  RequestRestore: define('RequestRestore', {
    description: 'Start a restore job (stream restore-<restoreId>): any data mover takes it from the work queue, with progress and redelivery.',
    service: 'data-mover',
    latest: RequestRestoreV1,
    result: RequestRestoreResult,
  }),
  StartInstant: define('StartInstant', {
    description: 'Instant recovery (stream instant-<instantId>): run a restore point as a new VM straight from the repository, its disks served over NBD with local overlays.',
    service: 'data-mover',
    latest: StartInstantV1,
    result: StartInstantResult,
  }),
  FinishInstant: define('FinishInstant', {
    description: 'Mirror an instantly recovered VM\'s disks to local storage while it runs, pivot, and close the export (answers once the mirror started).',
    service: 'data-mover',
    latest: FinishInstantV1,
    result: InstantResult,
  }),
  DiscardInstant: define('DiscardInstant', {
    description: 'Stop an instantly recovered VM and remove its exporter, overlays and sockets.',
    service: 'data-mover',
    latest: DiscardInstantV1,
    result: InstantResult,
  }),
  ListInstant: define('ListInstant', {
    description: 'Instant recovery sessions: state, overlay size, mirror progress.',
    service: 'data-mover',
    latest: ListInstantV1,
    result: ListInstantResult,
  }),
  BrowseFiles: define('BrowseFiles', {
    description: 'List a directory or look at a file inside a restore point (a warm libguestfs appliance per restore point and disk).',
    service: 'data-mover',
    latest: BrowseFilesV1,
    result: BrowseFilesResult,
  }),
  SearchFiles: define('SearchFiles', {
    description: 'Find files by name or path in the file indexes of restore points, without starting an appliance.',
    service: 'data-mover',
    latest: SearchFilesV1,
    result: SearchFilesResult,
  }),
  RestoreFiles: define('RestoreFiles', {
    description: 'Copy files out of a restore point to a directory or a tar archive on the data mover\'s host (modes, owners, times, links, holes kept).',
    service: 'data-mover',
    latest: RestoreFilesV1,
    result: RestoreFilesResult,
  }),
  OpenFileDownload: define('OpenFileDownload', {
    description: 'Open a download of one file or of several paths as a tar or zip archive: the reply names a stream to pull chunk by chunk (the gateway\'s file routes).',
    service: 'data-mover',
    latest: OpenFileDownloadV1,
    result: OpenFileDownloadResult,
  }),
  WriteGuestFiles: define('WriteGuestFiles', {
    description: 'Write files served by a data mover into a running VM through its guest agent (RestoreFiles into a VM); never replaces a file without overwrite.',
    service: 'snapshot-coordinator',
    latest: WriteGuestFilesV1,
    result: WriteGuestFilesResult,
  }),
  CreateReplicationPolicy: define('CreateReplicationPolicy', {
    description: 'Create a replication policy at its source site: which VMs go to which sites, when, how fast.',
    service: 'replication',
    latest: CreateReplicationPolicyV1,
    result: CreateReplicationPolicyResult,
  }),
  DeleteReplicationPolicy: define('DeleteReplicationPolicy', {
    description: 'Delete a replication policy (replicas already made stay).',
    service: 'replication',
    latest: DeleteReplicationPolicyV1,
  }),
  ReplicateRestorePoint: define('ReplicateRestorePoint', {
    description: 'Copy one restore point of this site to another site now (only what the target lacks).',
    service: 'replication',
    latest: ReplicateRestorePointV1,
    result: ReplicationCopyResult,
  }),
  VerifyReplica: define('VerifyReplica', {
    description: 'Check, without the key, this site\'s copy of another site\'s repository.',
    service: 'replication',
    latest: VerifyReplicaV1,
    result: VerifyReplicaResult,
  }),
  RepairReplica: define('RepairReplica', {
    description: 'Ask a target site which objects of its copy are damaged and send them again from here.',
    service: 'replication',
    latest: RepairReplicaV1,
    result: RepairReplicaResult,
  }),
  CollectReplicaGarbage: define('CollectReplicaGarbage', {
    description: 'Delete, without the key, the objects of this site\'s copy of another site\'s repository that no replica references any more.',
    service: 'replication',
    latest: CollectReplicaGarbageV1,
    result: CollectReplicaGarbageResult,
  }),
} as const;

export type CommandRegistry = typeof COMMAND_SCHEMAS;
export type CommandName = keyof CommandRegistry;
/** Payload of the current version of each command. */
export type CommandPayloadMap = { [K in CommandName]: Static<CommandRegistry[K]['latest']> };
/** Result carried by an accepted reply of each command. */
export type CommandResultMap = { [K in CommandName]: Static<CommandRegistry[K]['result']> };

export function isCommandName(name: string): name is CommandName {
  return Object.hasOwn(COMMAND_SCHEMAS, name);
}

export function latestCommandVersion(name: CommandName): number {
  return Object.keys(COMMAND_SCHEMAS[name].versions).length;
}

/** Payload schema of a command at a version, or undefined when this build does not know it. */
export function commandPayloadSchema(name: CommandName, version: number): TSchema | undefined {
  return (COMMAND_SCHEMAS[name].versions as Record<number, TSchema>)[version];
}

// ---- validation -----------------------------------------------------------------------------

export interface CommandProblem {
  /** JSON pointer into the command (`/payload/vmId`), `` for the whole value. */
  readonly path: string;
  readonly message: string;
}

export type CommandCheck =
  | { readonly ok: true; readonly command: Command }
  | { readonly ok: false; readonly code: 'invalid_command' | 'unknown_command'; readonly problems: readonly CommandProblem[] };

const MAX_PROBLEMS = 20;
// Compiled on the first check (a receiver's), not at import: a sender never checks an envelope.
let envelopeCheck: TypeCheck<typeof CommandEnvelope> | undefined;
const payloadChecks = new Map<string, TypeCheck<TSchema>>();

function problemsOf(check: TypeCheck<TSchema>, value: unknown, prefix = ''): CommandProblem[] {
  const out: CommandProblem[] = [];
  for (const e of check.Errors(value)) {
    out.push({ path: `${prefix}${e.path}`, message: e.message });
    if (out.length >= MAX_PROBLEMS) break;
  }
  return out;
}

/**
 * Checks a decoded command: the envelope, then the payload against the schema of its name and
 * version. `expectedName` is the name taken from the subject; a mismatch is invalid.
 */
export function checkCommand(raw: unknown, expectedName?: string): CommandCheck {
  envelopeCheck ??= TypeCompiler.Compile(CommandEnvelope);
  if (!envelopeCheck.Check(raw)) {
    return { ok: false, code: 'invalid_command', problems: problemsOf(envelopeCheck, raw) };
  }
  const command = raw as Command;
  if (expectedName !== undefined && command.name !== expectedName) {
    return { ok: false, code: 'invalid_command', problems: [{ path: '/name', message: `sent to ${expectedName} but named ${command.name}` }] };
  }
  if (!isCommandName(command.name)) {
    return { ok: false, code: 'unknown_command', problems: [{ path: '/name', message: `unknown command ${JSON.stringify(command.name)}` }] };
  }
  const schema = commandPayloadSchema(command.name, command.schemaVersion);
  if (!schema) {
    return {
      ok: false,
      code: 'unknown_command',
      problems: [{
        path: '/schemaVersion',
        message: `${command.name} v${command.schemaVersion} is not known here (latest v${latestCommandVersion(command.name)})`,
      }],
    };
  }
  const key = `${command.name}.v${command.schemaVersion}`;
  let check = payloadChecks.get(key);
  if (!check) {
    check = TypeCompiler.Compile(schema);
    payloadChecks.set(key, check);
  }
  if (!check.Check(command.payload)) {
    return { ok: false, code: 'invalid_command', problems: problemsOf(check, command.payload, '/payload') };
  }
  return { ok: true, command };
}
