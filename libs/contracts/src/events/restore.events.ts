// Restore job events, stream `restore-<restoreId>`: requested, started (by a data mover, with
// the plan it decided once: source, targets), progress, each disk written (DiskRestored, in
// security.events.ts), then completed or failed with the reason. Redelivery after a mover dies
// appends another RestoreStarted and resumes from the disks already written.
import { Type, type Static } from '@sinclair/typebox';
import { Bytes, Count, Id, Name, Reason } from './common.ts';

/** What to restore and where; the data mover checks it when it starts. */
export const RestoreRequestTarget = Type.Union([
  /** One disk to an image file on the data mover's host. */
  Type.Object({
    kind: Type.Literal('file'),
    disk: Name,
    path: Type.String({ minLength: 1, maxLength: 4096 }),
    format: Type.Union([Type.Literal('raw'), Type.Literal('qcow2')]),
    overwrite: Type.Boolean(),
  }, { additionalProperties: false }),
]);
export type RestoreRequestTarget = Static<typeof RestoreRequestTarget>;

export const RestoreRequestedV1 = Type.Object({
  restoreId: Id,
  restorePointId: Id,
  repository: Name,
  target: RestoreRequestTarget,
  /** The person's own key signed the request (the local CLI): the target may lie outside the restore roots. */
  ownTarget: Type.Boolean(),
}, { additionalProperties: false });

/** One file the job writes: written under `partialPath` and renamed to `path` at the end. */
export const RestorePlannedDisk = Type.Object({
  disk: Name,
  path: Type.String({ minLength: 1, maxLength: 4096 }),
  partialPath: Type.String({ minLength: 1, maxLength: 4200 }),
  format: Type.Union([Type.Literal('raw'), Type.Literal('qcow2')]),
  sizeBytes: Bytes,
}, { additionalProperties: false });
export type RestorePlannedDisk = Static<typeof RestorePlannedDisk>;

export const RestoreStartedV1 = Type.Object({
  restoreId: Id,
  worker: Name,
  attempt: Type.Integer({ minimum: 1 }),
  /** Where the restore point is read: this site's repository or a replica of another site's. */
  source: Type.Union([Type.Literal('local'), Type.Literal('replica')]),
  sourceLocation: Type.String({ maxLength: 4096 }),
  /** Decided on the first start; later attempts repeat it. */
  disks: Type.Array(RestorePlannedDisk, { minItems: 1 }),
}, { additionalProperties: false });

export const RestoreProgressedV1 = Type.Object({
  restoreId: Id,
  disk: Name,
  bytesDone: Bytes,
  bytesTotal: Bytes,
}, { additionalProperties: false });

export const RestoreCompletedV1 = Type.Object({
  restoreId: Id,
  disks: Type.Array(Type.Object({ disk: Name, path: Type.String({ maxLength: 4096 }), sizeBytes: Bytes }, { additionalProperties: false })),
  attempts: Count,
  durationMs: Count,
}, { additionalProperties: false });

export const RestoreFailureCode = Type.Union([
  Type.Literal('not_found'), Type.Literal('conflict'), Type.Literal('forbidden'), Type.Literal('invalid'), Type.Literal('failed'),
]);
export type RestoreFailureCode = Static<typeof RestoreFailureCode>;

export const RestoreFailedV1 = Type.Object({
  restoreId: Id,
  code: RestoreFailureCode,
  reason: Reason,
}, { additionalProperties: false });
