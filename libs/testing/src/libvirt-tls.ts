// Test PKI for libvirt over TLS (made with openssl, never committed) and the qemu+tls://
// fixture. One CA (kept with its key in TEST_PKI_DIR) signs:
// - the NBD server certificate of pull-mode backups with <server tls='yes'>, put in QEMU's
//   default directory /etc/pki/qemu (libvirt's default_tls_x509_cert_dir, which
//   backup_tls_x509_cert_dir falls back to): no qemu.conf change;
// - libvirtd's own TLS listener certificate (CN localhost, SAN localhost, 127.0.0.1 and the host
//   name), named with the CA and the allowed client DN in LIBVIRTD_TEST_CONFIG, the file
//   ensureLibvirtd starts `libvirtd --listen --config` with (libvirt.ts);
// - a client certificate (CN cairn-test-client) in a directory that is both libvirt's
//   `pkipath` (cacert.pem, clientcert.pem, clientkey.pem) and Cairn's NBD TLS directory.
// Files are written only where missing: a machine with its own /etc/pki/qemu keeps it, and
// `libvirtTlsFixture` then says why a TLS test cannot run there.
import { execFile } from 'node:child_process';
import { chmod, chown, copyFile, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Where the test CA (with its key) and the client directory live. */
export const TEST_PKI_DIR = '/var/lib/cairn-test-pki';
const CA_CN = 'Cairn test CA (libvirt TLS)';

const QEMU_PKI = '/etc/pki/qemu';

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

/** The port of libvirtd's TLS listener in LIBVIRTD_TEST_CONFIG (libvirt's default). */
export const LIBVIRTD_TLS_PORT = 16514;
/** The libvirtd configuration file ensureLibvirtd starts the daemon with. */
export const LIBVIRTD_TEST_CONFIG = join(TEST_PKI_DIR, 'libvirtd.conf');
const CLIENT_DN = 'CN=cairn-test-client';
/** Keys LIBVIRTD_TEST_CONFIG sets: the machine's own libvirtd.conf settings of these are dropped. */
const TLS_KEYS = ['listen_tls', 'listen_tcp', 'tls_port', 'listen_addr', 'auth_tls', 'key_file', 'cert_file', 'ca_file', 'crl_file', 'tls_allowed_dn_list', 'tls_no_verify_certificate'];

/**
 * Writes LIBVIRTD_TEST_CONFIG: the machine's /etc/libvirt/libvirtd.conf (its one-line settings,
 * so nothing else changes) and a TLS listener on 127.0.0.1:LIBVIRTD_TLS_PORT with the test PKI,
 * no plain TCP, auth_tls none and only the test client's certificate allowed.
 */
export async function writeLibvirtdTestConfig(system = '/etc/libvirt/libvirtd.conf'): Promise<string> {
  await ensureTestPki();
  const kept = (await readFile(system, 'utf8').catch(() => '')).split('\n')
    .filter((l) => !TLS_KEYS.some((k) => new RegExp(`^\\s*${k}\\s*=`).test(l)));
  const q = (v: string) => JSON.stringify(v);
  await writeFile(LIBVIRTD_TEST_CONFIG, [
    ...kept,
    '# Cairn tests (libs/testing/src/libvirt-tls.ts): libvirtd\'s own TLS listener with the test PKI.',
    'listen_tls = 1',
    'listen_tcp = 0',
    `tls_port = ${q(String(LIBVIRTD_TLS_PORT))}`,
    `listen_addr = ${q('127.0.0.1')}`,
    `auth_tls = ${q('none')}`,
    `ca_file = ${q(join(TEST_PKI_DIR, 'ca-cert.pem'))}`,
    `cert_file = ${q(join(TEST_PKI_DIR, 'server-cert.pem'))}`,
    `key_file = ${q(join(TEST_PKI_DIR, 'server-key.pem'))}`,
    `tls_allowed_dn_list = [${q(CLIENT_DN)}]`,
    '',
  ].join('\n'), { mode: 0o600 });
  return LIBVIRTD_TEST_CONFIG;
}

export interface LibvirtTlsFixture {
  /** qemu+tls://localhost:<port>/system?pkipath=<clientDir>, served by libvirtd itself. */
  readonly uri: string;
  /** cacert.pem, clientcert.pem, clientkey.pem (libvirt's names), signed by the test CA. */
  readonly clientDir: string;
  readonly caFile: string;
}

/** The qemu+tls:// URI of the test client to libvirtd's listener. */
export const libvirtTlsUri = (port = LIBVIRTD_TLS_PORT) => `qemu+tls://localhost:${port}/system?pkipath=${join(TEST_PKI_DIR, 'client')}`;

/**
 * qemu+tls:// to libvirtd's own TLS listener (call `ensureLibvirtd({ tls: true })` first: it
 * makes sure the daemon listens), or the reason it cannot be had here (another PKI in
 * /etc/pki/qemu).
 */
export async function libvirtTlsFixture(): Promise<LibvirtTlsFixture | { skip: string }> {
  await ensureTestPki();
  const ours = (await readFile(join(TEST_PKI_DIR, 'ca-cert.pem'), 'utf8')).trim();
  const f = join(QEMU_PKI, 'ca-cert.pem');
  if ((await readFile(f, 'utf8')).trim() !== ours) return { skip: `${f} is another CA than the test one (${TEST_PKI_DIR}); this machine's QEMU PKI is left alone` };
  const clientDir = join(TEST_PKI_DIR, 'client');
  const uri = libvirtTlsUri();
  try {
    await run('virsh', ['-q', '-c', uri, 'uri'], { env: { ...process.env, LC_ALL: 'C' }, timeout: 30_000 });
  } catch (e) {
    throw new Error(`virsh does not connect to libvirtd's TLS listener over ${uri} (was libvirtd started by ensureLibvirtd({ tls: true })?): ${String((e as { stderr?: string }).stderr ?? e).trim()}`, { cause: e });
  }
  return { uri, clientDir, caFile: join(clientDir, 'cacert.pem') };
}
