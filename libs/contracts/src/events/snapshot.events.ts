// Snapshot and transfer steps of a job (stream `job-<jobId>`): a point-in-time view is taken
// and exported over NBD, a transfer is queued and taken by a data mover, the view is released.
import { Type } from '@sinclair/typebox';
import { lazySchema } from '../lazy-schema.ts';
import { Bytes, Id, Name, Reason } from './common.ts';

export const SnapshotRequestedV1 = lazySchema(() => Type.Object({
  jobId: Id,
  vmId: Id,
  snapshotId: Id,
  /** Disks to include; all of the VM's disks when omitted. */
  disks: Type.Optional(Type.Array(Name)),
}, { additionalProperties: false }));

export const NbdExport = lazySchema(() => Type.Object({
  disk: Name,
  exportName: Name,
  sizeBytes: Bytes,
  mode: Type.Union([Type.Literal('full'), Type.Literal('incremental')]),
  /** Why this mode, e.g. "no parent", "bitmap missing", "bitmap cairn-3". */
  reason: Reason,
  /** NBD meta context that carries the dirty bitmap (incremental only), e.g. `qemu:dirty-bitmap:cairn-3`. */
  dirtyBitmapContext: Type.Optional(Name),
  /** Changed-extent summary: bytes the dirty bitmap marks (incremental), or the allocated bytes when known. */
  changedBytes: Type.Optional(Bytes),
}, { additionalProperties: false }));

const Exports = lazySchema(() => Type.Array(NbdExport, { minItems: 1 }));

/** Where the data mover connects: a Unix socket, or host and port. */
export const NbdEndpoint = lazySchema(() => Type.Union([
  Type.Object({ socket: Type.String({ minLength: 1, maxLength: 1024 }), exports: Exports }, { additionalProperties: false }),
  Type.Object({
    host: Type.String({ minLength: 1, maxLength: 253 }),
    port: Type.Integer({ minimum: 1, maximum: 65535 }),
    exports: Exports,
    /**
     * The export is served with TLS (NBD_OPT_STARTTLS). Either the client certificate, its key
     * and the CA to verify the server with, as paths on the data mover's machine (never their
     * contents; libvirt's TLS exports), or `{ pki: 'site' }`: the data mover, on any node,
     * presents its own site identity certificate and verifies the server against the site CA
     * (QEMU instances whose NBD server requires client certificates).
     */
    tls: Type.Optional(Type.Union([
      Type.Object({
        caFile: Type.String({ minLength: 1, maxLength: 1024 }),
        certFile: Type.String({ minLength: 1, maxLength: 1024 }),
        keyFile: Type.String({ minLength: 1, maxLength: 1024 }),
      }, { additionalProperties: false }),
      Type.Object({ pki: Type.Literal('site') }, { additionalProperties: false }),
    ])),
  }, { additionalProperties: false }),
]));

/** Whether the guest's file systems were frozen at the point in time (`application`) or not (`crash`), and why. */
export const Consistency = lazySchema(() => Type.Object({
  level: Type.Union([Type.Literal('application'), Type.Literal('crash')]),
  reason: Reason,
}, { additionalProperties: false }));

/**
 * The VM's configuration at the point in time, kept in the restore point: `kind: libvirt` (the
 * domain XML, a summary, host paths and secret references apart) or `kind: qemu` (machine type,
 * vCPUs, memory, disks, NICs from QMP). At most 256 KiB as JSON.
 */
export const VmConfig = Type.Unsafe<{ kind: string; [key: string]: unknown }>(Type.Object({ kind: Type.String({ minLength: 1, maxLength: 64 }) }, { additionalProperties: true }));

export const SnapshotTakenV1 = lazySchema(() => Type.Object({
  jobId: Id,
  snapshotId: Id,
  nbd: NbdEndpoint,
  /** When the snapshot coordinator releases the view if nobody renews it. */
  leaseExpiresAt: Type.Optional(Type.String({ format: 'date-time' })),
  consistency: Type.Optional(Consistency),
  vmConfig: Type.Optional(VmConfig),
}, { additionalProperties: false }));

export const SnapshotFailedV1 = lazySchema(() => Type.Object({
  jobId: Id,
  snapshotId: Id,
  reason: Reason,
}, { additionalProperties: false }));

export const SnapshotReleasedV1 = lazySchema(() => Type.Object({
  jobId: Id,
  snapshotId: Id,
  cause: Type.Union([Type.Literal('job_ended'), Type.Literal('lease_expired'), Type.Literal('operator')]),
}, { additionalProperties: false }));

export const TransferQueuedV1 = lazySchema(() => Type.Object({
  jobId: Id,
  snapshotId: Id,
  queue: Name,
}, { additionalProperties: false }));

export const TransferStartedV1 = lazySchema(() => Type.Object({
  jobId: Id,
  /** The data mover that took the work, e.g. `data-mover@host-1#2`. */
  worker: Name,
}, { additionalProperties: false }));
