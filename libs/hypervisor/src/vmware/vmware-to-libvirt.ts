// A VMware VM's configuration (as its restore point keeps it, vmwareVmConfig) translated into a
// libvirt domain, for exit from vSphere or disaster recovery onto KVM: vCPUs, memory, firmware,
// each disk as a virtio disk in the order of its controller and unit (vda, vdb, …), each NIC as
// a virtio NIC on the network of the same name (a network map renames them at restore). What
// virt-v2v does inside the guest (virtio drivers for Windows, fstab and boot loader fixes) is not
// done: a Linux guest with virtio drivers in its initramfs boots; others need that conversion.
// The result is an ordinary libvirt restore configuration (libvirtVmConfig) plus which target
// each VMware disk became.
import { libvirtVmConfig, type LibvirtVmConfig } from '../libvirt/domain-xml.ts';

export interface VmwareConfigForLibvirt {
  readonly name: string;
  readonly uuid?: string;
  readonly vcpus: number;
  readonly memoryBytes: number;
  readonly firmware?: string;
  readonly disks: ReadonlyArray<{ readonly id: string; readonly sizeBytes: number; readonly controllerKey?: number; readonly unitNumber?: number }>;
  readonly nics: ReadonlyArray<{ readonly id?: string; readonly model?: string; readonly mac?: string; readonly source?: string }>;
}

export interface VmwareToLibvirtOptions {
  /** `kvm` (default) or `qemu` (TCG, where the host has no usable KVM). */
  readonly domainType?: 'kvm' | 'qemu';
  /** Disk bus (default virtio; `sata` for a guest without virtio drivers). */
  readonly diskBus?: 'virtio' | 'sata' | 'scsi';
  /** A serial console logged to this file (default: a pty console). */
  readonly serialLog?: string;
  /** NICs on QEMU's user-mode network instead of libvirt networks (an isolated DR test). */
  readonly userNetwork?: boolean;
  /** Direct kernel boot, for a guest without a boot loader (files on the libvirt host). */
  readonly directBoot?: { readonly kernel: string; readonly initrd: string; readonly append: string };
}

export class VmwareTranslationError extends Error {
  constructor(message: string) { super(message); this.name = 'VmwareTranslationError'; }
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/'/g, '&apos;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function targetName(bus: string, i: number): string {
  const prefix = bus === 'virtio' ? 'vd' : 'sd';
  let n = i;
  let suffix = '';
  do { suffix = String.fromCharCode(97 + (n % 26)) + suffix; n = Math.floor(n / 26) - 1; } while (n >= 0);
  return prefix + suffix;
}

/** The libvirt configuration of a VMware VM, and the target (vda, …) each of its disks became. */
export function libvirtConfigFromVmware(config: Readonly<Record<string, unknown>>, o: VmwareToLibvirtOptions = {}): LibvirtVmConfig & { readonly targets: Readonly<Record<string, string>> } {
  if (config['kind'] !== 'vmware') throw new VmwareTranslationError(`not a VMware VM configuration (kind ${String(config['kind'])})`);
  const c = config as unknown as VmwareConfigForLibvirt;
  if (!Number.isInteger(c.vcpus) || c.vcpus < 1) throw new VmwareTranslationError(`${c.name}: no vCPU count in the configuration`);
  if (!Number.isFinite(c.memoryBytes) || c.memoryBytes < 1 << 20) throw new VmwareTranslationError(`${c.name}: no memory size in the configuration`);
  const bus = o.diskBus ?? 'virtio';
  const ordered = [...c.disks].sort((a, b) => (a.controllerKey ?? 0) - (b.controllerKey ?? 0) || (a.unitNumber ?? 0) - (b.unitNumber ?? 0));
  const targets = Object.fromEntries(ordered.map((d, i) => [d.id, targetName(bus, i)]));
  const boot = o.directBoot
    ? `<kernel>${esc(o.directBoot.kernel)}</kernel><initrd>${esc(o.directBoot.initrd)}</initrd><cmdline>${esc(o.directBoot.append)}</cmdline>`
    : '<boot dev=\'hd\'/>';
  const xml = `<domain type='${o.domainType ?? 'kvm'}'>
  <name>${esc(c.name)}</name>
${c.uuid && /^[0-9a-f-]{36}$/i.test(c.uuid) ? `  <uuid>${c.uuid}</uuid>\n` : ''}  <memory unit='KiB'>${Math.floor(c.memoryBytes / 1024)}</memory>
  <vcpu>${c.vcpus}</vcpu>
  <os${c.firmware === 'efi' ? " firmware='efi'" : ''}><type arch='x86_64' machine='q35'>hvm</type>${boot}</os>
  <features><acpi/><apic/></features>
  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
  <devices>
${ordered.map((d) => `    <disk type='file' device='disk'><driver name='qemu' type='raw'/><target dev='${targets[d.id]}' bus='${bus}'/></disk>`).join('\n')}
${c.nics.map((n) => o.userNetwork
    ? `    <interface type='user'>${n.mac ? `<mac address='${esc(n.mac)}'/>` : ''}<model type='virtio'/></interface>`
    : `    <interface type='network'>${n.mac ? `<mac address='${esc(n.mac)}'/>` : ''}<source network='${esc(n.source ?? 'default')}'/><model type='virtio'/></interface>`).join('\n')}
${o.serialLog ? `    <serial type='file'><source path='${esc(o.serialLog)}'/></serial>` : "    <serial type='pty'/>\n    <console type='pty'/>"}
    <memballoon model='virtio'/>
  </devices>
</domain>
`;
  return { ...libvirtVmConfig(xml), targets };
}
