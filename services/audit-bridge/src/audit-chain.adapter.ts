// The site's audit stream: every event of the log, in position order, sealed into the hash
// chain of @cairn/audit (each record carries the hash of the one before and its own, in
// headers). Written by the bridge as one more target (`kind: 'chain'`), so it follows the
// log with its own checkpoint; read back by `readAuditChain` (@cairn/eventlog) for `verifyChain`.
//
// JetStream stream `CAIRN_AUDIT_<SITE>`, subject `cairn.<site>.audit.chain`, deletes and
// purges denied. The writer is idempotent across crashes: it continues from the stream's
// last record and skips events at or below that position, and every publish expects the
// stream's last sequence, so two writers cannot fork the chain.
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import { GENESIS_HASH, chainEvents } from '@cairn/audit';
import { streamReplicas } from '@cairn/contracts';
import {
  auditStream, ensureAuditStream, CHAIN_HASH_HEADER, CHAIN_POSITION_HEADER, CHAIN_PREV_HEADER, type AuditStreamLocation, type Recorded,
} from '@cairn/eventlog';
import type { AuditTarget } from './audit-target.ts';

// The stream's location and reader live in @cairn/eventlog (the CLI reads it without the bridge).
export { auditStream, readAuditChain, CHAIN_HASH_HEADER, CHAIN_POSITION_HEADER, CHAIN_PREV_HEADER, type AuditStreamLocation } from '@cairn/eventlog';

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
    await ensureAuditStream(this.jsm, this.location, streamReplicas(this.nc.info));
    const info = await this.jsm.streams.info(this.location.stream);
    if (info.state.messages === 0) return { position: 0n, hash: GENESIS_HASH, seq: info.state.last_seq };
    const last = await this.jsm.streams.getMessage(this.location.stream, { last_by_subj: this.location.subject });
    if (!last) return { position: 0n, hash: GENESIS_HASH, seq: info.state.last_seq };
    return { position: BigInt(last.header.get(CHAIN_POSITION_HEADER)), hash: last.header.get(CHAIN_HASH_HEADER), seq: last.seq };
  }
}
