// Restore as a job: the command that starts one and the work message a data mover takes from
// the queue `restores`. The events of the job are in events/restore.events.ts.
import { Type, type Static } from '@sinclair/typebox';
import { lazySchema } from './lazy-schema.ts';
import { Actor } from './envelope.ts';
import { Id, Name } from './events/common.ts';
import { RestoreCompletedV1, RestoreRequestTarget } from './events/restore.events.ts';

export const RESTORE_QUEUE = 'restores';

export const RequestRestoreV1 = lazySchema(() => Type.Object({
  /** Chosen by the sender so a retry names the same job; a new one when omitted. */
  restoreId: Type.Optional(Id),
  restorePointId: Id,
  /** The data mover's repository holding it (default `default`; a replica is found by id). */
  repository: Type.Optional(Name),
  target: RestoreRequestTarget,
  /** Most bytes per second this restore writes (per job; the host's and the site's limits hold too). */
  bandwidthBytesPerSec: Type.Optional(Type.Integer({ minimum: 1024 })),
}, { additionalProperties: false }));
export type RequestRestoreV1 = Static<typeof RequestRestoreV1>;

export const RequestRestoreResult = lazySchema(() => Type.Object({ restoreId: Id }, { additionalProperties: false }));

/** The work message: the job's id and its request, so a mover needs nothing else to begin. */
export const RestoreWork = lazySchema(() => Type.Object({
  restoreId: Id,
  restorePointId: Id,
  repository: Name,
  target: RestoreRequestTarget,
  ownTarget: Type.Boolean(),
  /** The job's own limit, bytes per second written (from the request). */
  bandwidthBytesPerSec: Type.Optional(Type.Integer({ minimum: 1024 })),
  /**
   * Where the request left the job's stream, sent by the mover that recorded it: a first
   * delivery starts the job at that revision without reading `restore-<id>`. Absent (a retried
   * request) or on a redelivery, the mover reads the stream.
   */
  requested: Type.Optional(Type.Object({
    revision: Type.Integer({ minimum: 0 }),
    eventId: Type.String({ minLength: 1, maxLength: 200 }),
    requester: Actor,
    requestedAt: Type.String({ format: 'date-time' }),
  }, { additionalProperties: false })),
}, { $id: 'RestoreWork', additionalProperties: false }));
export type RestoreWork = Static<typeof RestoreWork>;

/** A restore job as the API and `cairn job watch --json` show it (folded from its stream). */
export const RestoreJobView = lazySchema(() => Type.Object({
  restoreId: Id,
  state: Type.Union([Type.Literal('requested'), Type.Literal('running'), Type.Literal('completed'), Type.Literal('failed')]),
  restorePointId: Id,
  requestedAt: Type.Optional(Type.String({ format: 'date-time' })),
  endedAt: Type.Optional(Type.String({ format: 'date-time' })),
  attempts: Type.Integer({ minimum: 0 }),
  worker: Type.Optional(Type.String()),
  source: Type.Optional(Type.Union([Type.Literal('local'), Type.Literal('replica')])),
  /** The first disk's path (a one-disk restore's file). */
  path: Type.Optional(Type.String()),
  sizeBytes: Type.Integer({ minimum: 0 }),
  durationMs: Type.Integer({ minimum: 0 }),
  disks: Type.Array(Type.Object({ disk: Name, path: Type.String(), sizeBytes: Type.Integer({ minimum: 0 }), written: Type.Boolean() }, { additionalProperties: false })),
  /** The last coarse progress recorded in the log (live progress: the progress subject). */
  progress: Type.Optional(Type.Object({ disk: Name, bytesDone: Type.Integer({ minimum: 0 }), bytesTotal: Type.Integer({ minimum: 0 }) }, { additionalProperties: false })),
  failure: Type.Optional(Type.Object({ code: Type.String(), reason: Type.String() }, { additionalProperties: false })),
  /** Whole-VM restore: the VM made (once completed). */
  vm: Type.Optional(RestoreCompletedV1.properties.vm),
}, { $id: 'RestoreJobView', additionalProperties: false }));
export type RestoreJobView = Static<typeof RestoreJobView>;
