// Connection options for one identity: its nkey, its client certificate and the site CA,
// and its own inbox prefix (the only inbox its permissions let it subscribe to).
import { readFileSync } from 'node:fs';
import { nkeyAuthenticator, type ConnectionOptions } from '@nats-io/transport-node';
import type { IdentityCredentials } from './site-security.ts';

export function identityConnectOptions(c: IdentityCredentials): Pick<ConnectionOptions, 'authenticator' | 'tls' | 'inboxPrefix' | 'name'> {
  const seed = new TextEncoder().encode(readFileSync(c.seedFile, 'utf8').trim());
  return {
    name: `${c.identity}@${c.site}`,
    authenticator: nkeyAuthenticator(seed),
    tls: { caFile: c.caFile, certFile: c.certFile, keyFile: c.keyFile },
    inboxPrefix: c.inboxPrefix,
  };
}
