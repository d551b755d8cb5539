// Restore as a job: the command that starts one and the work message a data mover takes from
// the queue `restores`. The events of the job are in events/restore.events.ts.
import { Type, type Static } from '@sinclair/typebox';
import { Id, Name } from './events/common.ts';
import { RestoreRequestTarget } from './events/restore.events.ts';

export const RESTORE_QUEUE = 'restores';

export const RequestRestoreV1 = Type.Object({
  /** Chosen by the sender so a retry names the same job; a new one when omitted. */
  restoreId: Type.Optional(Id),
  restorePointId: Id,
  /** The data mover's repository holding it (default `default`; a replica is found by id). */
  repository: Type.Optional(Name),
  target: RestoreRequestTarget,
}, { additionalProperties: false });
export type RequestRestoreV1 = Static<typeof RequestRestoreV1>;

export const RequestRestoreResult = Type.Object({ restoreId: Id }, { additionalProperties: false });

/** The work message: the job's id and its request, so a mover needs nothing else to begin. */
export const RestoreWork = Type.Object({
  restoreId: Id,
  restorePointId: Id,
  repository: Name,
  target: RestoreRequestTarget,
  ownTarget: Type.Boolean(),
}, { $id: 'RestoreWork', additionalProperties: false });
export type RestoreWork = Static<typeof RestoreWork>;
