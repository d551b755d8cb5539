// TLS material for a hypervisor node's NBD server (QEMU's tls-creds-x509 directory), issued by
// the site's CA: data movers on other nodes then read snapshot views with their own site
// identity certificate (client certificates required), and verify the server with the site CA.
import { chmod, copyFile, mkdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { issueCertificate } from './pki.ts';

export interface NbdServerTls {
  readonly dir: string;
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

/**
 * Writes `ca-cert.pem` (the site CA), `server-cert.pem` (names `hosts`, the addresses data
 * movers connect to) and `server-key.pem` (0600) into `dir`, named as QEMU expects. Needs the
 * site CA's key (`ca-key.pem` in the site's security directory `securityDir`).
 */
export async function issueNbdServerTls(securityDir: string, dir: string, o: { readonly site: string; readonly node: string; readonly hosts: readonly string[]; readonly days?: number }): Promise<NbdServerTls> {
  if (o.hosts.length === 0) throw new Error('the NBD server certificate needs at least one host name or address data movers connect to');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const ca = { cert: join(securityDir, 'ca.pem'), key: join(securityDir, 'ca-key.pem') };
  const issued = await issueCertificate(ca, dir, {
    commonName: `nbd.${o.node}.${o.site}`, kind: 'server', hosts: o.hosts, fileName: 'server-cert', ...(o.days ? { days: o.days } : {}),
  });
  const keyFile = join(dir, 'server-key.pem');
  await rename(issued.key, keyFile);
  await chmod(keyFile, 0o600);
  const caFile = join(dir, 'ca-cert.pem');
  await copyFile(ca.cert, caFile);
  return { dir, caFile, certFile: issued.cert, keyFile };
}
