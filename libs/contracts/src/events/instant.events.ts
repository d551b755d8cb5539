// Instant recovery sessions, stream `instant-<instantId>`: a VM started straight from a restore
// point (each disk served read-only over NBD by its own exporter process, guest writes kept in a
// local qcow2 overlay), then either mirrored to local storage and pivoted (finished) or thrown
// away (discarded). Every step is an event; the step that failed says so.
import { Type, type Static } from '@sinclair/typebox';
import { lazySchema } from '../lazy-schema.ts';
import { Bytes, Count, Id, Name, Reason } from './common.ts';
import { VmConfig } from './snapshot.events.ts';

const Path = Type.String({ minLength: 1, maxLength: 4200 });
const DiskFormat = lazySchema(() => Type.Union([Type.Literal('raw'), Type.Literal('qcow2')]));

/** One disk of the session: the export it is read from and the overlay its writes go to. */
export const InstantDisk = lazySchema(() => Type.Object({
  disk: Name,
  sizeBytes: Bytes,
  /** NBD export name on the session's exporter socket. */
  exportName: Name,
  /** The local qcow2 overlay over the export (QEMU's own copy-on-write). */
  overlay: Path,
  /** QEMU block node of the overlay (the top of the disk's chain, what is mirrored). */
  node: Name,
}, { additionalProperties: false }));
export type InstantDisk = Static<typeof InstantDisk>;

export const InstantRecoveryStartedV1 = lazySchema(() => Type.Object({
  instantId: Id,
  restorePointId: Id,
  repository: Name,
  vmName: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' }),
  /** The session's directory: overlays, sockets, console, start script. */
  dir: Path,
  worker: Name,
  uuid: Type.String({ maxLength: 64 }),
  macs: Type.Record(Type.String(), Type.String()),
  start: Type.Boolean(),
  disks: Type.Array(InstantDisk, { minItems: 1 }),
  config: VmConfig,
  /**
   * A libvirt domain (`--host`): defined by the snapshot coordinator from the restore point's
   * domain XML, each disk its overlay over the export, whose socket is in a directory of its own
   * that only QEMU's group may pass through.
   */
  libvirt: Type.Optional(Type.Object({ host: Name, exportSocket: Path, serialLog: Path }, { additionalProperties: false })),
}, { additionalProperties: false }));

export const InstantServingV1 = lazySchema(() => Type.Object({
  instantId: Id,
  /** The exporter process (its own process group: a data mover restart does not stop it). */
  exporterPid: Type.Integer({ minimum: 1 }),
  exportSocket: Path,
  started: Type.Boolean(),
  /** The VM's QEMU process, when started (QEMU sessions). */
  pid: Type.Optional(Type.Integer({ minimum: 1 })),
  /** QEMU sessions: the VM's monitor and start script. */
  qmpSocket: Type.Optional(Path),
  serialLog: Path,
  startScript: Type.Optional(Path),
  /** libvirt sessions: the domain the coordinator defined. */
  libvirt: Type.Optional(Type.Object({ host: Name, domain: Type.String({ maxLength: 256 }), uuid: Type.String({ maxLength: 64 }), macs: Type.Array(Type.String({ maxLength: 32 })) }, { additionalProperties: false })),
  /** From the request to the VM started (or ready to start). */
  durationMs: Count,
}, { additionalProperties: false }));

export const InstantMirroringV1 = lazySchema(() => Type.Object({
  instantId: Id,
  worker: Name,
  /** Where each disk is mirrored to (the VM runs from there after the pivot). */
  disks: Type.Array(Type.Object({ disk: Name, path: Path, format: DiskFormat }, { additionalProperties: false }), { minItems: 1 }),
}, { additionalProperties: false }));

export const InstantFinishedV1 = lazySchema(() => Type.Object({
  instantId: Id,
  disks: Type.Array(Type.Object({ disk: Name, path: Path, format: DiskFormat, sizeBytes: Bytes }, { additionalProperties: false })),
  /** From the finish request to the export closed. */
  durationMs: Count,
}, { additionalProperties: false }));

export const InstantDiscardedV1 = lazySchema(() => Type.Object({
  instantId: Id,
  /** What was stopped and removed (processes by pid, files, sockets). */
  removed: Type.Array(Type.String({ maxLength: 4200 }), { maxItems: 256 }),
}, { additionalProperties: false }));

export const InstantStep = lazySchema(() => Type.Union([Type.Literal('start'), Type.Literal('serve'), Type.Literal('mirror'), Type.Literal('discard')]));
export type InstantStep = Static<typeof InstantStep>;

export const InstantFailedV1 = lazySchema(() => Type.Object({
  instantId: Id,
  step: InstantStep,
  reason: Reason,
  /** The VM still runs (a failed mirror leaves it on its overlay and export; finish again or discard). */
  vmRunning: Type.Boolean(),
}, { additionalProperties: false }));

/** A session as `cairn instant list` and the API show it. */
export const InstantView = lazySchema(() => Type.Object({
  instantId: Id,
  state: Type.Union([Type.Literal('starting'), Type.Literal('serving'), Type.Literal('mirroring'), Type.Literal('finished'), Type.Literal('discarded'), Type.Literal('failed')]),
  restorePointId: Id,
  vmName: Type.String(),
  dir: Type.String(),
  startedAt: Type.Optional(Type.String({ format: 'date-time' })),
  endedAt: Type.Optional(Type.String({ format: 'date-time' })),
  running: Type.Boolean(),
  pid: Type.Optional(Type.Integer({ minimum: 1 })),
  exporterPid: Type.Optional(Type.Integer({ minimum: 1 })),
  qmpSocket: Type.Optional(Type.String()),
  serialLog: Type.Optional(Type.String()),
  /** libvirt sessions: the hypervisor and domain. */
  libvirt: Type.Optional(Type.Object({ host: Type.String(), domain: Type.String() }, { additionalProperties: false })),
  /** Bytes the guest wrote so far, kept in the local overlays (their allocated size on disk). */
  overlayBytes: Type.Integer({ minimum: 0 }),
  /** While mirroring: bytes copied of the bytes to copy (QEMU's mirror jobs, all disks). */
  mirror: Type.Optional(Type.Object({ bytesDone: Bytes, bytesTotal: Bytes, ready: Type.Boolean() }, { additionalProperties: false })),
  disks: Type.Array(Type.Object({ disk: Name, sizeBytes: Bytes, overlay: Type.String(), path: Type.Optional(Type.String()) }, { additionalProperties: false })),
  failure: Type.Optional(Type.Object({ step: Type.String(), reason: Type.String() }, { additionalProperties: false })),
}, { $id: 'InstantView', additionalProperties: false }));
export type InstantView = Static<typeof InstantView>;

/** Commands of instant recovery (data mover). */
export const StartInstantV1 = lazySchema(() => Type.Object({
  /** Chosen by the sender so a retry names the same session; a new one when omitted. */
  instantId: Type.Optional(Id),
  restorePointId: Id,
  repository: Type.Optional(Name),
  vmName: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' }),
  /** Directory the session's directory is made in (default: the data mover's first restore root + /vms). */
  storage: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })),
  /** Start the VM (else it is ready to start with its start script, or `virsh start`). */
  start: Type.Boolean(),
  /** A libvirt hypervisor (as added with `cairn hypervisor add libvirt`) to define the VM on, on this host; QEMU when omitted. */
  host: Type.Optional(Name),
}, { additionalProperties: false }));
export const StartInstantResult = lazySchema(() => Type.Object({ instantId: Id, view: InstantView }, { additionalProperties: false }));

export const FinishInstantV1 = lazySchema(() => Type.Object({
  instantId: Id,
  /** Directory the disks are mirrored into (default: the session's directory). */
  storage: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })),
  format: Type.Optional(DiskFormat),
}, { additionalProperties: false }));
export const DiscardInstantV1 = lazySchema(() => Type.Object({ instantId: Id }, { additionalProperties: false }));
export const ListInstantV1 = lazySchema(() => Type.Object({
  /** Include finished and discarded sessions. */
  all: Type.Optional(Type.Boolean()),
}, { additionalProperties: false }));
export const InstantResult = lazySchema(() => Type.Object({ view: InstantView }, { additionalProperties: false }));
export const ListInstantResult = lazySchema(() => Type.Object({ items: Type.Array(InstantView) }, { additionalProperties: false }));

/**
 * The libvirt side of an instant recovery (data mover → snapshot coordinator, which holds the
 * connection). What is done comes from the session's own stream (`instant-<instantId>`), never
 * from the sender: `define` the domain from the plan (and start it when asked), `status` whether it runs, `mirror` start
 * libvirt's block copy of each disk to the targets InstantMirroring recorded (again: the progress),
 * `pivot` once every copy is ready, `remove` destroy and undefine the domain.
 */
export const ManageInstantDomainV1 = lazySchema(() => Type.Object({
  instantId: Id,
  act: Type.Union([Type.Literal('define'), Type.Literal('status'), Type.Literal('mirror'), Type.Literal('pivot'), Type.Literal('remove')]),
}, { additionalProperties: false }));
export const ManageInstantDomainResult = lazySchema(() => Type.Object({
  host: Type.String(),
  domain: Type.String(),
  uuid: Type.Optional(Type.String()),
  macs: Type.Optional(Type.Array(Type.String())),
  running: Type.Boolean(),
  /** mirror, pivot: each disk's copy. */
  disks: Type.Optional(Type.Array(Type.Object({ disk: Type.String(), bytesDone: Type.Integer({ minimum: 0 }), bytesTotal: Type.Integer({ minimum: 0 }), ready: Type.Boolean(), pivoted: Type.Boolean() }, { additionalProperties: false }))),
  /** remove: what went. */
  removed: Type.Optional(Type.Array(Type.String())),
}, { additionalProperties: false }));
