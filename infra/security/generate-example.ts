// Regenerates the example configs in this directory: `npx tsx infra/security/generate-example.ts`.
// The material is made in a temp directory and thrown away: only public nkeys, permissions and
// file paths (rewritten to /etc/cairn/security) are kept here — no private key, no nkey seed.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { addLeafSite, hubPermissions, initSiteSecurity, leafPermissions, sitePermissions } from '@cairn/nats-security';

const here = dirname(fileURLToPath(import.meta.url));
const tmp = await mkdtemp(join(tmpdir(), 'cairn-security-example-'));
try {
  for (const [site, peers] of [['site-a', ['site-b']], ['site-b', ['site-a']]] as const) {
    const security = await initSiteSecurity({ dir: join(tmp, site), site, peers: [...peers], hosts: [`nats.${site}.example`, 'localhost', '127.0.0.1'] });
    const conf = (await readFile(security.configFile, 'utf8')).replaceAll(security.dir, `/etc/cairn/security/${site}`);
    await writeFile(join(here, `nats-security.${site}.conf`), conf);
    await writeFile(join(here, `permissions.${site}.json`), JSON.stringify(sitePermissions(site, { peers: [...peers] }), null, 2) + '\n');
  }
  // The hub (`cairn hub init` + `cairn hub add-site` for both sites): its identities and the
  // sites' leaf users, each password bcrypt-hashed (the passwords were random and are gone).
  for (const [site, peers] of [['site-a', ['site-b']], ['site-b', ['site-a']]] as const) {
    await addLeafSite({ dir: join(tmp, 'hub'), site, peers: [...peers], out: join(tmp, `bundle-${site}`), hosts: ['hub.example', 'localhost', '127.0.0.1'] });
  }
  const hubDir = join(tmp, 'hub');
  await writeFile(join(here, 'nats-security.hub.conf'), (await readFile(join(hubDir, 'nats-security.conf'), 'utf8')).replaceAll(hubDir, '/etc/cairn/security/hub'));
  await writeFile(join(here, 'permissions.hub.json'), JSON.stringify({
    ...hubPermissions(['site-a', 'site-b']),
    'leaf-site-a': leafPermissions('site-a', { peers: ['site-b'] }),
    'leaf-site-b': leafPermissions('site-b', { peers: ['site-a'] }),
  }, null, 2) + '\n');
} finally {
  await rm(tmp, { recursive: true, force: true });
}
