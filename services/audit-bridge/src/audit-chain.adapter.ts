// The site's audit stream: every event of the log, in position order, sealed into the hash
// chain of @cairn/audit (each record carries the hash of the one before and its own, in
// headers). Written by the bridge as one more target (`kind: 'chain'`), so it follows the
// log with its own checkpoint; read back by `readAuditChain` for `verifyChain`.
//
// JetStream stream `CAIRN_AUDIT_<SITE>`, subject `cairn.<site>.audit.chain`, deletes and
// purges denied. The writer is idempotent across crashes: it continues from the stream's
// last record and skips events at or below that position, and every publish expects the
// stream's last sequence, so two writers cannot fork the chain.
import {
  DeliverPolicy, DiscardPolicy, JetStreamApiError, RetentionPolicy, StorageType, jetstream, jetstreamManager,
  type JetStreamClient, type JetStreamManager,
} from '@nats-io/jetstream';
import { headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import { GENESIS_HASH, chainEvents, type ChainedRecord } from '@cairn/audit';
import { assertSite, type CairnEvent } from '@cairn/contracts';
import type { Recorded } from '@cairn/eventlog';
import type { AuditTarget } from './audit-target.ts';

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

export interface AuditChainTargetOptions {
  readonly name: string;
  /** Where to write (default: the site's audit stream). */
  readonly location?: AuditStreamLocation;
}

interface ChainHead { position: bigint; hash: string; seq: number }

export class AuditChainTarget implements AuditTarget {
  readonly name: string;
  private readonly location: AuditStreamLocation;
  private head: ChainHead | undefined;
  private js: JetStreamClient | undefined;
  private jsm: JetStreamManager | undefined;

  constructor(options: AuditChainTargetOptions, private readonly nc: NatsConnection, site: string) {
    this.name = options.name;
    this.location = options.location ?? auditStream(site);
  }

  async send(records: readonly Recorded[]): Promise<void> {
    const head = this.head ?? (this.head = await this.loadHead());
    const fresh = records.filter((r) => r.position > head.position);
    if (fresh.length === 0) return;
    const sealed = chainEvents(fresh.map((r) => ({ position: r.position, event: r.event })), head.hash);
    try {
      for (const r of sealed) {
        const h = natsHeaders();
        h.set(CHAIN_POSITION_HEADER, r.position.toString());
        h.set(CHAIN_PREV_HEADER, r.prevHash);
        h.set(CHAIN_HASH_HEADER, r.hash);
        const ack = await this.js!.publish(this.location.subject, JSON.stringify(r.event), {
          msgID: r.event.id, headers: h, expect: { lastSequence: head.seq },
        });
        head.seq = ack.seq;
        head.position = r.position;
        head.hash = r.hash;
      }
    } catch (e) {
      this.head = undefined; // read the stream again before the retry: it is the truth
      throw e;
    }
  }

  async close(): Promise<void> {}

  private async loadHead(): Promise<ChainHead> {
    this.jsm ??= await jetstreamManager(this.nc);
    this.js ??= jetstream(this.nc);
    await ensureAuditStream(this.jsm, this.location);
    const info = await this.jsm.streams.info(this.location.stream);
    if (info.state.messages === 0) return { position: 0n, hash: GENESIS_HASH, seq: info.state.last_seq };
    const last = await this.jsm.streams.getMessage(this.location.stream, { last_by_subj: this.location.subject });
    if (!last) return { position: 0n, hash: GENESIS_HASH, seq: info.state.last_seq };
    return { position: BigInt(last.header.get(CHAIN_POSITION_HEADER)), hash: last.header.get(CHAIN_HASH_HEADER), seq: last.seq };
  }
}

async function ensureAuditStream(jsm: JetStreamManager, location: AuditStreamLocation): Promise<void> {
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
      num_replicas: 1, deny_delete: true, deny_purge: true,
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
