// Projection checkpoints in a NATS KV bucket (one key per projection), so a projection that
// runs in another process, or after a restart, resumes where it stopped.
import type { NatsConnection } from '@nats-io/transport-node';
import { Kvm, type KV } from '@nats-io/kv';
import { streamReplicas } from '@cairn/contracts';
import type { CheckpointStore } from './checkpoint-store.ts';

const KEY = /^[-_=a-zA-Z0-9]+$/;

export class NatsKvCheckpointStore implements CheckpointStore {
  private constructor(private readonly kv: KV) {}

  /** Opens (creating when missing) the bucket, e.g. `cairn_checkpoints_site_a`. */
  static async open(nc: NatsConnection, bucket: string): Promise<NatsKvCheckpointStore> {
    const kv = await new Kvm(nc).create(bucket, { history: 1, replicas: streamReplicas(nc.info) });
    return new NatsKvCheckpointStore(kv);
  }

  async load(name: string): Promise<bigint> {
    const entry = await this.kv.get(key(name));
    if (!entry || entry.operation !== 'PUT' || entry.length === 0) return 0n;
    const text = entry.string();
    if (!/^\d+$/.test(text)) throw new Error(`checkpoint ${name} holds ${JSON.stringify(text)}, not a position`);
    return BigInt(text);
  }

  async save(name: string, position: bigint): Promise<void> {
    await this.kv.put(key(name), position.toString());
  }

  async reset(name: string): Promise<void> {
    await this.kv.delete(key(name));
  }
}

function key(name: string): string {
  if (!KEY.test(name)) throw new Error(`projection name ${JSON.stringify(name)} must match ${KEY.source}`);
  return name;
}
