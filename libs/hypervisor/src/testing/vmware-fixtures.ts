// Test fixtures for the VMware adapter against govmomi's simulator: resize a VM's disk and fill
// its flat file through the datastore endpoint, set the change id vSphere would report on the
// disk's backing (the simulator has no change tracking of its own), read the VM's snapshots.
import type { VsphereClient } from '../vmware/vsphere-client.ts';
import { moRef } from '../vmware/vsphere-xml.ts';
import { flatPath, type VmwareDisk, type VmwareVm } from '../vmware/vmware-inventory.ts';

/** Gives `disk` a new capacity and, when given, a change id on its backing (ReconfigVM_Task, edit). */
export async function reconfigureDisk(client: VsphereClient, vm: VmwareVm, disk: VmwareDisk, change: { capacityBytes?: number; changeId?: string }): Promise<void> {
  const capacityBytes = change.capacityBytes ?? disk.capacityBytes;
  await client.runTask('ReconfigVM_Task', moRef('VirtualMachine', vm.moref), {
    spec: {
      deviceChange: [{
        operation: 'edit',
        device: {
          $type: 'VirtualDisk', key: disk.key, deviceInfo: { label: disk.label, summary: '' },
          backing: {
            $type: 'VirtualDiskFlatVer2BackingInfo', fileName: disk.fileName, diskMode: 'persistent',
            thinProvisioned: false, ...(change.changeId ? { changeId: change.changeId } : {}),
          },
          controllerKey: disk.controllerKey, unitNumber: disk.unitNumber,
          capacityInKB: Math.floor(capacityBytes / 1024), capacityInBytes: capacityBytes,
        },
      }],
    },
  });
}

/** Writes the disk's whole flat file (`-flat.vmdk`) through the datastore endpoint. */
export async function uploadFlat(client: VsphereClient, vm: VmwareVm, disk: VmwareDisk, data: Buffer): Promise<void> {
  await client.upload(client.datastoreUrl(vm.datacenter, disk.datastore, flatPath(disk.path)), data, data.length);
}

/** Generated disk content: a different pattern per MiB, seeded. */
export function generatedDisk(bytes: number, seed: number): Buffer {
  const out = Buffer.alloc(bytes);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < bytes; i += 4) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out.writeUInt32LE(x, i);
  }
  return out;
}

/** Powers `vm` off through the vSphere API (PowerOffVM_Task), as an operator in vCenter would. */
export async function powerOffVm(client: VsphereClient, vm: VmwareVm): Promise<void> {
  await client.runTask('PowerOffVM_Task', moRef('VirtualMachine', vm.moref));
}

/** Deletes `vm` (powered off) from its datastore and the inventory (Destroy_Task). */
export async function destroyVm(client: VsphereClient, vm: VmwareVm): Promise<void> {
  await client.runTask('Destroy_Task', moRef('VirtualMachine', vm.moref));
}
