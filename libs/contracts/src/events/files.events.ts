// File-level restore: who looked into which restore point, and which files left it (stream
// `files-<accessId>`, one per act). SIEM-relevant: "who pulled which files" (docs/files.md).
import { Type } from '@sinclair/typebox';
import { lazySchema } from '../lazy-schema.ts';
import { Id, Name } from './common.ts';

const GuestPath = Type.String({ minLength: 1, maxLength: 4096 });

/** Entries of a restore point's disk were listed or looked at. */
export const RestorePointFilesBrowsedV1 = lazySchema(() => Type.Object({
  accessId: Id,
  restorePointId: Id,
  disk: Name,
  op: Type.Union([Type.Literal('list'), Type.Literal('stat')]),
  paths: Type.Array(GuestPath, { minItems: 1, maxItems: 100 }),
}, { additionalProperties: false }));

/**
 * Files of a restore point were copied out: to a directory or an archive on the data mover's
 * host, downloaded through the gateway (recorded when the download starts), or written into a
 * running VM through its guest agent.
 */
export const FilesRestoredV1 = lazySchema(() => Type.Object({
  accessId: Id,
  restorePointId: Id,
  disk: Name,
  paths: Type.Array(GuestPath, { minItems: 1, maxItems: 1000 }),
  target: Type.Union([Type.Literal('directory'), Type.Literal('tar'), Type.Literal('zip'), Type.Literal('download'), Type.Literal('vm')]),
  /** Host path written; for a download its format (`file`, `tar`, `zip`); for a VM the guest path. */
  path: Type.String({ maxLength: 4096 }),
  /** The VM written into (target `vm`). */
  vmId: Type.Optional(Id),
  files: Type.Integer({ minimum: 0 }),
  bytes: Type.Integer({ minimum: 0 }),
}, { additionalProperties: false }));

/** The file indexes were searched (names of files are contents too). */
export const FilesSearchedV1 = lazySchema(() => Type.Object({
  accessId: Id,
  pattern: Type.String({ maxLength: 1024 }),
  regex: Type.Boolean(),
  vmId: Type.Optional(Id),
  matches: Type.Integer({ minimum: 0 }),
  pointsSearched: Type.Integer({ minimum: 0 }),
}, { additionalProperties: false }));
