// Test fixture: an OpenSSH server of the test's own on a free loopback port (generated host
// and client keys, key login only, this machine standing in for a remote libvirt host), so a
// `qemu+ssh://root@127.0.0.1:<port>/system?keyfile=…` URI reaches the local
// libvirtd through a real SSH hop. Needs the Debian package openssh-server (sshd is not
// started as a service: the fixture runs its own and stops it).
import { execFile, spawn } from 'node:child_process';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TestSshd {
  readonly port: number;
  /** The client's private key (libvirt's `keyfile`). */
  readonly keyfile: string;
  /** A known_hosts file holding the server's host key for 127.0.0.1:<port>. */
  readonly knownHosts: string;
  /** `qemu+ssh://root@127.0.0.1:<port>/system?keyfile=…&no_verify=1` (libvirt's ssh transport takes no known_hosts file). */
  readonly libvirtUri: string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

export async function startTestSshd(dir: string): Promise<TestSshd> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const hostKey = join(dir, 'host_ed25519');
  const keyfile = join(dir, 'client_ed25519');
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', keyfile]);
  const authorized = join(dir, 'authorized_keys');
  await writeFile(authorized, await readFile(`${keyfile}.pub`), { mode: 0o600 });
  const port = await freePort();
  const knownHosts = join(dir, 'known_hosts');
  await writeFile(knownHosts, `[127.0.0.1]:${port} ${(await readFile(`${hostKey}.pub`, 'utf8')).trim()}\n`);
  const config = join(dir, 'sshd_config');
  await writeFile(config, [
    `Port ${port}`, 'ListenAddress 127.0.0.1', `HostKey ${hostKey}`, `PidFile ${join(dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${authorized}`, 'PermitRootLogin prohibit-password', 'PasswordAuthentication no',
    'KbdInteractiveAuthentication no', 'UsePAM no', 'StrictModes no', 'AllowStreamLocalForwarding yes',
    'LogLevel ERROR', '',
  ].join('\n'));
  await mkdir('/run/sshd', { recursive: true, mode: 0o755 }); // privilege separation directory
  const sshd = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  sshd.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
  const exited = new Promise<void>((r) => sshd.once('exit', () => r()));
  const base = ['-o', 'BatchMode=yes', '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'StrictHostKeyChecking=yes', '-i', keyfile, '-p', String(port), 'root@127.0.0.1'];
  const until = Date.now() + 30_000;
  for (;;) {
    if (sshd.exitCode !== null) throw new Error(`sshd exited: ${stderr}`);
    if (await run('ssh', [...base, 'true']).then(() => true, () => false)) break;
    if (Date.now() > until) { sshd.kill('SIGKILL'); throw new Error(`sshd on 127.0.0.1:${port} did not accept the client key: ${stderr}`); }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    port, keyfile, knownHosts,
    libvirtUri: `qemu+ssh://root@127.0.0.1:${port}/system?keyfile=${keyfile}&no_verify=1`,
    async stop() {
      if (sshd.exitCode === null && sshd.signalCode === null) { sshd.kill('SIGTERM'); await exited; }
    },
  };
}
