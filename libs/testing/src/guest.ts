// Test fixture: a real Linux guest that boots under TCG in 10–25 s (shared/QEMU-NOTES.md).
// The host's Debian kernel and initramfs boot a root file system made without mounting
// anything: busybox, an /sbin/init that prints a marker on the serial console, optionally a
// workload that keeps writing to the disk and the QEMU guest agent (the host's qemu-ga with
// its libraries, on the virtio-serial port `org.qemu.guest_agent.0`).
// Needs the Debian packages linux-image-amd64, busybox-static, e2fsprogs, qemu-utils,
// qemu-system-x86 (and qemu-guest-agent for `guestAgent`).
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { chmod, copyFile, mkdir, readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface GuestImageOptions {
  /** Directory for the image and its build tree (the caller removes it). */
  dir: string;
  /** Host name inside the guest; the marker names it. */
  hostname?: string;
  /** Size of the root disk. Default 256 MiB. */
  sizeMiB?: number;
  /** Disk format of the result. Default qcow2 (persistent bitmaps need it). */
  format?: 'raw' | 'qcow2';
  /** Write to /data in a loop (a 256 KiB file out of 8, every second, fsynced). */
  workload?: boolean;
  /** A workload of the test's own instead (a shell script run in the background once the guest is up). */
  workloadScript?: string;
  /** Copy the host's qemu-ga and its libraries into the guest and start it. */
  guestAgent?: boolean;
  /** Load the virtio network driver (the host's modules) so a `virtio-net-pci` device is `eth0`; the workload configures it. */
  network?: boolean;
  /** Extra files placed in the root file system (path inside the guest → content). */
  files?: Record<string, string | Buffer>;
  /** Leave out /sbin/init and /bin/sh: the kernel stops with "No init found" (a guest that must fail to boot). */
  broken?: boolean;
}

export interface GuestImage {
  readonly disk: string;
  readonly format: 'raw' | 'qcow2';
  readonly hostname: string;
  /** Printed on the serial console once the guest's init runs. */
  readonly marker: string;
  readonly kernel: string;
  readonly initrd: string;
  /** Kernel command line: root on the first virtio disk. */
  readonly append: string;
}

/** The marker a guest built with `hostname` prints when it is up. */
export function guestMarker(hostname: string): string {
  return `CAIRN-GUEST-UP ${hostname}`;
}

export async function hostKernel(): Promise<{ kernel: string; initrd: string }> {
  const names = await readdir('/boot');
  const kernel = names.filter((n) => n.startsWith('vmlinuz-')).sort().pop();
  if (!kernel) throw new Error('no kernel under /boot: install linux-image-amd64');
  const version = kernel.slice('vmlinuz-'.length);
  const initrd = `initrd.img-${version}`;
  if (!names.includes(initrd)) throw new Error(`no ${initrd} under /boot`);
  return { kernel: join('/boot', kernel), initrd: join('/boot', initrd) };
}

const INIT = `#!/bin/sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /data
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys 2>/dev/null
mount -t devtmpfs dev /dev 2>/dev/null
hostname "$(cat /etc/hostname)"
for m in /lib/cairn-modules/*.ko; do [ -f "$m" ] && insmod "$m" 2>/dev/null; done
if [ -x /usr/sbin/qemu-ga ]; then
  for i in 1 2 3 4 5 6 7 8 9 10; do
    port=$(for p in /sys/class/virtio-ports/*; do [ "$(cat $p/name 2>/dev/null)" = org.qemu.guest_agent.0 ] && basename $p; done)
    [ -n "$port" ] && [ -e "/dev/$port" ] && break
    sleep 1
  done
  [ -n "$port" ] && /usr/sbin/qemu-ga -m virtio-serial -p "/dev/$port" -d -t /run -f /run/qemu-ga.pid
fi
echo "CAIRN-GUEST-UP $(hostname)" > /dev/console
[ -x /etc/cairn/workload.sh ] && /etc/cairn/workload.sh &
while true; do sleep 3600; done
`;

const WORKLOAD = `#!/bin/sh
i=0
while true; do
  dd if=/dev/urandom of=/data/w$((i % 8)) bs=64k count=4 conv=fsync 2>/dev/null
  i=$((i + 1))
  sleep 1
done
`;

async function put(root: string, path: string, content: string | Buffer, mode = 0o644): Promise<void> {
  const file = join(root, path);
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, content);
  await chmod(file, mode);
}

/** Copies a dynamically linked binary and every library `ldd` names into the root. */
async function copyWithLibraries(root: string, binary: string): Promise<void> {
  await mkdir(join(root, dirname(binary)), { recursive: true });
  await copyFile(binary, join(root, binary));
  await chmod(join(root, binary), 0o755);
  const { stdout } = await run('ldd', [binary]);
  for (const line of stdout.split('\n')) {
    const m = /(\/\S+)\s+\(0x/.exec(line);
    if (!m?.[1]) continue;
    const lib = m[1];
    await mkdir(join(root, dirname(lib)), { recursive: true });
    await copyFile(lib, join(root, lib));
  }
}

async function kernelModule(name: string): Promise<string | undefined> {
  const { kernel } = await hostKernel();
  const version = kernel.slice('/boot/vmlinuz-'.length);
  const { stdout } = await run('find', [`/lib/modules/${version}/kernel`, '-name', `${name}.ko*`]).catch(() => ({ stdout: '' }));
  return stdout.split('\n').find((l) => l.trim() !== '');
}

async function placeModule(root: string, name: string): Promise<void> {
  const mod = await kernelModule(name);
  if (!mod) return;
  const target = join(root, `lib/cairn-modules/${name}.ko`);
  if (mod.endsWith('.xz')) {
    const { stdout } = await run('xz', ['-dc', mod], { encoding: 'buffer', maxBuffer: 64 << 20 });
    await writeFile(target, stdout);
  } else await copyFile(mod, target);
}

/** Builds a bootable guest image (ext4 root on the whole disk) without mounting anything. */
export async function buildGuestImage(opts: GuestImageOptions): Promise<GuestImage> {
  const hostname = opts.hostname ?? 'cairn-guest';
  const format = opts.format ?? 'qcow2';
  const sizeMiB = opts.sizeMiB ?? 256;
  const root = join(opts.dir, 'rootfs');
  await mkdir(join(root, 'bin'), { recursive: true });
  for (const d of ['proc', 'sys', 'dev', 'tmp', 'run', 'var', 'data', 'etc/cairn', 'lib/cairn-modules', 'sbin']) await mkdir(join(root, d), { recursive: true });
  await copyFile('/bin/busybox', join(root, 'bin/busybox'));
  await chmod(join(root, 'bin/busybox'), 0o755);
  await put(root, 'etc/hostname', `${hostname}\n`);
  await symlink('../run', join(root, 'var/run'));
  if (!opts.broken) {
    await symlink('busybox', join(root, 'bin/sh'));
    await put(root, 'sbin/init', INIT, 0o755);
  }
  if (opts.workload || opts.workloadScript) await put(root, 'etc/cairn/workload.sh', opts.workloadScript ?? WORKLOAD, 0o755);
  if (opts.guestAgent) {
    await copyWithLibraries(root, '/usr/sbin/qemu-ga');
    await placeModule(root, 'virtio_console');
  }
  // init loads them in name order: failover before net_failover before virtio_net.
  if (opts.network) for (const m of ['failover', 'net_failover', 'virtio_net']) await placeModule(root, m);
  for (const [path, content] of Object.entries(opts.files ?? {})) await put(root, path.replace(/^\/+/, ''), content);
  const raw = join(opts.dir, `${hostname}.raw`);
  await run('truncate', ['-s', `${sizeMiB}M`, raw]);
  await run('mke2fs', ['-q', '-F', '-t', 'ext4', '-L', 'cairn-root', '-d', root, raw]);
  let disk = raw;
  if (format === 'qcow2') {
    disk = join(opts.dir, `${hostname}.qcow2`);
    await run('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, disk]);
  }
  const { kernel, initrd } = await hostKernel();
  return { disk, format, hostname, marker: guestMarker(hostname), kernel, initrd, append: 'console=ttyS0 root=/dev/vda rw panic=-1' };
}

export interface BootedGuestOptions {
  image: GuestImage;
  /** Directory for the QMP socket, the serial log and the agent socket. */
  dir: string;
  /** Disk to boot instead of the image's own (e.g. a restored copy). */
  disk?: string;
  format?: 'raw' | 'qcow2';
  /** More disks after the root disk. */
  extraDisks?: ReadonlyArray<{ file: string; format: 'raw' | 'qcow2'; id: string }>;
  memoryMiB?: number;
  /** Expose the guest agent's virtio-serial port on `agentSocket`. */
  guestAgent?: boolean;
  /** Extra QEMU arguments. */
  args?: readonly string[];
}

export interface BootedGuest {
  readonly qmpPath: string;
  readonly serialLog: string;
  /** The host side of the guest agent channel (when `guestAgent`). */
  readonly agentSocket: string;
  /** Device id of the root disk (`vda` → `disk0`). */
  readonly rootDeviceId: string;
  readonly pid: number | undefined;
  readonly process: ChildProcess;
  /** Resolves once `text` (default the marker) appears on the serial console. */
  waitForSerial(text?: string, timeoutMs?: number): Promise<void>;
  serial(): Promise<string>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** QEMU arguments that boot `image` (or another copy of its disk) with the host kernel. */
export function guestQemuArgs(o: BootedGuestOptions & { qmpPath: string; serialLog: string; agentSocket: string }): string[] {
  const disk = o.disk ?? o.image.disk;
  const format = o.format ?? (o.disk ? (o.disk.endsWith('.raw') ? 'raw' : 'qcow2') : o.image.format);
  const args = ['-M', 'q35', '-accel', 'tcg', '-m', String(o.memoryMiB ?? 512), '-smp', '1', '-nodefaults', '-display', 'none',
    '-kernel', o.image.kernel, '-initrd', o.image.initrd, '-append', o.image.append, '-no-reboot',
    '-serial', `file:${o.serialLog}`, '-qmp', `unix:${o.qmpPath},server=on,wait=off`,
    '-blockdev', `driver=file,filename=${disk},node-name=disk0-file`,
    '-blockdev', `driver=${format},file=disk0-file,node-name=disk0-fmt`,
    '-device', 'virtio-blk-pci,drive=disk0-fmt,id=disk0'];
  for (const d of o.extraDisks ?? []) {
    args.push('-blockdev', `driver=file,filename=${d.file},node-name=${d.id}-file`,
      '-blockdev', `driver=${d.format},file=${d.id}-file,node-name=${d.id}-fmt`,
      '-device', `virtio-blk-pci,drive=${d.id}-fmt,id=${d.id}`);
  }
  if (o.guestAgent) {
    args.push('-chardev', `socket,path=${o.agentSocket},server=on,wait=off,id=qga0`,
      '-device', 'virtio-serial-pci,id=vser0', '-device', 'virtserialport,chardev=qga0,name=org.qemu.guest_agent.0');
  }
  args.push(...(o.args ?? []));
  return args;
}

/** Boots the guest (running, not paused) and returns at once; `waitForSerial()` waits for its marker. */
export async function bootGuest(o: BootedGuestOptions): Promise<BootedGuest> {
  await mkdir(o.dir, { recursive: true });
  const qmpPath = join(o.dir, 'qmp.sock');
  const serialLog = join(o.dir, 'serial.log');
  const agentSocket = join(o.dir, 'qga.sock');
  await writeFile(serialLog, '');
  const proc = spawn('qemu-system-x86_64', guestQemuArgs({ ...o, qmpPath, serialLog, agentSocket }), { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr?.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const serial = () => readFile(serialLog, 'utf8').catch(() => '');
  // Ready for QMP once the socket exists.
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`qemu exited with ${proc.exitCode}: ${stderr}`);
    if (await stat(qmpPath).then(() => true, () => false)) break;
    if (Date.now() > deadline) { proc.kill('SIGKILL'); throw new Error(`qemu did not create its QMP socket: ${stderr}`); }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    qmpPath, serialLog, agentSocket, rootDeviceId: 'disk0', process: proc,
    get pid() { return proc.pid; },
    serial,
    async waitForSerial(text = o.image.marker, timeoutMs = 180_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        if ((await serial()).includes(text)) return;
        if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`guest exited before "${text}" appeared; serial tail: ${(await serial()).slice(-2000)} ${stderr}`);
        if (Date.now() > until) throw new Error(`"${text}" did not appear on the serial console within ${timeoutMs} ms; tail: ${(await serial()).slice(-2000)}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    },
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      await exited;
    },
  };
}
