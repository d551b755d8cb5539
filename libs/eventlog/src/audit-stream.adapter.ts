// The site's audit stream on JetStream (`CAIRN_AUDIT_<SITE>`, subject `cairn.<site>.audit.chain`):
// where the audit bridge seals the log into the hash chain of @cairn/audit, and how anyone
// (the CLI's `cairn audit verify`, tests) reads it back as chain records for `verifyChain`.
// Each record carries its position, the hash of the one before and its own, in headers.
import { DeliverPolicy, DiscardPolicy, JetStreamApiError, RetentionPolicy, StorageType, jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { ChainedRecord } from '@cairn/audit';
import { assertSite, type CairnEvent } from '@cairn/contracts';

export const CHAIN_PREV_HEADER = 'Cairn-Chain-Prev';
export const CHAIN_HASH_HEADER = 'Cairn-Chain-Hash';
export const CHAIN_POSITION_HEADER = 'Cairn-Position';

export interface AuditStreamLocation {
  readonly stream: string;
  readonly subject: string;
}

export function auditStream(site: string): AuditStreamLocation {
  assertSite(site);
  return { stream: `CAIRN_AUDIT_${site.toUpperCase().replace(/-/g, '_')}`, subject: `cairn.${site}.audit.chain` };
}

/** Creates the audit stream when missing, with `replicas` copies (streamReplicas of the connection). */
export async function ensureAuditStream(jsm: JetStreamManager, location: AuditStreamLocation, replicas = 1): Promise<void> {
  try {
    await jsm.streams.info(location.stream);
    return;
  } catch (e) {
    if (!(e instanceof JetStreamApiError && e.code === 10059)) throw e;
  }
  try {
    await jsm.streams.add({
      name: location.stream, subjects: [location.subject], storage: StorageType.File, retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old, max_msgs: -1, max_bytes: -1, max_age: 0, duplicate_window: 120_000_000_000,
      num_replicas: replicas, deny_delete: true, deny_purge: true,
    });
  } catch (e) {
    await jsm.streams.info(location.stream).catch(() => { throw e; });
  }
}

/**
 * Reads a whole audit stream in sequence order as chain records, for `verifyChain`. A record
 * whose headers are missing or malformed is returned with empty hashes, so the verifier
 * reports it rather than this function throwing.
 */
export async function readAuditChain(nc: NatsConnection, location: AuditStreamLocation): Promise<ChainedRecord<CairnEvent>[]> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(location.stream);
  const out: ChainedRecord<CairnEvent>[] = [];
  if (info.state.messages === 0) return out;
  const js = jetstream(nc);
  const consumer = await js.consumers.get(location.stream, { filter_subjects: location.subject, deliver_policy: DeliverPolicy.All });
  const messages = await consumer.consume({ max_messages: 256, expires: 5_000 });
  try {
    for await (const m of messages) {
      const pos = m.headers?.get(CHAIN_POSITION_HEADER) ?? '';
      let event: CairnEvent;
      try {
        event = JSON.parse(new TextDecoder().decode(m.data)) as CairnEvent;
      } catch {
        event = { id: `unparsable-seq-${m.seq}` } as CairnEvent;
      }
      out.push({
        position: /^\d+$/.test(pos) ? BigInt(pos) : 0n,
        event,
        prevHash: m.headers?.get(CHAIN_PREV_HEADER) ?? '',
        hash: m.headers?.get(CHAIN_HASH_HEADER) ?? '',
      });
      if (m.info.pending === 0) break;
    }
  } finally {
    await messages.close().catch(() => undefined);
    await consumer.delete().catch(() => undefined);
  }
  return out;
}
