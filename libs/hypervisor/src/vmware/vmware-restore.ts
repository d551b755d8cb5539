// Restore into vSphere without VDDK: a disk image is uploaded to a datastore as a monolithic
// flat VMDK (the raw `-flat.vmdk` extent through the datastore endpoint, then its text
// descriptor), and either attached to an existing VM (ReconfigVM_Task, a new disk) or made the
// disks of a new VM created from a restore point's configuration (CreateVM_Task), with its NICs
// on the networks they were on or the ones a network map names (standard port groups and
// distributed port groups), connected at power-on unless the restore asks for no network.
import type { Readable } from 'node:stream';
import type { VsphereClient } from './vsphere-client.ts';
import { VsphereError } from './vsphere-client.ts';
import { asMoRef, type MoRef } from './vsphere-xml.ts';

/** A monolithic-flat VMDK descriptor for `<name>-flat.vmdk` of `sizeBytes` (whole 512-byte sectors). */
export function flatDescriptor(name: string, sizeBytes: number, cid: number): string {
  if (sizeBytes % 512 !== 0) throw new VsphereError(`a VMDK extent is whole 512-byte sectors; ${sizeBytes} bytes is not`);
  const sectors = sizeBytes / 512;
  const cylinders = Math.max(1, Math.min(65535, Math.floor(sectors / (255 * 63))));
  return [
    '# Disk DescriptorFile', 'version=1', 'encoding="UTF-8"', `CID=${cid.toString(16).padStart(8, '0')}`, 'parentCID=ffffffff', 'createType="vmfs"', '',
    '# Extent description', `RW ${sectors} VMFS "${name}-flat.vmdk"`, '',
    '# The Disk Data Base', '#DDB', '', 'ddb.adapterType = "lsilogic"', `ddb.geometry.cylinders = "${cylinders}"`, 'ddb.geometry.heads = "255"',
    'ddb.geometry.sectors = "63"', 'ddb.virtualHWVersion = "13"', '',
  ].join('\n');
}

export interface UploadedDisk { readonly fileName: string; readonly sizeBytes: number }

/** Uploads a raw image as `[datastore] dir/name.vmdk` (+ `name-flat.vmdk`). */
export async function uploadDisk(client: VsphereClient, o: { datacenter: string; datastore: string; dir: string; name: string; sizeBytes: number; data: Readable | Buffer }): Promise<UploadedDisk> {
  if (!/^[A-Za-z0-9_.-]{1,80}$/.test(o.name) || !/^[A-Za-z0-9_. -]{1,200}$/.test(o.dir)) throw new VsphereError(`not a usable datastore file name: ${o.dir}/${o.name}`);
  const descriptor = flatDescriptor(o.name, o.sizeBytes, Math.floor(Math.random() * 0xfffffff));
  await client.upload(client.datastoreUrl(o.datacenter, o.datastore, `${o.dir}/${o.name}-flat.vmdk`), o.data, o.sizeBytes);
  await client.upload(client.datastoreUrl(o.datacenter, o.datastore, `${o.dir}/${o.name}.vmdk`), Buffer.from(descriptor), Buffer.byteLength(descriptor));
  return { fileName: `[${o.datastore}] ${o.dir}/${o.name}.vmdk`, sizeBytes: o.sizeBytes };
}

function diskSpec(file: UploadedDisk, controllerKey: number, unitNumber: number, key: number) {
  return {
    operation: 'add',
    device: {
      $type: 'VirtualDisk', key, deviceInfo: { label: `Hard disk ${unitNumber + 1}`, summary: '' },
      backing: { $type: 'VirtualDiskFlatVer2BackingInfo', fileName: file.fileName, diskMode: 'persistent', thinProvisioned: false },
      controllerKey, unitNumber, capacityInKB: Math.floor(file.sizeBytes / 1024), capacityInBytes: file.sizeBytes,
    },
  };
}

/** Attaches uploaded disks to a VM on the controller `controllerKey`, on the units not taken. */
export async function attachDisks(client: VsphereClient, vm: MoRef, controllerKey: number, taken: readonly number[], files: readonly UploadedDisk[]): Promise<void> {
  const free: number[] = [];
  for (let u = 0; u < 16 && free.length < files.length; u++) if (u !== 7 && !taken.includes(u)) free.push(u);
  if (free.length < files.length) throw new VsphereError(`controller ${controllerKey} has no free unit for ${files.length} more disks`);
  await client.runTask('ReconfigVM_Task', vm, { spec: { deviceChange: files.map((f, i) => diskSpec(f, controllerKey, free[i]!, -(i + 1))) } });
}

/** A NIC of a new VM: its card type, the network it is on (found in the datacenter), its MAC when kept. */
export interface NewVmNic {
  readonly label: string;
  readonly model: string;
  readonly network: { readonly name: string; readonly moref: MoRef; readonly dvs?: { readonly switchUuid: string; readonly portgroupKey: string } };
  /** Kept (manual) MAC; else vSphere generates one. */
  readonly mac?: string;
  /** Connected when the VM powers on. */
  readonly connected: boolean;
}

const NIC_TYPES = new Set(['VirtualE1000', 'VirtualE1000e', 'VirtualVmxnet3', 'VirtualVmxnet2', 'VirtualVmxnet', 'VirtualPCNet32', 'VirtualSriovEthernetCard']);

/** The device change adding `nic` (element order as vSphere's schema has it). */
export function nicSpec(nic: NewVmNic, key: number) {
  const backing = nic.network.dvs
    ? { $type: 'VirtualEthernetCardDistributedVirtualPortBackingInfo', port: { switchUuid: nic.network.dvs.switchUuid, portgroupKey: nic.network.dvs.portgroupKey } }
    : { $type: 'VirtualEthernetCardNetworkBackingInfo', deviceName: nic.network.name, network: nic.network.moref };
  return {
    operation: 'add',
    device: {
      $type: NIC_TYPES.has(nic.model) ? nic.model : 'VirtualVmxnet3', key, deviceInfo: { label: nic.label, summary: nic.network.name },
      backing, connectable: { startConnected: nic.connected, allowGuestControl: true, connected: false },
      addressType: nic.mac ? 'manual' : 'generated', ...(nic.mac ? { macAddress: nic.mac } : {}),
    },
  };
}

export interface NewVmSpec {
  readonly name: string;
  readonly guestId?: string;
  readonly vcpus: number;
  readonly memoryBytes: number;
  readonly firmware?: string;
  readonly datastore: string;
  readonly disks: readonly UploadedDisk[];
  readonly nics?: readonly NewVmNic[];
}

/** Creates (registers) a VM on the datacenter's VM folder and the host's resource pool with the uploaded disks. */
export async function createVm(client: VsphereClient, where: { vmFolder: MoRef; pool: MoRef; host?: MoRef }, spec: NewVmSpec): Promise<MoRef> {
  const controller = -100;
  const result = await client.runTask('CreateVM_Task', where.vmFolder, {
    config: {
      name: spec.name, guestId: spec.guestId ?? 'otherGuest64',
      files: { vmPathName: `[${spec.datastore}]` },
      numCPUs: spec.vcpus, memoryMB: Math.max(4, Math.round(spec.memoryBytes / (1 << 20))),
      deviceChange: [
        { operation: 'add', device: { $type: 'ParaVirtualSCSIController', key: controller, deviceInfo: { label: 'SCSI controller 0', summary: '' }, busNumber: 0, sharedBus: 'noSharing' } },
        ...spec.disks.map((f, i) => diskSpec(f, controller, i >= 7 ? i + 1 : i, -(i + 1))),
        ...(spec.nics ?? []).map((n, i) => nicSpec(n, -(200 + i))),
      ],
      ...(spec.firmware === 'efi' ? { firmware: 'efi' } : {}),
    },
    pool: where.pool, ...(where.host ? { host: where.host } : {}),
  });
  const vm = asMoRef(result);
  if (!vm) throw new VsphereError(`CreateVM_Task for ${spec.name} returned no VM`);
  return vm;
}
