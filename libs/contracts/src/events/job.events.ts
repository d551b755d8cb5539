// Job lifecycle events, stream `job-<jobId>`: requested, started, then completed, failed or
// cancelled. The snapshot, transfer and restore point steps of a job share its stream.
import { Type, type Static } from '@sinclair/typebox';
import { lazySchema } from '../lazy-schema.ts';
import { Bytes, Count, Id, Name, Reason } from './common.ts';

export const JobPhase = lazySchema(() => Type.Union([
  Type.Literal('schedule'),
  Type.Literal('snapshot'),
  Type.Literal('transfer'),
  Type.Literal('commit'),
  Type.Literal('release'),
]));
export type JobPhase = Static<typeof JobPhase>;

export const JobRequestedV1 = lazySchema(() => Type.Object({
  jobId: Id,
  vmId: Id,
  policyId: Type.Union([Id, Type.Null()], { description: 'null for a manual job outside any policy' }),
  /** `auto`: incremental when a usable parent and bitmap exist, full otherwise. */
  mode: Type.Union([Type.Literal('auto'), Type.Literal('full')]),
  trigger: Type.Union([Type.Literal('schedule'), Type.Literal('manual')]),
  /** The schedule slot this job fills (ISO time); makes "one job per slot" checkable. */
  slot: Type.Optional(Type.String({ format: 'date-time' })),
  /** The backup's own bandwidth limit (bytes per second), when its request set one. */
  bandwidthBytesPerSec: Type.Optional(Type.Integer({ minimum: 1024 })),
}, { additionalProperties: false }));

export const JobStartedV1 = lazySchema(() => Type.Object({
  jobId: Id,
  attempt: Type.Integer({ minimum: 1 }),
}, { additionalProperties: false }));

/**
 * v2: the attempt and the snapshot it asks for, one event (they are always decided together;
 * v1 wrote a SnapshotRequested after it: one replicated append and two deliveries more per job).
 */
export const JobStartedV2 = lazySchema(() => Type.Object({
  jobId: Id,
  attempt: Type.Integer({ minimum: 1 }),
  snapshot: Type.Optional(Type.Object({
    vmId: Id,
    snapshotId: Id,
    /** Disks to include; all of the VM's disks when omitted. */
    disks: Type.Optional(Type.Array(Name)),
  }, { additionalProperties: false, description: 'The point-in-time view asked for; absent in a v1 event, where a SnapshotRequested follows' })),
}, { additionalProperties: false }));

/** A v1 start asked for its snapshot in the SnapshotRequested after it: nothing to add. */
export function upcastJobStartedV1(data: Static<typeof JobStartedV1>): Static<typeof JobStartedV2> {
  return { jobId: data.jobId, attempt: data.attempt };
}

export const JobCompletedV1 = lazySchema(() => Type.Object({
  jobId: Id,
  restorePointId: Id,
  bytesRead: Bytes,
  bytesStored: Bytes,
  durationMs: Count,
}, { additionalProperties: false }));

/** v1 named the phase `step` and the reason `error`; v2 renamed both (see upcasters). */
export const JobFailedV1 = lazySchema(() => Type.Object({
  jobId: Id,
  step: Name,
  error: Reason,
}, { additionalProperties: false }));

export const JobFailedV2 = lazySchema(() => Type.Object({
  jobId: Id,
  phase: JobPhase,
  reason: Reason,
  retryable: Type.Boolean(),
}, { additionalProperties: false }));

export const JobCancelledV1 = lazySchema(() => Type.Object({
  jobId: Id,
  reason: Reason,
}, { additionalProperties: false }));

/** Upcaster JobFailed v1 -> v2: fields renamed; a v1 step outside today's phases maps to 'transfer'. */
export function upcastJobFailedV1(data: Static<typeof JobFailedV1>): Static<typeof JobFailedV2> {
  const phases: readonly string[] = ['schedule', 'snapshot', 'transfer', 'commit', 'release'];
  const phase = (phases.includes(data.step) ? data.step : 'transfer') as JobPhase;
  return { jobId: data.jobId, phase, reason: data.error, retryable: false };
}

export const DiskStats = lazySchema(() => Type.Object({
  name: Name,
  sizeBytes: Bytes,
  bytesRead: Bytes,
  bytesStored: Bytes,
  chunksNew: Count,
  chunksReused: Count,
}, { additionalProperties: false }));

export const RestorePointCommittedV1 = lazySchema(() => Type.Object({
  restorePointId: Id,
  jobId: Id,
  vmId: Id,
  disks: Type.Array(DiskStats, { minItems: 1 }),
  parentId: Type.Union([Id, Type.Null()]),
}, { additionalProperties: false }));
