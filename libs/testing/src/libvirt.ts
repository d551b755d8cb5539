// Test fixture: a real libvirtd (qemu:///system, as root, no systemd) and uniquely named TCG
// domains that boot the test guest of guest.ts. `ensureLibvirtd` starts virtlogd, virtlockd
// and libvirtd only when nothing answers yet (they keep running for the other tests), libvirtd
// with `--listen` and its TLS listener on the test PKI (libvirt-tls.ts);
// `defineGuestDomain` returns a domain the caller must `remove()` in afterAll.
// Needs the Debian packages libvirt-daemon-system and libvirt-clients.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { GuestImage } from './guest.ts';
import { LIBVIRTD_TEST_CONFIG, LIBVIRTD_TLS_PORT, writeLibvirtdTestConfig } from './libvirt-tls.ts';

const run = promisify(execFile);
export const LIBVIRT_URI = 'qemu:///system';

export function virsh(...args: string[]): Promise<string> {
  return run('virsh', ['-q', '-c', LIBVIRT_URI, ...args], { env: { ...process.env, LC_ALL: 'C' }, maxBuffer: 64 << 20 }).then((r) => r.stdout);
}

const answers = () => virsh('uri').then(() => true, () => false);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect({ host: '127.0.0.1', port });
    s.setTimeout(5000);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('timeout', () => { s.destroy(); resolve(false); });
    s.once('error', () => resolve(false));
  });
}

async function waitUntil(what: string, ok: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!await ok()) {
    if (Date.now() > until) throw new Error(what);
    await sleep(250);
  }
}

/** Starts virtlogd, virtlockd and `libvirtd -d --listen --config LIBVIRTD_TEST_CONFIG`. */
async function startDaemons(timeoutMs: number): Promise<void> {
  const config = await writeLibvirtdTestConfig();
  for (const d of ['virtlogd', 'virtlockd']) await run(d, ['-d']).catch(() => undefined);
  await run('libvirtd', ['-d', '--listen', '--config', config]).catch(() => undefined);
  await waitUntil('libvirtd did not answer on qemu:///system (is libvirt-daemon-system installed, and are we root?)', answers, timeoutMs);
  await waitUntil(`libvirtd answers but does not listen with TLS on 127.0.0.1:${LIBVIRTD_TLS_PORT} (see ${config})`, () => tcpOpen(LIBVIRTD_TLS_PORT), timeoutMs);
}

const PID_FILE = '/run/libvirtd.pid';
/**
 * Held (a directory, made atomically) while one test process starts or restarts the shared
 * libvirtd, so that test files running side by side neither make the PKI twice nor restart
 * each other's daemon.
 */
const DAEMON_LOCK = '/run/cairn-libvirtd-start.lock';

/** Runs `fn` holding DAEMON_LOCK unless `done()` holds first (another process did the work). */
async function underDaemonLock(done: () => Promise<boolean>, fn: () => Promise<void>): Promise<void> {
  for (;;) {
    try { await mkdir(DAEMON_LOCK); break; } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const held = await stat(DAEMON_LOCK).then((st) => Date.now() - st.mtimeMs, () => 0);
      if (held > 180_000) { await rm(DAEMON_LOCK, { recursive: true, force: true }); continue; }
      await sleep(500);
      if (await done()) return;
    }
  }
  try {
    if (!await done()) await fn();
  } finally {
    await rm(DAEMON_LOCK, { recursive: true, force: true });
  }
}

async function libvirtdPid(): Promise<number | undefined> {
  const pid = Number((await readFile(PID_FILE, 'utf8').catch(() => '')).trim());
  if (!pid) return undefined;
  const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return cmd.split('\0')[0]?.endsWith('libvirtd') ? pid : undefined;
}

/**
 * A libvirtd someone started without `--listen`: restarted with it. SIGTERM, wait for the
 * process to end, start it again as startDaemons does. Running domains keep running (libvirtd
 * reconnects to their QEMU monitors); a virsh call in flight meanwhile may fail once.
 */
async function restartListening(timeoutMs: number): Promise<void> {
  const pid = await libvirtdPid();
  console.warn(`[cairn testing] libvirtd (pid ${pid ?? 'unknown'}) runs without its TLS listener (started without --listen by someone else): restarting it with --listen --config ${LIBVIRTD_TEST_CONFIG}; running domains keep running`);
  if (pid) {
    process.kill(pid, 'SIGTERM');
    await waitUntil(`libvirtd (pid ${pid}) did not exit within ${timeoutMs} ms of SIGTERM`,
      async () => !(await stat(`/proc/${pid}`).then(() => true, () => false)), timeoutMs);
  }
  await startDaemons(timeoutMs);
}

export interface EnsureLibvirtdOptions {
  timeoutMs?: number;
  /**
   * Also make sure libvirtd's own TLS listener is up (127.0.0.1:LIBVIRTD_TLS_PORT, the test
   * PKI): a running daemon without it is restarted with `--listen`.
   */
  tls?: boolean;
}

/**
 * Makes sure qemu:///system answers. Daemons it starts listen with TLS as well (the test PKI of
 * libvirt-tls.ts, `libvirtd --listen --config LIBVIRTD_TEST_CONFIG`), so on a fresh machine the
 * real daemon serves qemu+tls:// for every test.
 */
export async function ensureLibvirtd(o: EnsureLibvirtdOptions = {}): Promise<void> {
  const timeoutMs = o.timeoutMs ?? 60_000;
  const listening = () => tcpOpen(LIBVIRTD_TLS_PORT);
  if (!await answers()) {
    // Another test process may be starting them right now: it holds the lock, and this one
    // goes on once libvirtd answers and listens.
    await underDaemonLock(async () => await answers() && await listening(), () => startDaemons(timeoutMs));
    return;
  }
  if (o.tls && !await listening()) await underDaemonLock(listening, () => restartListening(timeoutMs));
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
