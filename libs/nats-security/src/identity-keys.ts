// The public nkeys of a site's identities, for checking who signed an event (libs/eventlog
// provenance.ts): every identity in site.json, `admin` included (it signs the operator's own
// events, such as the signing cut-over and the local operator's bootstrap).
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { SiteFile } from './site-security.ts';

/** Public key -> identity name, for every identity of the site or hub in `dir`. */
export async function identityPublicKeys(dir: string): Promise<Map<string, string>> {
  const file = JSON.parse(await readFile(join(resolve(dir), 'site.json'), 'utf8')) as SiteFile;
  return new Map(Object.entries(file.identities).map(([id, { nkey }]) => [nkey, id]));
}
