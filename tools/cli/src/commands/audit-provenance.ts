// `cairn audit verify` on a secure site: every event of the log checked as its readers check it
// (signature by a site identity, writer allowed by the writer table, legacy only before the
// signing cut-over), read without the client-side filter so that a refused event is named.
import type { NatsConnection } from '@nats-io/transport-node';
import { auditLogProvenance, createJetStreamEventLog, startEventSigning, type ProvenanceReport } from '@cairn/eventlog';
import { identityPublicKeys } from '@cairn/nats-security';
import { CliError, EXIT } from '../cli-error.ts';

export async function checkLogProvenance(nc: NatsConnection, site: string, securityDir: string): Promise<ProvenanceReport> {
  try {
    const log = await createJetStreamEventLog({ nc, site, createStream: false, provenance: {} });
    return await auditLogProvenance(log, await identityPublicKeys(securityDir));
  } catch (e) {
    throw new CliError(`cannot check the event log's provenance: ${(e as Error).message}`, EXIT.unavailable);
  }
}

export function provenanceLines(p: ProvenanceReport): string[] {
  const head = `event provenance: ${p.checked} events checked, ${p.legacy} legacy (unsigned before the signing cut-over at ${p.cutover === '0' ? 'none recorded' : `position ${p.cutover}`}), ${p.refused.length} refused`;
  return [
    head,
    ...p.refused.map((r) => `  REFUSED position ${r.position} ${r.type} ${r.eventId} in ${r.streamId} (actor ${r.actor}): ${r.failure}, signed by ${r.signedBy ?? 'nobody known'}${r.claimedWriter ? `, claims writer ${r.claimedWriter}` : ''}`),
  ];
}

/**
 * Records the site's signing cut-over when none is (`cairn up` does it on a secure start; a site
 * whose services run with `cairn run` needs it once): from there on every event must be signed.
 */
export async function recordSigningCutover(nc: NatsConnection, site: string, securityDir: string): Promise<bigint> {
  // The session's connection signs as `admin` (session.ts), the one writer of EventSigningStarted.
  const log = await createJetStreamEventLog({ nc, site, createStream: false });
  return startEventSigning(log, { site, keys: await identityPublicKeys(securityDir) });
}
