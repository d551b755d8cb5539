// A secure site's event provenance (docs/security.md "Event provenance"): every connection of
// the stack signs the events it appends with its identity's nkey and checks the events it reads
// against the site's identity keys and the writer table; a refused event is skipped by every
// reader and recorded as a ProvenanceViolation naming the identity whose key signed it.
import { readFile } from 'node:fs/promises';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { bindEventProvenance, eventSignerFromSeed, type ProvenanceKeys } from '@cairn/eventlog';
import type { AnyIdentity, SiteSecurity } from '@cairn/nats-security';

export async function secureEventProvenance(o: {
  readonly security: SiteSecurity;
  readonly identity: AnyIdentity;
  readonly nc: NatsConnection;
  /** The site's identity keys and signing cut-over (startEventSigning). */
  readonly keys: ProvenanceKeys;
  readonly logger: Logger;
}): Promise<void> {
  const seed = await readFile(o.security.credentials(o.identity).seedFile, 'utf8');
  bindEventProvenance(o.nc, {
    signer: eventSignerFromSeed(o.identity, seed),
    verify: {
      ...o.keys, detectedBy: o.identity,
      onViolation: (v, err) => {
        const data = v.type === 'ProvenanceViolation' ? v.data : undefined;
        o.logger.warn({ identity: o.identity, violation: data, ...(err ? { err } : {}) }, `refused an event: ${data?.message ?? v.id}`);
      },
    },
  });
}

/** Signs what this connection appends as `identity`, checks nothing (the CLI's short sessions). */
export async function signEventsAs(nc: NatsConnection, security: SiteSecurity, identity: AnyIdentity): Promise<void> {
  bindEventProvenance(nc, { signer: eventSignerFromSeed(identity, await readFile(security.credentials(identity).seedFile, 'utf8')) });
}
