// Test-only: start external servers (qemu-nbd, qemu-storage-daemon, our server in a child)
// and wait for their socket; generate a throwaway CA and server certificate with openssl.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFile, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';

export async function waitForPath(path: string, child: ChildProcess | null, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await stat(path).then(() => true, () => false)) return;
    if (child && child.exitCode !== null) throw new Error(`${child.spawnfile} exited with ${child.exitCode} before creating ${path}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${path} did not appear within ${timeoutMs} ms`);
}

/** Spawns `cmd` and waits until it has created `socketPath`; `onClose` registers the kill. */
export async function spawnWithSocket(cmd: string, args: string[], socketPath: string, onClose: (fn: () => unknown) => void): Promise<ChildProcess> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  onClose(() => new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  }));
  try {
    await waitForPath(socketPath, child);
    await waitConnectable(socketPath, child);
  } catch (e) {
    throw new Error(`${(e as Error).message}\n${stderr}`, { cause: e });
  }
  return child;
}

/** The socket file exists a moment before the server listens on it. */
async function waitConnectable(path: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(path, () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (child.exitCode !== null) throw new Error(`${child.spawnfile} exited with ${child.exitCode}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${path} never accepted a connection`);
}

export function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export interface TestPki {
  readonly dir: string;
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

/**
 * A CA and a server certificate for "localhost" in `dir`, named as QEMU's tls-creds-x509
 * expects (ca-cert.pem, server-cert.pem, server-key.pem). EC keys: quick to generate.
 */
export async function makeTestPki(dir: string): Promise<TestPki> {
  const p = (f: string) => join(dir, f);
  run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', p('ca-key.pem'),
    '-out', p('ca-cert.pem'), '-days', '2', '-subj', '/CN=cairn test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  run('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', p('server-key.pem'),
    '-out', p('server.csr'), '-subj', '/CN=localhost']);
  await writeFile(p('server.ext'), [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage=serverAuth',
    'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ].join('\n'));
  run('openssl', ['x509', '-req', '-in', p('server.csr'), '-CA', p('ca-cert.pem'), '-CAkey', p('ca-key.pem'), '-CAcreateserial',
    '-out', p('server-cert.pem'), '-days', '2', '-extfile', p('server.ext')]);
  return {
    dir,
    ca: await readFile(p('ca-cert.pem'), 'utf8'),
    cert: await readFile(p('server-cert.pem'), 'utf8'),
    key: await readFile(p('server-key.pem'), 'utf8'),
  };
}
