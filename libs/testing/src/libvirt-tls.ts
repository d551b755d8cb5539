// Test fixture: libvirt over TLS with a test PKI (made with openssl, never committed).
// One CA (kept with its key in TEST_PKI_DIR) signs:
// - the NBD server certificate of pull-mode backups with <server tls='yes'>, put in QEMU's
//   default directory /etc/pki/qemu (libvirt's default_tls_x509_cert_dir, which
//   backup_tls_x509_cert_dir falls back to): no qemu.conf change, no libvirtd restart;
// - the server certificate of the qemu+tls:// listener (CN and SAN localhost);
// - a client certificate (CN cairn-test-client) in a directory that is both libvirt's
//   `pkipath` (cacert.pem, clientcert.pem, clientkey.pem) and Cairn's NBD TLS directory.
// The qemu+tls:// listener: libvirtd is shared by every test on the machine and Debian 12's
// libvirt has no virtproxyd, and a second privileged libvirtd cannot run beside the first (one
// QEMU driver state per host), so rather than restarting the shared daemon with --listen,
// `startLibvirtTlsListener` serves libvirt's TLS transport itself: a TLS server (client
// certificate required and verified against the CA, as libvirtd's auth_tls=none does) that
// sends libvirt's one-byte "certificate accepted" answer and then carries the RPC stream to
// libvirtd's unix socket. The client side (virsh, Cairn) is libvirt's own qemu+tls:// code.
// Files are written only where missing: a machine with its own /etc/pki/qemu keeps it, and
// `libvirtTlsFixture` then says why a TLS test cannot run there.
import { execFile } from 'node:child_process';
import { chmod, chown, copyFile, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { connect as netConnect } from 'node:net';
import { hostname } from 'node:os';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Where the test CA (with its key) and the client directory live. */
export const TEST_PKI_DIR = '/var/lib/cairn-test-pki';
const CA_CN = 'Cairn test CA (libvirt TLS)';

const QEMU_PKI = '/etc/pki/qemu';
const LIBVIRT_SOCK = '/var/run/libvirt/libvirt-sock';

const exists = (p: string) => stat(p).then(() => true, () => false);

async function openssl(args: readonly string[], cwd: string): Promise<void> {
  await run('openssl', [...args], { cwd });
}

/** A self-signed CA in `dir` (ca-cert.pem, ca-key.pem) unless one is there. */
export async function makeCa(dir: string, cn = CA_CN): Promise<{ cert: string; key: string }> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const cert = join(dir, 'ca-cert.pem');
  const key = join(dir, 'ca-key.pem');
  if (!await exists(cert) || !await exists(key)) {
    await openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '3650', '-keyout', key, '-out', cert,
      '-subj', `/CN=${cn}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  }
  return { cert, key };
}

/** A certificate signed by the CA in `caDir`: `<name>-cert.pem` and `<name>-key.pem` in `dir`. */
export async function issueCert(caDir: string, dir: string, o: { name: string; cn: string; server: boolean }): Promise<{ cert: string; key: string }> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const cert = join(dir, `${o.name}-cert.pem`);
  const key = join(dir, `${o.name}-key.pem`);
  if (await exists(cert) && await exists(key)) return { cert, key };
  const csr = join(dir, `${o.name}.csr`);
  const ext = join(dir, `${o.name}.ext`);
  await openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-keyout', key, '-out', csr, '-subj', `/CN=${o.cn}`], dir);
  const host = hostname();
  await writeFile(ext, [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    // libvirtd's certificate also serves as a client one (migration): both purposes.
    `extendedKeyUsage=${o.server ? 'serverAuth,clientAuth' : 'clientAuth'}`,
    ...(o.server ? [`subjectAltName=DNS:localhost,IP:127.0.0.1${host && host !== 'localhost' ? `,DNS:${host}` : ''}`] : []),
  ].join('\n') + '\n');
  await openssl(['x509', '-req', '-sha256', '-days', '3650', '-in', csr, '-CA', join(caDir, 'ca-cert.pem'), '-CAkey', join(caDir, 'ca-key.pem'),
    '-CAcreateserial', '-out', cert, '-extfile', ext], dir);
  await chmod(key, 0o600);
  return { cert, key };
}

async function place(from: string, to: string, mode: number): Promise<void> {
  if (await exists(to)) return;
  await mkdir(join(to, '..'), { recursive: true });
  await copyFile(from, to);
  await chmod(to, mode);
}

/** Makes the test PKI and puts QEMU's NBD server files where libvirt looks (only where missing). */
export async function ensureTestPki(): Promise<void> {
  const ca = await makeCa(TEST_PKI_DIR);
  const server = await issueCert(TEST_PKI_DIR, TEST_PKI_DIR, { name: 'server', cn: 'localhost', server: true });
  const client = await issueCert(TEST_PKI_DIR, TEST_PKI_DIR, { name: 'client', cn: 'cairn-test-client', server: false });
  await place(ca.cert, join(QEMU_PKI, 'ca-cert.pem'), 0o644);
  await place(server.cert, join(QEMU_PKI, 'server-cert.pem'), 0o644);
  const qemuKey = join(QEMU_PKI, 'server-key.pem');
  if (!await exists(qemuKey)) {
    await place(server.key, qemuKey, 0o640);
    // QEMU (libvirt-qemu on Debian) reads the key itself.
    const s = await stat('/var/lib/libvirt/qemu').catch(() => undefined);
    if (s) await chown(qemuKey, 0, s.gid).catch(() => undefined);
  }
  // The client directory, in libvirt's pkipath naming.
  const clientDir = join(TEST_PKI_DIR, 'client');
  await place(ca.cert, join(clientDir, 'cacert.pem'), 0o644);
  await place(client.cert, join(clientDir, 'clientcert.pem'), 0o644);
  await place(client.key, join(clientDir, 'clientkey.pem'), 0o600);
}

export interface LibvirtTlsFixture {
  /** qemu+tls://localhost:<port>/system?pkipath=<clientDir> */
  readonly uri: string;
  /** cacert.pem, clientcert.pem, clientkey.pem (libvirt's names), signed by the test CA. */
  readonly clientDir: string;
  readonly caFile: string;
  close(): Promise<void>;
}

/**
 * The TLS listener for libvirtd's unix socket (see the head of this file) on a free port of
 * 127.0.0.1, with the test PKI.
 */
export async function startLibvirtTlsListener(): Promise<{ port: number; server: TlsServer }> {
  const [ca, cert, key] = await Promise.all(['ca-cert.pem', 'server-cert.pem', 'server-key.pem'].map((f) => readFile(join(TEST_PKI_DIR, f))));
  const server = createTlsServer({ ca, cert, key, requestCert: true, rejectUnauthorized: true,
    // TLS 1.2: OpenSSL's TLS 1.3 sends session tickets after the handshake as a record of their
    // own, and libvirt's client takes the first readable record for its confirmation byte.
    minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' }, (tls) => {
    const up = netConnect(LIBVIRT_SOCK);
    up.once('connect', () => {
      // libvirt's client waits for this byte: its certificate passed the server's checks.
      tls.write(Buffer.from([1]));
      tls.pipe(up).pipe(tls);
    });
    up.on('error', () => tls.destroy());
    tls.on('error', () => up.destroy());
    tls.on('close', () => up.destroy());
  });
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(0, '127.0.0.1', () => resolve()); });
  return { port: (server.address() as { port: number }).port, server };
}

/**
 * qemu+tls:// to the shared libvirtd through startLibvirtTlsListener, or the reason it cannot
 * be had here (another PKI in /etc/pki/qemu).
 */
export async function libvirtTlsFixture(): Promise<LibvirtTlsFixture | { skip: string }> {
  await ensureTestPki();
  const ours = (await readFile(join(TEST_PKI_DIR, 'ca-cert.pem'), 'utf8')).trim();
  const f = join(QEMU_PKI, 'ca-cert.pem');
  if ((await readFile(f, 'utf8')).trim() !== ours) return { skip: `${f} is another CA than the test one (${TEST_PKI_DIR}); this machine's QEMU PKI is left alone` };
  const { port, server } = await startLibvirtTlsListener();
  const clientDir = join(TEST_PKI_DIR, 'client');
  const uri = `qemu+tls://localhost:${port}/system?pkipath=${clientDir}`;
  const close = () => new Promise<void>((resolve) => { server.close(() => resolve()); });
  try {
    await run('virsh', ['-q', '-c', uri, 'uri'], { env: { ...process.env, LC_ALL: 'C' }, timeout: 30_000 });
  } catch (e) {
    await close();
    throw new Error(`virsh does not connect over ${uri}: ${String((e as { stderr?: string }).stderr ?? e).trim()}`, { cause: e });
  }
  return { uri, clientDir, caFile: join(clientDir, 'cacert.pem'), close };
}
