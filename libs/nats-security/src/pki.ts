// A site's certificate authority and the certificates it signs, made with the openssl CLI
// (Debian's openssl, installed by tools/ci/install-debian-packages.sh). Node's crypto can
// parse certificates (X509Certificate) but has no API to create or sign one, and a
// hand-written DER encoder is exactly the code a security review should not have to read.
// Keys are ECDSA P-256; private keys are written 0600 and never leave the site directory.
import { execFile } from 'node:child_process';
import { chmod, readFile, rm, writeFile } from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface CertificateFiles {
  readonly cert: string;
  readonly key: string;
}

export interface CertificateAuthority extends CertificateFiles {
  /** Subject of the CA certificate, e.g. `CN=Cairn site-a CA`. */
  readonly subject: string;
}

async function openssl(args: string[], cwd?: string): Promise<string> {
  try {
    const { stdout } = await run('openssl', args, { cwd, maxBuffer: 1024 * 1024 });
    return stdout;
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === 'ENOENT') throw new Error('openssl not found: install the Debian package openssl (tools/ci/install-debian-packages.sh)', { cause: e });
    throw new Error(`openssl ${args[0]} failed: ${err.stderr?.trim() || err.message}`, { cause: e });
  }
}

async function newKey(path: string): Promise<void> {
  await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path]);
  await chmod(path, 0o600);
}

/** Creates a CA (`ca.pem`, `ca-key.pem`) in `dir`, valid for `days` (default 10 years). */
export async function createCertificateAuthority(dir: string, name: string, days = 3650): Promise<CertificateAuthority> {
  const key = join(dir, 'ca-key.pem');
  const cert = join(dir, 'ca.pem');
  await newKey(key);
  await openssl([
    'req', '-x509', '-new', '-key', key, '-out', cert, '-days', String(days), '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE,pathlen:0', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  return { cert, key, subject: `CN=${name}` };
}

export interface IssueOptions {
  /** Common name, e.g. `nats.site-a` or the identity `data-mover@site-a`. */
  readonly commonName: string;
  readonly kind: 'server' | 'client';
  /** Host names and IP addresses the server is reached at (server certificates). */
  readonly hosts?: readonly string[];
  readonly days?: number;
  /** Base name of the files: `<name>.pem`, `<name>-key.pem`. */
  readonly fileName: string;
}

const IP = /^(\d{1,3}\.){3}\d{1,3}$|:/;

/** Issues a certificate signed by `ca` into `dir`. */
export async function issueCertificate(ca: CertificateFiles, dir: string, o: IssueOptions): Promise<CertificateFiles> {
  const key = join(dir, `${o.fileName}-key.pem`);
  const cert = join(dir, `${o.fileName}.pem`);
  const csr = join(dir, `${o.fileName}.csr`);
  const ext = join(dir, `${o.fileName}.ext`);
  await newKey(key);
  await openssl(['req', '-new', '-key', key, '-out', csr, '-subj', `/CN=${o.commonName}`]);
  const lines = [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature',
    `extendedKeyUsage=${o.kind === 'server' ? 'serverAuth' : 'clientAuth'}`,
  ];
  if (o.kind === 'server') {
    const hosts = o.hosts?.length ? o.hosts : ['localhost', '127.0.0.1'];
    lines.push(`subjectAltName=${hosts.map((h) => (IP.test(h) ? `IP:${h}` : `DNS:${h}`)).join(',')}`);
  }
  await writeFile(ext, lines.join('\n') + '\n');
  await openssl([
    // The serial file goes beside the new certificate, never into an operator's CA directory.
    'x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAserial', join(dir, 'ca.srl'), '-CAcreateserial', '-out', cert,
    '-days', String(o.days ?? 825), '-extfile', ext,
  ]);
  // The CSR and extension file served their purpose; the serial file stays beside the CA.
  await rm(csr, { force: true });
  await rm(ext, { force: true });
  return { cert, key };
}

/** Subject and expiry of a certificate (for `cairn site init` output and checks). */
export async function describeCertificate(path: string): Promise<{ subject: string; issuer: string; validTo: string }> {
  const x = new X509Certificate(await readFile(path));
  return { subject: x.subject, issuer: x.issuer, validTo: x.validTo };
}
