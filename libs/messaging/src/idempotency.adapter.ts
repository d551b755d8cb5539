// NATS KV adapters of the idempotency ports. History is bounded by the bucket's max age
// (`ttl`): NATS 2.9 ignores per-key TTL, but expires a bucket's entries by age.
import type { NatsConnection } from '@nats-io/transport-node';
import { Kvm, type KV } from '@nats-io/kv';
import { JetStreamApiError } from '@nats-io/jetstream';
import { streamReplicas, type CommandReply } from '@cairn/contracts';
import { kvToken, type CommandReplies, type ProcessedMessages, type ReplyClaim } from './idempotency.ts';

export interface KvStoreOptions {
  readonly bucket: string;
  /** How long an entry is remembered (the bucket's max age). */
  readonly ttlMs: number;
  /** Optional cap on the bucket's size in bytes (oldest entries go first). */
  readonly maxBytes?: number;
  readonly replicas?: number;
}

async function openBucket(nc: NatsConnection, o: KvStoreOptions): Promise<KV> {
  return new Kvm(nc).create(o.bucket, {
    ttl: o.ttlMs,
    history: 1,
    ...(o.maxBytes ? { max_bytes: o.maxBytes } : {}),
    replicas: o.replicas ?? streamReplicas(nc.info),
  });
}

/** Processed message ids as KV keys `<consumer>.<id>`. */
export class KvProcessedMessages implements ProcessedMessages {
  private constructor(private readonly kv: KV) {}

  static async open(nc: NatsConnection, options: Partial<KvStoreOptions> = {}): Promise<KvProcessedMessages> {
    return new KvProcessedMessages(await openBucket(nc, { bucket: 'cairn_processed', ttlMs: 24 * 3600_000, ...options }));
  }

  private key(consumer: string, id: string): string {
    return `${kvToken(consumer)}.${kvToken(id)}`;
  }

  async has(consumer: string, messageId: string): Promise<boolean> {
    const e = await this.kv.get(this.key(consumer, messageId));
    return e !== null && e.operation === 'PUT';
  }

  async add(consumer: string, messageId: string): Promise<void> {
    await this.kv.put(this.key(consumer, messageId), '1');
  }
}

interface ReplyRecord {
  readonly fingerprint: string;
  readonly at: number;
  readonly reply?: CommandReply;
}

export interface KvCommandRepliesOptions extends KvStoreOptions {
  /** A claim older than this with no reply is taken over (its handler died). */
  readonly pendingLeaseMs: number;
}

/** First replies by idempotency key; a key is claimed with a KV create (one winner). */
export class KvCommandReplies implements CommandReplies {
  private constructor(private readonly kv: KV, private readonly pendingLeaseMs: number) {}

  static async open(nc: NatsConnection, options: Partial<KvCommandRepliesOptions> = {}): Promise<KvCommandReplies> {
    const o = { bucket: 'cairn_command_replies', ttlMs: 24 * 3600_000, pendingLeaseMs: 60_000, ...options };
    return new KvCommandReplies(await openBucket(nc, o), o.pendingLeaseMs);
  }

  /** `<service>.<token>` for the responder's `<service>:<name>:<key>`, so NATS permissions can
   *  let each service write only its own entries (`$KV.cairn_command_replies.<service>.>`). */
  private key(key: string): string {
    const colon = key.indexOf(':');
    return colon > 0 ? `${kvToken(key.slice(0, colon))}.${kvToken(key.slice(colon + 1))}` : kvToken(key);
  }

  async claim(key: string, fingerprint: string): Promise<ReplyClaim> {
    const k = this.key(key);
    const record = JSON.stringify({ fingerprint, at: Date.now() } satisfies ReplyRecord);
    // Nearly every key is new: create it at once (a read first was one more JetStream request
    // per command, two per backup job). An existing key refuses the create and is read below.
    try {
      return { state: 'claimed', token: await this.kv.create(k, record) };
    } catch (err) {
      if (!wrongLastSequence(err)) throw err;
    }
    // Two rounds at most: lose a create race, then read what the winner wrote.
    for (let round = 0; round < 2; round++) {
      const e = await this.kv.get(k);
      if (!e || e.operation !== 'PUT') {
        try {
          return { state: 'claimed', token: await this.kv.create(k, record) };
        } catch (err) {
          // Someone created it in between: read theirs. Anything else (the store is full or
          // down) is not "being handled": say what it is.
          if (wrongLastSequence(err)) continue;
          throw err;
        }
      }
      const existing = e.json<ReplyRecord>();
      if (existing.fingerprint !== fingerprint) return { state: 'conflict' };
      if (existing.reply) return { state: 'done', reply: existing.reply };
      if (Date.now() - existing.at < this.pendingLeaseMs) return { state: 'pending' };
      try {
        return { state: 'claimed', token: await this.kv.update(k, record, e.revision) };
      } catch {
        continue;
      }
    }
    return { state: 'pending' };
  }

  async complete(key: string, token: number, fingerprint: string, reply: CommandReply): Promise<void> {
    const record: ReplyRecord = { fingerprint, at: Date.now(), reply };
    await this.kv.update(this.key(key), JSON.stringify(record), token);
  }

  async abandon(key: string, token: number): Promise<void> {
    await this.kv.delete(this.key(key), { previousSeq: token });
  }
}

/** The key's last message is not the one a create (or update) expected: someone wrote it. */
function wrongLastSequence(err: unknown): boolean {
  return err instanceof JetStreamApiError && (err.code === 10071 || err.code === 10164);
}
