// Inventory as events: fold a VM's stream (`vm-<vmId>`) into what the log already knows, and
// compare it with what the hypervisor shows now. Pure; the service does the reading and writing.
import type { KnownEvent } from '@cairn/contracts';

export interface KnownVm {
  readonly discovered: boolean;
  readonly disks: ReadonlyMap<string, number>; // disk name -> size
}

export const unknownVm: KnownVm = { discovered: false, disks: new Map() };

export function evolveVm(state: KnownVm, event: KnownEvent): KnownVm {
  switch (event.type) {
    case 'VmDiscovered':
      return { discovered: true, disks: new Map(event.data.disks.map((d) => [d.name, d.sizeBytes])) };
    case 'DiskAttached': {
      const disks = new Map(state.disks);
      disks.set(event.data.disk.name, event.data.disk.sizeBytes);
      return { ...state, disks };
    }
    case 'DiskDetached': {
      const disks = new Map(state.disks);
      disks.delete(event.data.disk);
      return { ...state, disks };
    }
    default:
      return state;
  }
}

export interface ObservedVm {
  readonly vmId: string;
  readonly name: string;
  readonly host: string;
  /** Default qemu. */
  readonly kind?: 'qemu' | 'libvirt' | 'vmware' | 'simulated';
  /** Tags the hypervisor keeps for the VM (vSphere), recorded at discovery. */
  readonly tags?: readonly string[];
  readonly disks: ReadonlyArray<{ readonly name: string; readonly sizeBytes: number }>;
}

export type InventoryChange =
  | { type: 'VmDiscovered'; data: { vmId: string; name: string; hypervisor: { kind: 'qemu' | 'libvirt' | 'vmware' | 'simulated'; host: string }; tags: string[]; disks: Array<{ name: string; sizeBytes: number }> } }
  | { type: 'DiskAttached'; data: { vmId: string; disk: { name: string; sizeBytes: number } } }
  | { type: 'DiskDetached'; data: { vmId: string; disk: string } };

/** Events that bring the log in line with what is observed (a resized disk is detached and attached again). */
export function decideInventory(known: KnownVm, seen: ObservedVm): InventoryChange[] {
  if (!known.discovered) {
    return [{ type: 'VmDiscovered', data: { vmId: seen.vmId, name: seen.name, hypervisor: { kind: seen.kind ?? 'qemu', host: seen.host }, tags: [...(seen.tags ?? [])], disks: seen.disks.map((d) => ({ ...d })) } }];
  }
  const out: InventoryChange[] = [];
  const now = new Map(seen.disks.map((d) => [d.name, d.sizeBytes]));
  for (const [name, size] of known.disks) {
    if (now.get(name) !== size) out.push({ type: 'DiskDetached', data: { vmId: seen.vmId, disk: name } });
  }
  for (const [name, size] of now) {
    if (known.disks.get(name) !== size) out.push({ type: 'DiskAttached', data: { vmId: seen.vmId, disk: { name, sizeBytes: size } } });
  }
  return out;
}

/** A VM id usable in stream ids, from QEMU's `-name` (anything else becomes '_'). */
export function vmIdFromName(name: string): string {
  const id = name.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 200);
  return id.length > 0 ? id : '_';
}
