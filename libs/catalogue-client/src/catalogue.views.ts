// Shapes of the catalogue's read models as they cross the wire (query replies). TypeBox
// schemas so the gateway can publish them in its OpenAPI document and clients can validate.
import { Type, type Static } from '@sinclair/typebox';
import { Actor, JobPhase, PolicyRetention, PolicySchedule, PolicySelector, PolicyTestRestore, QuiescePolicy, TraceContext } from '@cairn/contracts';

const Id = Type.String({ minLength: 1, maxLength: 200 });
const Time = Type.String({ format: 'date-time' });
const Bytes = Type.Integer({ minimum: 0 });
const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

export const DiskView = Type.Object({
  name: Type.String(),
  sizeBytes: Bytes,
  attachedAt: Time,
  /** Set once the disk left the VM; kept so old restore points still name it. */
  detachedAt: Nullable(Time),
}, { $id: 'DiskView' });
export type DiskView = Static<typeof DiskView>;

export const VmView = Type.Object({
  vmId: Id,
  name: Type.String(),
  site: Type.String(),
  hypervisor: Type.Object({ kind: Type.String(), host: Type.String() }),
  tags: Type.Array(Type.String()),
  disks: Type.Array(DiskView),
  discoveredAt: Time,
  updatedAt: Time,
  /** What the hypervisor last reported (`running`, `stopped`, `paused`, …); null before it did, or once removed. */
  powerState: Nullable(Type.String()),
  /** When the VM left its hypervisor (deleted or unregistered there); its restore points stay. */
  removedAt: Nullable(Time),
  lastBackupAt: Nullable(Time),
  restorePoints: Type.Integer({ minimum: 0, description: 'Restore points not expired.' }),
}, { $id: 'VmView' });
export type VmView = Static<typeof VmView>;

export const RestorePointDiskView = Type.Object({
  name: Type.String(),
  sizeBytes: Bytes,
  bytesRead: Bytes,
  bytesStored: Bytes,
  chunksNew: Type.Integer({ minimum: 0 }),
  chunksReused: Type.Integer({ minimum: 0 }),
}, { $id: 'RestorePointDiskView' });
export type RestorePointDiskView = Static<typeof RestorePointDiskView>;

/** A test restore (stream `testrestore-<id>`): the restore point booted in isolation and judged by its checks. */
export const TestRestoreView = Type.Object({
  testRestoreId: Id,
  restorePointId: Id,
  vmId: Id,
  site: Type.String(),
  /** `refused`: a scheduled one the data mover would not start (or none answered); `reason` says why, nothing ran. */
  status: Type.Union([Type.Literal('running'), Type.Literal('passed'), Type.Literal('failed'), Type.Literal('refused')]),
  /** The checks it was judged by, e.g. `serial:<pattern>`, `agent:guest-ping`, `tcp:22`, `script:<name>`. */
  checks: Type.Array(Type.String()),
  /** Each check's outcome (once ended). */
  results: Type.Array(Type.Object({ check: Type.String(), ok: Type.Boolean(), detail: Type.String() })),
  /** The check that failed (or `boot`), and why. */
  failedCheck: Nullable(Type.String()),
  reason: Nullable(Type.String()),
  startedAt: Time,
  endedAt: Nullable(Time),
  durationMs: Nullable(Type.Integer({ minimum: 0 })),
  /** Where the PNG of the console is kept on the data mover that ran it, and its SHA-256. */
  screenshot: Nullable(Type.Object({ file: Type.String(), sha256: Type.String(), bytes: Type.Integer({ minimum: 0 }) })),
  /** The policy whose schedule asked for it; null when asked by hand. */
  policyId: Nullable(Id),
}, { $id: 'TestRestoreView' });
export type TestRestoreView = Static<typeof TestRestoreView>;

/** The newest test restore of a restore point that ran, as its column shows it ("boot-tested: passed at …"); refused ones are not counted. */
export const LastTestRestore = Type.Object({
  testRestoreId: Id,
  status: Type.Union([Type.Literal('running'), Type.Literal('passed'), Type.Literal('failed')]),
  at: Time,
  durationMs: Nullable(Type.Integer({ minimum: 0 })),
  checks: Type.Array(Type.String()),
  failedCheck: Nullable(Type.String()),
}, { $id: 'LastTestRestore' });
export type LastTestRestore = Static<typeof LastTestRestore>;

export const RestorePointView = Type.Object({
  restorePointId: Id,
  jobId: Id,
  vmId: Id,
  policyId: Nullable(Id),
  site: Type.String(),
  createdAt: Time,
  parentId: Nullable(Id),
  kind: Type.Union([Type.Literal('full'), Type.Literal('incremental')]),
  /** Sum of the disks' virtual sizes. */
  sizeBytes: Bytes,
  bytesRead: Bytes,
  bytesStored: Bytes,
  /** Bytes the backup had to read: the changed extents of an incremental, everything for a full. */
  changedBytes: Bytes,
  /** Bytes read but not stored (deduplicated, all-zero or compressed away). */
  savedBytes: Bytes,
  disks: Type.Array(RestorePointDiskView),
  expiredAt: Nullable(Time),
  expiryReason: Nullable(Type.String()),
  /** `application` when the guest's file systems were frozen at the snapshot, else `crash`; null when not recorded. */
  consistency: Type.Optional(Nullable(Type.Union([Type.Literal('application'), Type.Literal('crash')]))),
  consistencyReason: Type.Optional(Nullable(Type.String())),
  /** The VM's configuration at the snapshot (libvirt domain XML and summary, or QEMU's), also in the manifest. */
  vmConfig: Type.Optional(Nullable(Type.Record(Type.String(), Type.Unknown()))),
  /** The newest test restore of this restore point (null: never boot-tested). */
  lastTestRestore: Type.Optional(Nullable(LastTestRestore)),
  /** Set when a verify found objects this restore point uses damaged (RestorePointDamaged); cleared by a later verify that checked it clean. */
  damage: Type.Optional(Nullable(Type.Object({ at: Time, verifyId: Id, damagedCount: Type.Integer({ minimum: 0 }) }))),
  /**
   * The immutability lock that holds (RestorePointLocked, the longest recorded): until when, since
   * when, and who made it: `policy` when the data mover locked it for its policy's immutability
   * (`policyId`), `act` when a user locked it (`cairn restore-point lock`). Null: never locked.
   * An `until` in the past is a lock that has ended.
   */
  lock: Type.Optional(Nullable(Type.Object({
    until: Time,
    at: Time,
    source: Type.Union([Type.Literal('policy'), Type.Literal('act')]),
    policyId: Nullable(Id),
    actor: Type.Object({ kind: Type.Union([Type.Literal('user'), Type.Literal('service')]), id: Type.String() }),
    causationId: Nullable(Type.String()),
  }))),
}, { $id: 'RestorePointView' });
export type RestorePointView = Static<typeof RestorePointView>;

export const JobState = Type.Union([
  Type.Literal('requested'), Type.Literal('running'), Type.Literal('completed'), Type.Literal('failed'), Type.Literal('cancelled'),
], { $id: 'JobState' });
export type JobState = Static<typeof JobState>;

export const JobKind = Type.Union([Type.Literal('backup'), Type.Literal('restore')], { $id: 'JobKind' });
export type JobKind = Static<typeof JobKind>;

export const JobView = Type.Object({
  jobId: Id,
  /** A backup (stream `job-<id>`) or a restore (stream `restore-<id>`: the restore point in `restorePointId`). */
  kind: JobKind,
  /** The VM backed up, or whose restore point is restored (empty when the catalogue does not know the point). */
  vmId: Type.Union([Id, Type.Literal('')]),
  policyId: Nullable(Id),
  site: Type.String(),
  mode: Type.String({ description: 'As requested: auto or full (backup); file or vm (restore).' }),
  trigger: Type.String(),
  slot: Nullable(Time),
  state: JobState,
  attempt: Type.Integer({ minimum: 0 }),
  requestedAt: Time,
  startedAt: Nullable(Time),
  endedAt: Nullable(Time),
  updatedAt: Time,
  snapshotId: Nullable(Id),
  worker: Nullable(Type.String()),
  restorePointId: Nullable(Id),
  bytesRead: Nullable(Bytes),
  bytesStored: Nullable(Bytes),
  durationMs: Nullable(Type.Integer({ minimum: 0 })),
  failure: Nullable(Type.Object({ phase: Type.String(), reason: Type.String(), retryable: Type.Boolean() })),
  cancelReason: Nullable(Type.String()),
}, { $id: 'JobView' });
export type JobView = Static<typeof JobView>;

export const JobPhaseView = Type.Object({
  phase: JobPhase,
  state: Type.Union([Type.Literal('running'), Type.Literal('done'), Type.Literal('failed')]),
  startedAt: Time,
  endedAt: Nullable(Time),
  detail: Nullable(Type.String()),
}, { $id: 'JobPhaseView' });
export type JobPhaseView = Static<typeof JobPhaseView>;

export const AuditEntry = Type.Object({
  /** Global position in the site's log. */
  position: Type.Integer({ minimum: 1 }),
  eventId: Type.String(),
  time: Time,
  type: Type.String(),
  /** 0 for an entry this build could not read (its `data` then says why). */
  schemaVersion: Type.Integer({ minimum: 0 }),
  site: Type.String(),
  actor: Actor,
  streamId: Type.String(),
  correlationId: Type.String(),
  causationId: Nullable(Type.String()),
  trace: Nullable(TraceContext),
  data: Type.Unknown(),
}, { $id: 'AuditEntry' });
export type AuditEntry = Static<typeof AuditEntry>;

export const JobDetail = Type.Composite([
  JobView,
  Type.Object({ phases: Type.Array(JobPhaseView), events: Type.Array(AuditEntry) }),
], { $id: 'JobDetail' });
export type JobDetail = Static<typeof JobDetail>;

export const PolicyView = Type.Object({
  policyId: Id,
  name: Type.String(),
  /** The site whose scheduler runs it (the hub's catalogue lists every site's). */
  site: Type.Optional(Type.String()),
  selector: PolicySelector,
  schedule: PolicySchedule,
  retention: PolicyRetention,
  repository: Type.String(),
  keyRef: Type.String(),
  priority: Type.Integer(),
  /** New restore points are locked until the end of their retention (docs/security.md). */
  immutable: Type.Optional(Type.Boolean()),
  /** Most bytes per second each backup of the policy reads (absent: no limit of its own). */
  bandwidthBytesPerSec: Type.Optional(Type.Integer({ minimum: 1024 })),
  /** Guest file systems frozen through the agent: required, preferred (absent: preferred) or off. */
  quiesce: Type.Optional(QuiescePolicy),
  /** A file index is built of each new restore point (absent: on). */
  fileIndex: Type.Optional(Type.Boolean()),
  /** Recovery-point objective in minutes (absent: the schedule's longest gap + 2 h). */
  rpoMinutes: Type.Optional(Type.Integer({ minimum: 1 })),
  /** Boot-test schedule: the newest restore point of each covered VM at each slot of its cron, judged by its checks. */
  testRestore: Type.Optional(PolicyTestRestore),
  /** `hub`: a global policy, changed only at the hub (docs/sites.md, "Global policies"). */
  managedBy: Type.Optional(Type.Literal('hub')),
  /** The version of the hub's statement this site applied. */
  globalVersion: Type.Optional(Type.Integer({ minimum: 1 })),
  /** The hub's id of the global policy. */
  globalPolicyId: Type.Optional(Type.String()),
  /** 1 when created, +1 per update. */
  version: Type.Integer({ minimum: 1 }),
  createdAt: Time,
  updatedAt: Time,
  deletedAt: Nullable(Time),
  /** Paused (PausePolicy) since then: no new backups are scheduled; null when running. */
  pausedAt: Type.Optional(Nullable(Time)),
}, { $id: 'PolicyView' });
export type PolicyView = Static<typeof PolicyView>;

export const CatalogueStatus = Type.Object({
  /** Which replica answered (host, pid and a random suffix). */
  replica: Type.String(),
  site: Type.String(),
  /** Last log position projected into this replica's read models. */
  position: Type.Integer({ minimum: 0 }),
  /** Last position in the log as seen by this replica. */
  head: Type.Integer({ minimum: 0 }),
  lag: Type.Integer({ minimum: 0 }),
  projecting: Type.Boolean(),
  rebuilding: Type.Boolean(),
  /** Another replica sharing the store (PostgreSQL) holds the projector lease: this one only answers. */
  standby: Type.Optional(Type.Boolean()),
  /** Where the read models live. */
  store: Type.Optional(Type.Union([Type.Literal('sqlite'), Type.Literal('postgres')])),
  startedAt: Time,
  lastError: Nullable(Type.String()),
}, { $id: 'CatalogueStatus' });
export type CatalogueStatus = Static<typeof CatalogueStatus>;

export const RebuildResult = Type.Object({
  replica: Type.String(),
  /** Events replayed from position 0. */
  events: Type.Integer({ minimum: 0 }),
  position: Type.Integer({ minimum: 0 }),
  durationMs: Type.Integer({ minimum: 0 }),
}, { $id: 'RebuildResult' });
export type RebuildResult = Static<typeof RebuildResult>;

/** A copy of a restore point at another site (from ReplicaCommitted, recorded at the target). */
export const ReplicaView = Type.Object({
  restorePointId: Id,
  vmId: Id,
  vmName: Type.String(),
  jobId: Nullable(Id),
  policyId: Nullable(Id),
  /** The VM's home site, where the restore point was made. */
  sourceSite: Type.String(),
  /** The site holding this copy. */
  site: Type.String(),
  repositoryId: Type.String(),
  committedAt: Time,
  sourceCommittedAt: Time,
  disks: Type.Array(Type.Object({ name: Type.String(), sizeBytes: Bytes })),
  chunksSent: Type.Integer({ minimum: 0 }),
  bytesSent: Bytes,
}, { $id: 'ReplicaView' });
export type ReplicaView = Static<typeof ReplicaView>;

/** Exact aggregates over the read models (for metrics): counts and sums, never a capped list. */
export const CatalogueStats = Type.Object({
  /** The log position the numbers are as of (of the replica that answered). */
  position: Type.Integer({ minimum: 0 }),
  /** Backup jobs by state (every state present, 0 when none). */
  jobsByState: Type.Record(Type.String(), Type.Integer({ minimum: 0 })),
  /** Running backup jobs by the phase they are in now (their latest running phase). */
  runningByPhase: Type.Record(Type.String(), Type.Integer({ minimum: 0 })),
  restorePoints: Type.Object({
    total: Type.Integer({ minimum: 0 }),
    live: Type.Integer({ minimum: 0 }),
    expired: Type.Integer({ minimum: 0 }),
  }),
  /** Bytes read from VM disks and written to the repository, over all restore points (expired included). */
  bytesRead: Type.Integer({ minimum: 0 }),
  bytesStored: Type.Integer({ minimum: 0 }),
  /** The same over restore points not expired. */
  liveBytesRead: Type.Integer({ minimum: 0 }),
  liveBytesStored: Type.Integer({ minimum: 0 }),
  /** Completed backup jobs: bytes read and time taken (request to completion), for throughput. */
  completed: Type.Object({
    jobs: Type.Integer({ minimum: 0 }),
    bytesRead: Type.Integer({ minimum: 0 }),
    durationMs: Type.Integer({ minimum: 0 }),
  }),
  vms: Type.Integer({ minimum: 0 }),
  /** Test restores by outcome (running, passed, failed, refused), over all time. */
  testRestores: Type.Optional(Type.Record(Type.String(), Type.Integer({ minimum: 0 }))),
  /** Restore points not expired whose newest test restore failed / passed, and those marked damaged. */
  restorePointsBootTested: Type.Optional(Type.Object({ passed: Type.Integer({ minimum: 0 }), failed: Type.Integer({ minimum: 0 }), damaged: Type.Integer({ minimum: 0 }) })),
}, { $id: 'CatalogueStats' });
export type CatalogueStats = Static<typeof CatalogueStats>;

/** A replication policy as its source site recorded it (at the hub: of every site). */
export const ReplicationPolicyView = Type.Object({
  policyId: Id,
  name: Type.String(),
  /** The source site (where the policy lives). */
  site: Type.String(),
  targetSites: Type.Array(Type.String()),
  vmIds: Nullable(Type.Array(Type.String())),
  trigger: Type.Unknown({ description: 'after-backup, schedule (everyMs) or cron (cron, timezone)' }),
  delayMs: Type.Integer({ minimum: 0 }),
  bandwidthBytesPerSec: Nullable(Type.Integer({ minimum: 0 })),
  createdAt: Time,
  deletedAt: Nullable(Time),
}, { $id: 'ReplicationPolicyView' });
export type ReplicationPolicyView = Static<typeof ReplicationPolicyView>;
