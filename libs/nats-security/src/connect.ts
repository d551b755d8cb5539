// Connection options for one identity: its client certificate and the password its nkey makes, the site CA,
// and its own inbox prefix (the only inbox its permissions let it subscribe to).
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from '@nats-io/transport-node';
import { identityAuthenticator } from './identity-binding.ts';
import { loadSiteSecurity, type IdentityCredentials } from './site-security.ts';
import type { AnyIdentity } from './permissions.ts';

export function identityConnectOptions(c: IdentityCredentials): Pick<ConnectionOptions, 'authenticator' | 'tls' | 'inboxPrefix' | 'name'> {
  const seed = readFileSync(c.seedFile, 'utf8').trim();
  return {
    name: `${c.identity}@${c.site}`,
    // The certificate names the identity; the password proves its nkey (identity-binding.ts).
    authenticator: identityAuthenticator(seed, c.identity, c.site),
    tls: { caFile: c.caFile, certFile: c.certFile, keyFile: c.keyFile },
    inboxPrefix: c.inboxPrefix,
  };
}

/**
 * For stand-alone service processes: the identity's connection options when
 * `CAIRN_NATS_SECURITY_DIR` names a security directory (`cairn site init`, or the hub's), else
 * none (plain NATS). `CAIRN_NATS_IDENTITY` overrides the identity name.
 */
export async function identityFromEnv(identity: AnyIdentity, env: NodeJS.ProcessEnv = process.env): Promise<Partial<ConnectionOptions>> {
  const dir = env['CAIRN_NATS_SECURITY_DIR'];
  if (!dir) return {};
  const security = await loadSiteSecurity(dir);
  return identityConnectOptions(security.credentials((env['CAIRN_NATS_IDENTITY'] as AnyIdentity | undefined) ?? identity));
}
