// A service on a secure site (docs/security.md, signed commands): its connection signs the
// commands it sends with its identity's nkey, and checks the commands it receives — signed by a
// service identity of the site, or by a current operator key of the actor whose roles allow it.
import { readFile } from 'node:fs/promises';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { EventLog } from '@cairn/eventlog';
import { bindCommandSecurity, signerFromSeed, SignedCommandPolicy, UnverifiedCommandPolicy } from '@cairn/command-auth';
import { servicePublicKeys, type Identity, type SiteSecurity } from '@cairn/nats-security';

export async function secureServiceCommands(o: {
  readonly security: SiteSecurity;
  readonly identity: Identity;
  readonly nc: NatsConnection;
  readonly log: EventLog;
  readonly site: string;
  readonly logger: Logger;
  /** The site's service keys when already read (else read from the security directory). */
  readonly serviceKeys?: ReadonlyMap<string, string>;
}): Promise<void> {
  const serviceKeys = o.serviceKeys ?? await servicePublicKeys(o.security.dir);
  bindCommandSecurity(o.nc, {
    signer: signerFromSeed(await readFile(o.security.credentials(o.identity).seedFile, 'utf8')),
    authorizer: new SignedCommandPolicy({
      log: o.log, site: o.site, serviceKeys, endorsedKeysOnly: true, serviceActor: { kind: 'service', id: `${o.identity}@${o.site}` },
      onError: (e) => o.logger.warn({ err: e, identity: o.identity }, 'could not record AccessDenied'),
    }),
  });
}

/**
 * A site that does not require signed commands: everything runs, and a person's name that no
 * current key of theirs signed is recorded with `authenticated: false` (docs/audit-siem.md).
 */
export function markUnverifiedCommands(nc: NatsConnection, log: EventLog): void {
  bindCommandSecurity(nc, { authorizer: new UnverifiedCommandPolicy({ log }) });
}
