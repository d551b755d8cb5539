// The site's TLS certificates for the expiry watch: every PEM certificate under the security
// directory (`cairn up --secure`, `cairn run --security-dir`: ca.pem, server.pem, identities/*.pem,
// a leaf's leaf.pem and hub-ca.pem), read with node:crypto's X509Certificate. Private keys
// (`*-key.pem`) are never opened. A file that is not a certificate is reported, not fatal.
import { X509Certificate } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';

export interface SiteCertificate {
  /** The file, relative to the security directory (e.g. `identities/scheduler.pem`). */
  readonly file: string;
  /** Its subject, one line (e.g. `CN=nats.site-a`). */
  readonly subject: string;
  /** When it stops being valid (ISO 8601). */
  readonly validTo: string;
  /** An id for its expiry stream: the file with `/` and `.` as `_`. */
  readonly id: string;
}

export const certificateIdOf = (file: string) => file.replace(/\.pem$/, '').replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 180);

export async function readSiteCertificates(dir: string, onUnreadable: (file: string, reason: string) => void = () => undefined): Promise<SiteCertificate[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  const out: SiteCertificate[] = [];
  for (const e of entries) {
    if (!e.isFile() || !e.name.endsWith('.pem') || e.name.endsWith('-key.pem')) continue;
    const path = join(e.parentPath, e.name);
    const file = relative(dir, path).split(sep).join('/');
    try {
      const pem = await readFile(path, 'utf8');
      if (!pem.includes('BEGIN CERTIFICATE')) continue;
      const x = new X509Certificate(pem);
      out.push({ file, subject: x.subject.replace(/\n/g, ', '), validTo: new Date(x.validTo).toISOString(), id: certificateIdOf(file) });
    } catch (err) {
      onUnreadable(file, (err as Error).message);
    }
  }
  return out.sort((a, b) => a.file.localeCompare(b.file));
}
