// The work message the scheduler puts on the data movers' queue: everything a mover needs
// to read a snapshot and commit a restore point, without asking anyone.
import { Type, type Static } from '@sinclair/typebox';
import { Consistency, NbdEndpoint, PolicyRetention, VmConfig } from '@cairn/contracts';

export const TransferWork = Type.Object({
  jobId: Type.String({ minLength: 1, maxLength: 200 }),
  vmId: Type.String({ minLength: 1, maxLength: 200 }),
  vmName: Type.String({ minLength: 1, maxLength: 256 }),
  snapshotId: Type.String({ minLength: 1, maxLength: 200 }),
  policyId: Type.Union([Type.String(), Type.Null()]),
  repository: Type.String({ minLength: 1, maxLength: 256 }),
  mode: Type.Union([Type.Literal('auto'), Type.Literal('full')]),
  nbd: NbdEndpoint,
  // What the scheduler knows, so that the mover reads neither the job's nor the policy's stream.
  /** Revision of the job stream at TransferQueued: the mover appends TransferStarted expecting it. */
  jobRevision: Type.Optional(Type.Integer({ minimum: 0 })),
  /** Global position of TransferQueued: TransferStarted's append expects it, without a head read. */
  jobPosition: Type.Optional(Type.Integer({ minimum: 1 })),
  /** Id of TransferQueued: the cause of TransferStarted. */
  causationId: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  /**
   * The lock of an immutable policy: the restore point is locked until this retention after its
   * commit (`immutabilityLockUntil`); null for a policy that is not immutable or no policy.
   */
  lockRetention: Type.Optional(Type.Union([PolicyRetention, Type.Null()])),
  /** From SnapshotTaken, kept in the restore point's manifest: frozen or not, and why. */
  consistency: Type.Optional(Consistency),
  /** From SnapshotTaken, kept in the restore point's manifest: the VM's configuration. */
  vmConfig: Type.Optional(VmConfig),
  /**
   * The restore point an incremental builds on, as the scheduler knows it: the newest one of
   * this VM committed to this repository, not expired or deleted, with its disks; null when
   * there is none it can build on (none newer than the last backup of the job's chain, whose
   * changed-block history restarted there). Work without it looks in the repository instead.
   */
  /** The job's bandwidth limit (bytes per second): the backup's own, else its policy's; none when absent. */
  bandwidthBytesPerSec: Type.Optional(Type.Integer({ minimum: 1024 })),
  /** Whether the job's policy wants a file index of the restore point (default yes; a manual job: yes). */
  fileIndex: Type.Optional(Type.Boolean()),
  parent: Type.Optional(Type.Union([Type.Object({
    restorePointId: Type.String({ minLength: 1, maxLength: 200 }),
    disks: Type.Array(Type.Object({ name: Type.String({ minLength: 1, maxLength: 256 }), sizeBytes: Type.Integer({ minimum: 0 }) }, { additionalProperties: false })),
  }, { additionalProperties: false }), Type.Null()])),
  /**
   * Chunks a verify found damaged in restore points of this VM: the mover sends them again
   * (overwriting the damaged objects) instead of trusting that the repository holds them.
   */
  heal: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 200 }), { maxItems: 100_000 })),
}, { $id: 'TransferWork', additionalProperties: false });
export type TransferWork = Static<typeof TransferWork>;

export const TRANSFER_QUEUE = 'transfers';

/** The JetStream work-queue stream of a site (subjects `cairn.<site>.work.>`). */
export function workStreamName(site: string): string {
  return `CAIRN_WORK_${site.toUpperCase().replace(/-/g, '_')}`;
}
