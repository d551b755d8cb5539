// Commands of file-level restore (docs/files.md): browse the files inside a restore point and
// copy them out. Served by the data mover, which keeps one warm libguestfs appliance per
// (restore point, disk) being browsed.
import { Type, type Static } from '@sinclair/typebox';
import { lazySchema } from './lazy-schema.ts';
import { Id, Name } from './events/common.ts';

/** A path inside a restore point's disk: `/<file system>/…` (`/part1/etc/hosts`); `/` lists the file systems. */
export const GuestPath = Type.String({ minLength: 1, maxLength: 4096, pattern: '^/' });

export const GuestFileEntry = lazySchema(() => Type.Object({
  path: Type.String(),
  name: Type.String(),
  type: Type.Union([Type.Literal('file'), Type.Literal('directory'), Type.Literal('symlink'), Type.Literal('other')]),
  size: Type.Integer({ minimum: 0 }),
  /** Bytes it occupies on its file system (less than size when sparse). */
  allocated: Type.Integer({ minimum: 0 }),
  mode: Type.Integer({ minimum: 0 }),
  uid: Type.Integer({ minimum: 0 }),
  gid: Type.Integer({ minimum: 0 }),
  mtime: Type.String(),
  mtimeNs: Type.String(),
  target: Type.Optional(Type.String()),
}, { additionalProperties: false }));
export type GuestFileEntry = Static<typeof GuestFileEntry>;

export const BrowseFilesV1 = lazySchema(() => Type.Object({
  restorePointId: Id,
  /** Disk of the restore point (default: its only disk). */
  disk: Type.Optional(Name),
  op: Type.Union([Type.Literal('list'), Type.Literal('stat')]),
  path: GuestPath,
}, { additionalProperties: false }));
export const BrowseFilesResult = lazySchema(() => Type.Object({
  restorePointId: Id,
  disk: Name,
  entries: Type.Array(GuestFileEntry),
  /** More entries than one reply carries (the first `entries.length` are given). */
  truncated: Type.Boolean(),
  /** File systems found on the disk, readable or not (and why not). */
  filesystems: Type.Array(Type.Object({
    name: Type.String(), type: Type.String(), mounted: Type.Boolean(), reason: Type.Optional(Type.String()),
  }, { additionalProperties: false })),
}, { additionalProperties: false }));

export const RestoreFilesV1 = lazySchema(() => Type.Object({
  restorePointId: Id,
  disk: Type.Optional(Name),
  paths: Type.Array(GuestPath, { minItems: 1, maxItems: 1000 }),
  target: Type.Union([
    /** A directory on the data mover's host (below its restore roots); each path lands under its own name. */
    Type.Object({ kind: Type.Literal('directory'), path: Type.String({ minLength: 1, maxLength: 4096 }) }, { additionalProperties: false }),
    /** A tar archive on the data mover's host (one directory path). */
    Type.Object({ kind: Type.Literal('tar'), path: Type.String({ minLength: 1, maxLength: 4096 }) }, { additionalProperties: false }),
    /** A zip archive on the data mover's host: every path under its own name (modes, times, links kept). */
    Type.Object({ kind: Type.Literal('zip'), path: Type.String({ minLength: 1, maxLength: 4096 }) }, { additionalProperties: false }),
    /**
     * Into a running VM through its guest agent (the snapshot coordinator writes them): regular
     * files only, to their own path in the guest or, with `path`, into that guest directory.
     */
    Type.Object({ kind: Type.Literal('vm'), vmId: Id, path: Type.Optional(GuestPath) }, { additionalProperties: false }),
  ]),
  /** Replace what exists at the target (default: refuse, nothing changed). */
  overwrite: Type.Optional(Type.Boolean()),
  /**
   * Where to tell how far it got (zip and VM targets): `{ disk, bytesDone, bytesPlanned }` on
   * `cairn.<site>.progress.<progressId>`, not stored (the CLI draws it; docs/files.md).
   */
  progressId: Type.Optional(Id),
}, { additionalProperties: false }));
export const RestoreFilesResult = lazySchema(() => Type.Object({
  accessId: Id,
  restorePointId: Id,
  disk: Name,
  written: Type.Array(Type.String()),
  files: Type.Integer({ minimum: 0 }),
  directories: Type.Integer({ minimum: 0 }),
  symlinks: Type.Integer({ minimum: 0 }),
  skipped: Type.Array(Type.String()),
  bytes: Type.Integer({ minimum: 0 }),
  durationMs: Type.Integer({ minimum: 0 }),
}, { additionalProperties: false }));

export const SearchFilesV1 = lazySchema(() => Type.Object({
  /** A glob (`*.xlsx`: by name; `/part1/etc/**`: by path) or, with `regex`, a regular expression over the path. */
  pattern: Type.String({ minLength: 1, maxLength: 1024 }),
  regex: Type.Optional(Type.Boolean()),
  vmId: Type.Optional(Id),
  /** Only restore points committed at or after this time. */
  since: Type.Optional(Type.String({ format: 'date-time' })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })),
}, { additionalProperties: false }));
export const SearchFilesResult = lazySchema(() => Type.Object({
  /** Oldest restore point first. */
  matches: Type.Array(Type.Object({
    restorePointId: Id, vmId: Id, vmName: Type.String(), committedAt: Type.String(), disk: Name,
    path: Type.String(), type: Type.String(), size: Type.Integer({ minimum: 0 }), mtime: Type.String(),
  }, { additionalProperties: false })),
  truncated: Type.Boolean(),
  /** Restore points searched (with an index). */
  pointsSearched: Type.Integer({ minimum: 0 }),
  /** Restore points in scope without a file index (none built yet, or turned off by their policy). */
  pointsWithoutIndex: Type.Array(Id),
}, { additionalProperties: false }));

/**
 * A download over the gateway: one regular file (`format: file`, one path; HTTP ranges) or
 * several paths as one archive streamed as it is made (`tar`, `zip`). The reply names a stream
 * the caller pulls chunk by chunk on `cairn.<site>.filestream.<streamId>` (libs/messaging
 * file-stream.ts); a stream not pulled for a minute is dropped.
 */
export const OpenFileDownloadV1 = lazySchema(() => Type.Object({
  restorePointId: Id,
  disk: Type.Optional(Name),
  paths: Type.Array(GuestPath, { minItems: 1, maxItems: 1000 }),
  format: Type.Union([Type.Literal('file'), Type.Literal('tar'), Type.Literal('zip')]),
}, { additionalProperties: false }));
export const OpenFileDownloadResult = lazySchema(() => Type.Object({
  accessId: Id,
  streamId: Id,
  restorePointId: Id,
  disk: Name,
  format: Type.Union([Type.Literal('file'), Type.Literal('tar'), Type.Literal('zip')]),
  /** A suggested file name (the file's own, or `<last path part>.zip`). */
  name: Type.String(),
  /** The file (format `file`). */
  entry: Type.Optional(GuestFileEntry),
  /** Regular files, and their bytes, in the download. */
  files: Type.Integer({ minimum: 0 }),
  bytes: Type.Integer({ minimum: 0 }),
  /** Strong validator: a restore point never changes, so (point, disk, path, size, time) names the bytes. */
  etag: Type.String(),
}, { additionalProperties: false }));
export type OpenFileDownloadResult = Static<typeof OpenFileDownloadResult>;

/** Writes files pulled from a data mover's file stream into a running VM through its guest agent. */
export const WriteGuestFilesV1 = lazySchema(() => Type.Object({
  vmId: Id,
  /** Where the data mover serves the bytes: every file's content, one after the other. */
  streamId: Id,
  files: Type.Array(Type.Object({
    guestPath: GuestPath,
    size: Type.Integer({ minimum: 0 }),
  }, { additionalProperties: false }), { minItems: 1, maxItems: 1000 }),
  overwrite: Type.Optional(Type.Boolean()),
}, { additionalProperties: false }));
export const WriteGuestFilesResult = lazySchema(() => Type.Object({
  written: Type.Array(Type.String()),
  bytes: Type.Integer({ minimum: 0 }),
}, { additionalProperties: false }));
