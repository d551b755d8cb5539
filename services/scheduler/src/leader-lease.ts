// Active/passive leadership through a NATS KV key: the holder renews it; the bucket's max
// age (not per-key TTL, which nats-server 2.9 ignores) lets it lapse when the holder dies,
// and a standby's `create` then succeeds.
//
// A renewal that gets no answer (the cluster member that led the bucket's stream was lost and
// the others are still electing a new leader: 4-9 s on nats-server 2.9) does not end the
// leadership: no one else can take the key before it lapses on the server, at least `ttlMs`
// after the last renewal was sent, so the holder stays leader until `ttlMs * VALID_FOR` after
// that send by its own clock. Only an answer that the key is someone else's (or gone) ends it
// at once. A holder that did lapse takes its key back as soon as the server answers again, if
// the key is still its own (not `ttlMs` later, when the server would have expired it): the 3,000-VM
// scale run saw the scheduler stand by for ~10 s after a member's SIGKILL, every job waiting.
import { jetstream } from '@nats-io/jetstream';
import { Kvm, type KV, type KvEntry } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { streamReplicas } from '@cairn/contracts';

export interface LeaderLeaseOptions {
  readonly nc: NatsConnection;
  readonly bucket: string;
  readonly key: string;
  readonly holder: string;
  /** How long a lease lives without renewal. */
  readonly ttlMs: number;
  readonly onChange?: (leader: boolean) => void;
}

/** Share of the TTL, from the last successful renewal's send, during which the holder may act. */
export const VALID_FOR = 0.8;

export class LeaderLease {
  private kv: KV | undefined;
  /** Revision of our own entry (0: none known, `create` next). */
  private revision = 0;
  private timer: NodeJS.Timeout | undefined;
  private leader = false;
  private stopped = false;
  private renewing = false;
  /** performance.now() until which our lease surely stands. */
  private validUntil = 0;
  /** Steps down at `validUntil` when no renewal moved it (ticks come only every third of the TTL). */
  private expiry: NodeJS.Timeout | undefined;

  constructor(private readonly options: LeaderLeaseOptions) {}

  get isLeader(): boolean { return this.leader; }

  async start(): Promise<void> {
    await new Kvm(this.options.nc).create(this.options.bucket, { ttl: this.options.ttlMs, history: 1, replicas: streamReplicas(this.options.nc.info) });
    // Renewals wait at most a fifth of the TTL for an answer (the client's default is 5 s), so
    // one lost in an election is tried again while the lease still stands.
    const js = jetstream(this.options.nc, { timeout: Math.max(1_000, Math.floor(this.options.ttlMs / 5)) });
    this.kv = await new Kvm(js).open(this.options.bucket);
    await this.tick();
    const every = Math.max(100, Math.floor(this.options.ttlMs / 3));
    this.timer = setInterval(() => { void this.tick(); }, every);
  }

  private set(leader: boolean): void {
    if (leader === this.leader) return;
    this.leader = leader;
    this.options.onChange?.(leader);
  }

  private async tick(): Promise<void> {
    if (this.stopped || !this.kv) return;
    // By our own clock, even while a renewal hangs unanswered.
    if (this.leader && performance.now() >= this.validUntil) this.set(false);
    if (this.renewing) return;
    this.renewing = true;
    try {
      await this.renew();
    } finally {
      this.renewing = false;
    }
  }

  private async renew(): Promise<void> {
    const kv = this.kv!;
    for (let attempt = 0; attempt < 2 && !this.stopped; attempt++) {
      const value = new TextEncoder().encode(JSON.stringify({ holder: this.options.holder, at: new Date().toISOString() }));
      const sentAt = performance.now();
      try {
        this.revision = this.revision > 0 ? await kv.update(this.options.key, value, this.revision) : await kv.create(this.options.key, value);
        this.validUntil = sentAt + this.options.ttlMs * VALID_FOR;
        this.set(true);
        this.armExpiry();
        return;
      } catch {
        // Refused, or no answer: whose is the key?
      }
      let entry: KvEntry | null;
      try {
        entry = await kv.get(this.options.key);
      } catch {
        // No answer either (the bucket's stream has no leader yet): the lease stands until it would lapse.
        if (performance.now() >= this.validUntil) this.set(false);
        return;
      }
      if (entry && entry.operation === 'PUT' && this.holderOf(entry) === this.options.holder) {
        // Still ours (a renewal stored whose answer was lost, or a lapse by our clock only): renew at its revision.
        this.revision = entry.revision;
        continue;
      }
      // Someone else holds it, or it lapsed on the server: stand by (create it again next time).
      this.revision = 0;
      this.validUntil = 0;
      this.set(false);
      return;
    }
    if (performance.now() >= this.validUntil) this.set(false);
  }

  private holderOf(entry: KvEntry): string | undefined {
    try {
      return (entry.json() as { holder?: string }).holder;
    } catch {
      return undefined;
    }
  }

  /**
   * A holder whose renewals go unanswered stops acting at `validUntil`, not at its next tick: a
   * tick up to a third of the TTL later could fall after the server expired the key and the
   * standby took it, two schedulers acting for a moment.
   */
  private armExpiry(): void {
    if (this.expiry) clearTimeout(this.expiry);
    this.expiry = setTimeout(() => {
      this.expiry = undefined;
      if (this.leader && performance.now() >= this.validUntil) this.set(false);
      else if (this.leader) this.armExpiry();
    }, Math.max(1, this.validUntil - performance.now()));
    this.expiry.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.expiry) clearTimeout(this.expiry);
    if (this.leader && this.kv) {
      try { await this.kv.delete(this.options.key, { previousSeq: this.revision }); } catch { /* already gone */ }
    }
    this.set(false);
  }
}
