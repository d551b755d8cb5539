// Inventory as events: fold a VM's stream (`vm-<vmId>`) into what the log already knows, and
// compare it with what the hypervisor shows now. Pure; the service does the reading and writing.
import type { KnownEvent } from '@cairn/contracts';

export interface KnownVm {
  readonly discovered: boolean;
  readonly disks: ReadonlyMap<string, number>; // disk name -> size
  /** The power state last recorded (none before the first VmPowerStateChanged). */
  readonly state?: string;
  readonly name?: string;
  readonly hypervisor?: { kind: 'qemu' | 'libvirt' | 'vmware' | 'simulated'; host: string };
}

export const unknownVm: KnownVm = { discovered: false, disks: new Map() };

export function evolveVm(state: KnownVm, event: KnownEvent): KnownVm {
  switch (event.type) {
    case 'VmDiscovered':
      return { ...state, discovered: true, name: event.data.name, hypervisor: { ...event.data.hypervisor }, disks: new Map(event.data.disks.map((d) => [d.name, d.sizeBytes])) };
    case 'VmPowerStateChanged':
      return { ...state, state: event.data.state };
    case 'VmRemoved':
      // Gone from its hypervisor: seen again, it is discovered again.
      return unknownVm;
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
  /** The power state the hypervisor reports (`running`, `stopped`, `paused`, …), when it does. */
  readonly state?: string;
}

export type InventoryChange =
  | { type: 'VmDiscovered'; data: { vmId: string; name: string; hypervisor: { kind: 'qemu' | 'libvirt' | 'vmware' | 'simulated'; host: string }; tags: string[]; disks: Array<{ name: string; sizeBytes: number }> } }
  | { type: 'DiskAttached'; data: { vmId: string; disk: { name: string; sizeBytes: number } } }
  | { type: 'DiskDetached'; data: { vmId: string; disk: string } }
  | { type: 'VmPowerStateChanged'; data: { vmId: string; state: string } }
  | { type: 'VmRemoved'; data: { vmId: string; name: string; hypervisor: { kind: 'qemu' | 'libvirt' | 'vmware' | 'simulated'; host: string } } };

/** Events that bring the log in line with what is observed (a resized disk is detached and attached again). */
export function decideInventory(known: KnownVm, seen: ObservedVm): InventoryChange[] {
  const power: InventoryChange[] = seen.state && seen.state !== known.state
    ? [{ type: 'VmPowerStateChanged', data: { vmId: seen.vmId, state: seen.state.slice(0, 200) } }] : [];
  if (!known.discovered) {
    return [{ type: 'VmDiscovered', data: { vmId: seen.vmId, name: seen.name, hypervisor: { kind: seen.kind ?? 'qemu', host: seen.host }, tags: [...(seen.tags ?? [])], disks: seen.disks.map((d) => ({ ...d })) } }, ...power];
  }
  const out: InventoryChange[] = [...power];
  const now = new Map(seen.disks.map((d) => [d.name, d.sizeBytes]));
  for (const [name, size] of known.disks) {
    if (now.get(name) !== size) out.push({ type: 'DiskDetached', data: { vmId: seen.vmId, disk: name } });
  }
  for (const [name, size] of now) {
    if (known.disks.get(name) !== size) out.push({ type: 'DiskAttached', data: { vmId: seen.vmId, disk: { name, sizeBytes: size } } });
  }
  return out;
}

/**
 * A VM the log has on hypervisor instance `host` that the instance's inventory no longer lists:
 * VmRemoved (nothing when the log has it elsewhere, or removed already).
 */
export function decideRemoval(known: KnownVm, vmId: string, host: string): InventoryChange[] {
  if (!known.discovered || !known.hypervisor || known.hypervisor.host !== host) return [];
  return [{ type: 'VmRemoved', data: { vmId, name: known.name ?? vmId, hypervisor: { ...known.hypervisor } } }];
}

/** A VM id usable in stream ids, from QEMU's `-name` (anything else becomes '_'). */
export function vmIdFromName(name: string): string {
  const id = name.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 200);
  return id.length > 0 ? id : '_';
}
