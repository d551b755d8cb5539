// Restore job events, stream `restore-<restoreId>`: requested, started (by a data mover, with
// the plan it decided once: source, targets), progress, each disk written (DiskRestored, in
// security.events.ts), then completed or failed with the reason. Redelivery after a mover dies
// appends another RestoreStarted and resumes from the disks already written.
import { Type, type Static } from '@sinclair/typebox';
import { lazySchema } from '../lazy-schema.ts';
import { Bytes, Count, Id, Name, Reason } from './common.ts';
import { VmConfig } from './snapshot.events.ts';

/** What to restore and where; the data mover checks it when it starts. */
export const RestoreRequestTarget = lazySchema(() => Type.Union([
  /** One disk to an image file on the data mover's host. */
  Type.Object({
    kind: Type.Literal('file'),
    disk: Name,
    path: Type.String({ minLength: 1, maxLength: 4096 }),
    format: Type.Union([Type.Literal('raw'), Type.Literal('qcow2')]),
    overwrite: Type.Boolean(),
  }, { additionalProperties: false }),
  /**
   * The whole VM: every disk of the restore point plus its configuration, as a new VM named
   * `vmName` in `<storage>/<vmName>/` (disks, vm.json, start.sh); started when `start`.
   */
  Type.Object({
    kind: Type.Literal('vm'),
    vmName: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' }),
    /** Directory the VM's directory is made in (default: the data mover's first restore root + /vms). */
    storage: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })),
    format: Type.Union([Type.Literal('raw'), Type.Literal('qcow2')]),
    start: Type.Boolean(),
    /** Keep the original UUID and MAC addresses (default: new ones, so the copy can run beside the original). */
    keepIdentity: Type.Boolean(),
    /**
     * A libvirt hypervisor (by the name it was added under) to define the VM on, from the
     * domain XML the restore point keeps; the disks go to `storage` on that host.
     */
    host: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' })),
    /**
     * libvirt, with `host`: the disks become volumes `<vmName>-<disk>.<format>` of this storage
     * pool on that host (a file-based pool: dir, fs, netfs), the domain pointing at them.
     */
    storagePool: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$' })),
    /** libvirt: network (or bridge) of the original NIC → the one to connect it to. */
    networkMap: Type.Optional(Type.Record(Type.String({ minLength: 1, maxLength: 200 }), Type.String({ minLength: 1, maxLength: 200 }), { maxProperties: 64 })),
    /** libvirt: every NIC kept but disconnected (link down). */
    noNetwork: Type.Optional(Type.Boolean()),
    /** Only these disks of the restore point (default: every disk). */
    disks: Type.Optional(Type.Array(Name, { minItems: 1, maxItems: 64 })),
    /**
     * With `host` a VMware hypervisor: into the existing VM `vmName` instead of a new VM — each
     * disk uploaded beside the VM's own on its datastore and attached to it as a new disk.
     */
    attach: Type.Optional(Type.Boolean()),
    /**
     * With `host`: over the disks of the existing VM `vmName` (the restore point's own VM), which
     * must be shut off (a libvirt domain, or a QEMU VM whose QEMU has ended); its disks are backed
     * up first unless `safetyBackup` is false.
     */
    inPlace: Type.Optional(Type.Boolean()),
    safetyBackup: Type.Optional(Type.Boolean()),
    /** In place over a VM under an immutable policy: the granted four-eyes approval (`restore-in-place`). */
    approvalId: Type.Optional(Id),
  }, { additionalProperties: false }),
]));
export type RestoreRequestTarget = Static<typeof RestoreRequestTarget>;

export const RestoreRequestedV1 = lazySchema(() => Type.Object({
  restoreId: Id,
  restorePointId: Id,
  repository: Name,
  target: RestoreRequestTarget,
  /** The person's own key signed the request (the local CLI): the target may lie outside the restore roots. */
  ownTarget: Type.Boolean(),
  /** Most bytes per second the job writes (its own limit; the host's and the site's hold too). */
  bandwidthBytesPerSec: Type.Optional(Type.Integer({ minimum: 1024 })),
}, { additionalProperties: false }));

/** One file the job writes: written under `partialPath` and renamed to `path` at the end. */
export const RestorePlannedDisk = lazySchema(() => Type.Object({
  disk: Name,
  path: Type.String({ minLength: 1, maxLength: 4096 }),
  partialPath: Type.String({ minLength: 1, maxLength: 4200 }),
  format: Type.Union([Type.Literal('raw'), Type.Literal('qcow2')]),
  sizeBytes: Bytes,
  /** Whole-VM restore: where the disk is put first (the VM's staging directory, renamed to its final place at the end). */
  writePath: Type.Optional(Type.String({ minLength: 1, maxLength: 4200 })),
}, { additionalProperties: false }));
export type RestorePlannedDisk = Static<typeof RestorePlannedDisk>;

/** The VM a whole-VM restore makes: built in `stagingDir`, renamed to `dir` when complete. */
export const RestorePlannedVm = lazySchema(() => Type.Object({
  name: Name,
  dir: Type.String({ maxLength: 4096 }),
  stagingDir: Type.String({ maxLength: 4200 }),
  uuid: Type.String({ maxLength: 64 }),
  /** NIC id → MAC address of the new VM. */
  macs: Type.Record(Type.String(), Type.String()),
  start: Type.Boolean(),
  config: VmConfig,
  /**
   * Made on this hypervisor by the snapshot coordinator: a libvirt domain, or (the host a VMware
   * hypervisor, the restore point a VMware VM's) a vSphere VM the disks are uploaded to; else a QEMU start script.
   */
  libvirt: Type.Optional(Type.Object({
    host: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }),
    networkMap: Type.Record(Type.String({ maxLength: 200 }), Type.String({ maxLength: 200 })),
    noNetwork: Type.Boolean(),
    /** The disks are moved into this storage pool's volumes when the domain is defined. */
    pool: Type.Optional(Type.String({ maxLength: 128 })),
    /** vSphere: the disks are attached to the existing VM `name` (no VM is made). */
    attach: Type.Optional(Type.Boolean()),
    /** Over the existing domain's disks: the safety backup of what was overwritten, the approval used. */
    inPlace: Type.Optional(Type.Object({
      safetyRestorePointId: Type.Optional(Id),
      approvalId: Type.Optional(Id),
    }, { additionalProperties: false })),
  }, { additionalProperties: false })),
  /** In place over a QEMU VM's image files (its QEMU has ended): the hypervisor it ran under, the safety backup, the approval used. */
  qemuInPlace: Type.Optional(Type.Object({
    host: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }),
    safetyRestorePointId: Type.Optional(Id),
    approvalId: Type.Optional(Id),
  }, { additionalProperties: false })),
}, { additionalProperties: false }));
export type RestorePlannedVm = Static<typeof RestorePlannedVm>;

export const RestoreStartedV1 = lazySchema(() => Type.Object({
  restoreId: Id,
  worker: Name,
  attempt: Type.Integer({ minimum: 1 }),
  /** Where the restore point is read: this site's repository or a replica of another site's. */
  source: Type.Union([Type.Literal('local'), Type.Literal('replica')]),
  sourceLocation: Type.String({ maxLength: 4096 }),
  /** Decided on the first start; later attempts repeat it. */
  disks: Type.Array(RestorePlannedDisk, { minItems: 1 }),
  /** Whole-VM restore: the new VM, decided on the first start. */
  vm: Type.Optional(RestorePlannedVm),
}, { additionalProperties: false }));

export const RestoreProgressedV1 = lazySchema(() => Type.Object({
  restoreId: Id,
  disk: Name,
  bytesDone: Bytes,
  bytesTotal: Bytes,
}, { additionalProperties: false }));

export const RestoreCompletedV1 = lazySchema(() => Type.Object({
  restoreId: Id,
  disks: Type.Array(Type.Object({ disk: Name, path: Type.String({ maxLength: 4096 }), sizeBytes: Bytes }, { additionalProperties: false })),
  attempts: Count,
  durationMs: Count,
  /** Whole-VM restore: the VM made, and where it runs when it was started. */
  vm: Type.Optional(Type.Object({
    name: Name,
    dir: Type.String({ maxLength: 4096 }),
    uuid: Type.String({ maxLength: 64 }),
    macs: Type.Record(Type.String(), Type.String()),
    started: Type.Boolean(),
    pid: Type.Optional(Type.Integer({ minimum: 1 })),
    /** QEMU only (a libvirt domain's monitor is libvirt's). */
    qmpSocket: Type.Optional(Type.String({ maxLength: 4200 })),
    serialLog: Type.String({ maxLength: 4200 }),
    /** QEMU only: the script that starts it. */
    startScript: Type.Optional(Type.String({ maxLength: 4200 })),
    /** libvirt: the domain defined, on which hypervisor. */
    libvirt: Type.Optional(Type.Object({
      host: Type.String({ maxLength: 64 }),
      domain: Type.String({ maxLength: 200 }),
      /** In place: the restore point of what was overwritten (absent with --no-safety-backup). */
      safetyRestorePointId: Type.Optional(Id),
    }, { additionalProperties: false })),
    /** In place over a QEMU VM: its hypervisor and the restore point of what was overwritten (absent with --no-safety-backup). */
    qemuInPlace: Type.Optional(Type.Object({
      host: Type.String({ maxLength: 64 }),
      safetyRestorePointId: Type.Optional(Id),
    }, { additionalProperties: false })),
    /** vSphere: the VM created (its managed object id) on which hypervisor, the disks uploaded to its datastore. */
    vmware: Type.Optional(Type.Object({
      host: Type.String({ maxLength: 64 }),
      vm: Type.String({ maxLength: 200 }),
      moref: Type.String({ maxLength: 200 }),
      /** Disks attached to the existing VM (`attach`): their datastore paths (`[ds] dir/file.vmdk`). */
      attached: Type.Optional(Type.Array(Type.String({ maxLength: 1024 }), { maxItems: 64 })),
    }, { additionalProperties: false })),
  }, { additionalProperties: false })),
}, { additionalProperties: false }));

export const RestoreFailureCode = lazySchema(() => Type.Union([
  Type.Literal('not_found'), Type.Literal('conflict'), Type.Literal('forbidden'), Type.Literal('invalid'), Type.Literal('failed'),
]));
export type RestoreFailureCode = Static<typeof RestoreFailureCode>;

export const RestoreFailedV1 = lazySchema(() => Type.Object({
  restoreId: Id,
  code: RestoreFailureCode,
  reason: Reason,
}, { additionalProperties: false }));
