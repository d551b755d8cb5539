// Hypervisor inventory (stream `vm-<vmId>`): what the snapshot coordinator found.
import { Type } from '@sinclair/typebox';
import { lazySchema } from '../lazy-schema.ts';
import { Bytes, Id, Name } from './common.ts';

export const HypervisorRef = lazySchema(() => Type.Object({
  kind: Type.Union([Type.Literal('qemu'), Type.Literal('libvirt'), Type.Literal('vmware'), Type.Literal('simulated')]),
  /** The hypervisor host or cluster the VM runs on. */
  host: Name,
}, { additionalProperties: false }));

export const DiskInfo = lazySchema(() => Type.Object({
  name: Name,
  sizeBytes: Bytes,
}, { additionalProperties: false }));

export const VmDiscoveredV1 = lazySchema(() => Type.Object({
  vmId: Id,
  name: Name,
  hypervisor: HypervisorRef,
  tags: Type.Array(Name),
  disks: Type.Array(DiskInfo),
}, { additionalProperties: false }));

export const DiskAttachedV1 = lazySchema(() => Type.Object({
  vmId: Id,
  disk: DiskInfo,
}, { additionalProperties: false }));

export const DiskDetachedV1 = lazySchema(() => Type.Object({
  vmId: Id,
  disk: Name,
}, { additionalProperties: false }));

/** The hypervisor reports the VM in another power state (`running`, `stopped`, `paused`, or its own word). */
export const VmPowerStateChangedV1 = lazySchema(() => Type.Object({
  vmId: Id,
  state: Name,
}, { additionalProperties: false }));

/** The VM is no longer on its hypervisor (deleted or unregistered there); its restore points stay. */
export const VmRemovedV1 = lazySchema(() => Type.Object({
  vmId: Id,
  name: Name,
  hypervisor: HypervisorRef,
}, { additionalProperties: false }));
