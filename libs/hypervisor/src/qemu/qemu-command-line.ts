// A QEMU command line that starts a VM recreated by a whole-VM restore from the configuration
// its restore point keeps (qemu/vm-config.ts): new identity, its restored disks, NICs not
// connected to any network, daemonized with a pid file, console and QMP in the VM's directory.
import type { QemuVmConfig } from './vm-config.ts';

/**
 * A disk of the VM: an image file, or (instant recovery) a local qcow2 overlay over a read-only
 * NBD export of the restore point, the chain given here on the command line (the overlay file
 * names no backing file) so the export's socket can change without touching the image.
 */
export interface QemuLaunchDisk {
  readonly name: string;
  readonly file: string;
  readonly format: 'raw' | 'qcow2';
  readonly nbd?: { readonly socket: string; readonly exportName: string };
  /** Block node name of the disk's top (default `disk<i>-fmt`). */
  readonly node?: string;
}

/** How long QEMU holds a guest's reads while an NBD export it reads is away (an exporter restart). */
export const NBD_RECONNECT_DELAY_S = 60;

export interface QemuLaunch {
  readonly name: string;
  readonly uuid: string;
  /** New MAC per NIC id (or the same ones with --keep-identity). */
  readonly macs: Readonly<Record<string, string>>;
  readonly disks: ReadonlyArray<QemuLaunchDisk>;
  readonly qmpSocket: string;
  readonly serialLog: string;
  readonly pidFile: string;
  /** The machine's `accel` (default `kvm:tcg`: KVM where the host has it, else TCG). */
  readonly accel?: string;
}

/** The QEMU command line (program first) that starts a restored VM, daemonized. */
export function qemuCommandLine(config: QemuVmConfig, l: QemuLaunch): string[] {
  const args = ['qemu-system-x86_64', '-name', l.name, '-uuid', l.uuid, '-M', `${config.machine ?? 'q35'},accel=${l.accel ?? config.accel ?? 'kvm:tcg'}`,
    '-smp', String(config.vcpus ?? 1), '-m', String(Math.max(64, Math.round((config.memoryBytes ?? 512 * 1024 * 1024) / (1024 * 1024)))), '-nodefaults', '-display', 'none', '-no-reboot',
    '-serial', `file:${l.serialLog}`, '-qmp', `unix:${l.qmpSocket},server=on,wait=off`, '-pidfile', l.pidFile, '-daemonize'];
  if (config.kernel) args.push('-kernel', config.kernel);
  if (config.initrd) args.push('-initrd', config.initrd);
  if (config.append) args.push('-append', config.append);
  // Disks in the order the VM had them (the restore point's disk names are their device ids).
  const order = config.disks.length ? config.disks.map((d) => d.id) : l.disks.map((d) => d.name);
  for (const [i, id] of order.entries()) {
    const disk = l.disks.find((x) => x.name === id);
    if (!disk) continue;
    const node = disk.node ?? `disk${i}-fmt`;
    if (disk.nbd) {
      // One node with its children inline: deleting it after a mirror's pivot closes the NBD connection too.
      args.push('-blockdev', [`driver=qcow2,node-name=${node},file.driver=file,file.filename=${opt(disk.file)}`,
        `backing.driver=nbd,backing.node-name=${node}-nbd,backing.server.type=unix,backing.server.path=${opt(disk.nbd.socket)}`,
        `backing.export=${opt(disk.nbd.exportName)},backing.reconnect-delay=${NBD_RECONNECT_DELAY_S}`].join(','),
      '-device', `virtio-blk-pci,drive=${node},id=${id}`);
      continue;
    }
    args.push('-blockdev', `driver=file,filename=${opt(disk.file)},node-name=disk${i}-file`,
      '-blockdev', `driver=${disk.format},file=disk${i}-file,node-name=${node}`,
      '-device', `virtio-blk-pci,drive=${node},id=${id}`);
  }
  for (const n of config.nics) {
    // Not connected to any network (user mode, restricted): a restored copy must not take the original's place on its network.
    const mac = l.macs[n.id] ?? n.mac;
    args.push('-netdev', `user,id=${n.id}-net,restrict=on`, '-device', `${n.model ?? 'virtio-net-pci'},netdev=${n.id}-net,id=${n.id}${mac ? `,mac=${mac}` : ''}`);
  }
  return args;
}

/** A value inside a QEMU option list: a comma is written twice. */
const opt = (v: string): string => v.replace(/,/g, ',,');

/** A locally administered unicast MAC in QEMU's 52:54:00 range. */
export function newMac(random: () => number = Math.random): string {
  const b = () => Math.floor(random() * 256).toString(16).padStart(2, '0');
  return `52:54:00:${b()}:${b()}:${b()}`;
}
