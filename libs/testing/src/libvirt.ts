// Test fixture: a real libvirtd (qemu:///system, as root, no systemd) and uniquely named TCG
// domains that boot the test guest of guest.ts. `ensureLibvirtd` starts virtlogd, virtlockd
// and libvirtd only when nothing answers yet (they keep running for the other tests);
// `defineGuestDomain` returns a domain the caller must `remove()` in afterAll.
// Needs the Debian packages libvirt-daemon-system and libvirt-clients.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { GuestImage } from './guest.ts';

const run = promisify(execFile);
export const LIBVIRT_URI = 'qemu:///system';

export function virsh(...args: string[]): Promise<string> {
  return run('virsh', ['-q', '-c', LIBVIRT_URI, ...args], { env: { ...process.env, LC_ALL: 'C' }, maxBuffer: 64 << 20 }).then((r) => r.stdout);
}

/** Makes sure qemu:///system answers, starting the daemons if needed. */
export async function ensureLibvirtd(timeoutMs = 60_000): Promise<void> {
  if (await virsh('uri').then(() => true, () => false)) return;
  for (const d of ['virtlogd', 'virtlockd', 'libvirtd']) await run(d, ['-d']).catch(() => undefined);
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await virsh('uri').then(() => true, () => false)) return;
    if (Date.now() > until) throw new Error('libvirtd did not answer on qemu:///system (is libvirt-daemon-system installed, and are we root?)');
    await new Promise((r) => setTimeout(r, 250));
  }
}

export interface GuestDomainOptions {
  image: GuestImage;
  /** Directory for the serial log (handed to QEMU's user). */
  dir: string;
  /** Name prefix; a random suffix makes it unique. */
  prefix?: string;
  /** More disks after the root disk (`vdb`, `vdc`…). */
  extraDisks?: ReadonlyArray<{ file: string; format: 'raw' | 'qcow2' }>;
  /** A virtio-serial channel for the QEMU guest agent. */
  guestAgent?: boolean;
  memoryMiB?: number;
  /** Start it (default true). */
  start?: boolean;
}

export interface GuestDomain {
  readonly name: string;
  readonly serialLog: string;
  readonly xml: string;
  /** Resolves once `text` (default the image's marker) appears on the serial console. */
  waitForSerial(text?: string, timeoutMs?: number): Promise<void>;
  serial(): Promise<string>;
  /** Destroys and undefines it (with its checkpoints' metadata); never throws. */
  remove(): Promise<void>;
}

/** Domain XML that boots the test guest with the host kernel, like guestQemuArgs. */
export function guestDomainXml(o: GuestDomainOptions & { name: string; serialLog: string }): string {
  const disks = [{ file: o.image.disk, format: o.image.format }, ...(o.extraDisks ?? [])].map((d, i) =>
    `    <disk type='file' device='disk'><driver name='qemu' type='${d.format}'/><source file='${d.file}'/><target dev='vd${String.fromCharCode(97 + i)}' bus='virtio'/></disk>`);
  return `<domain type='qemu'>
  <name>${o.name}</name>
  <memory unit='MiB'>${o.memoryMiB ?? 512}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type>
    <kernel>${o.image.kernel}</kernel><initrd>${o.image.initrd}</initrd><cmdline>${o.image.append}</cmdline></os>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices>
${disks.join('\n')}
    <interface type='user'><model type='virtio'/></interface>
    <serial type='file'><source path='${o.serialLog}'/></serial>
${o.guestAgent ? "    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>\n" : ''}    <memballoon model='none'/>
  </devices>
</domain>
`;
}

/** QEMU runs as libvirt-qemu: give it the test's directory and files. */
async function handToQemu(paths: readonly string[]): Promise<void> {
  const s = await stat('/var/lib/libvirt/qemu').catch(() => undefined);
  for (const p of paths) {
    if (s) await chown(p, s.uid, s.gid).catch(() => undefined);
    await chmod(p, (await stat(p)).isDirectory() ? 0o777 : 0o666).catch(() => undefined);
  }
}

export async function defineGuestDomain(o: GuestDomainOptions): Promise<GuestDomain> {
  await ensureLibvirtd();
  await mkdir(o.dir, { recursive: true });
  const name = `${o.prefix ?? 'cairn-test'}-${randomBytes(4).toString('hex')}`;
  const serialLog = join(o.dir, `${name}.serial.log`);
  await writeFile(serialLog, '');
  await handToQemu([o.dir, serialLog]);
  const xml = guestDomainXml({ ...o, name, serialLog });
  const file = join(o.dir, `${name}.xml`);
  await writeFile(file, xml);
  await virsh('define', file);
  const serial = () => readFile(serialLog, 'utf8').catch(() => '');
  const domain: GuestDomain = {
    name, serialLog, xml, serial,
    async waitForSerial(text = o.image.marker, timeoutMs = 180_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        if ((await serial()).includes(text)) return;
        if (Date.now() > until) throw new Error(`"${text}" did not appear on ${name}'s console within ${timeoutMs} ms; tail: ${(await serial()).slice(-2000)}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    },
    async remove() {
      await virsh('destroy', name).catch(() => undefined);
      await virsh('undefine', name, '--checkpoints-metadata', '--nvram').catch(() => virsh('undefine', name).catch(() => undefined));
    },
  };
  if (o.start !== false) {
    try { await virsh('start', name); } catch (e) { await domain.remove(); throw e; }
  }
  return domain;
}
