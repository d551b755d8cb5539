// Active/passive leadership through a NATS KV key: the holder renews it; the bucket's max
// age (not per-key TTL, which nats-server 2.9 ignores) lets it lapse when the holder dies,
// and a standby's `create` then succeeds.
import { Kvm, type KV } from '@nats-io/kv';
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

export class LeaderLease {
  private kv: KV | undefined;
  private revision = 0;
  private timer: NodeJS.Timeout | undefined;
  private leader = false;
  private stopped = false;

  constructor(private readonly options: LeaderLeaseOptions) {}

  get isLeader(): boolean { return this.leader; }

  async start(): Promise<void> {
    this.kv = await new Kvm(this.options.nc).create(this.options.bucket, { ttl: this.options.ttlMs, history: 1, replicas: streamReplicas(this.options.nc.info) });
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
    const value = new TextEncoder().encode(JSON.stringify({ holder: this.options.holder, at: new Date().toISOString() }));
    try {
      this.revision = this.leader
        ? await this.kv.update(this.options.key, value, this.revision)
        : await this.kv.create(this.options.key, value);
      this.set(true);
    } catch {
      // Someone else holds it (or we lost it): stand by.
      this.set(false);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.leader && this.kv) {
      try { await this.kv.delete(this.options.key, { previousSeq: this.revision }); } catch { /* already gone */ }
    }
    this.set(false);
  }
}
