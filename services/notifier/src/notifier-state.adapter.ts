// Where the notifier remembers, across restarts, how far it has read the log and what each
// route has been sent: one JSON record in its own KV bucket (`cairn_notifier_<site>`), written
// after every message sent and as the log goes by.
import type { NatsConnection } from '@nats-io/transport-node';
import { Kvm, type KV } from '@nats-io/kv';
import { streamReplicas, type NotificationRoute } from '@cairn/contracts';

export interface NotifierState {
  /** Everything up to this position is handled (sent, or matched nothing). */
  readonly position: string;
  /** The routes as of `position`. */
  readonly routes: readonly NotificationRoute[];
  /** Per route: its last message covered notices up to `through`, sent at `at` (ms). */
  readonly delivered: Readonly<Record<string, { readonly through: string; readonly at: number }>>;
  /**
   * Per route: the message being sent when this was saved (its notices up to `through`). After a
   * crash it is rebuilt from the same notices and sent again first, so it carries the same id.
   */
  readonly sending?: Readonly<Record<string, { readonly through: string }>>;
  /** VMs of jobs in flight at `position` (a JobFailed read after a restart still names its VM). */
  readonly jobVms: ReadonlyArray<readonly [string, string]>;
}

export interface NotifierStateStore {
  load(): Promise<NotifierState | undefined>;
  save(state: NotifierState): Promise<void>;
}

export const EMPTY_STATE: NotifierState = { position: '0', routes: [], delivered: {}, jobVms: [] };

export class NatsKvNotifierStateStore implements NotifierStateStore {
  private constructor(private readonly kv: KV) {}

  static async open(nc: NatsConnection, site: string): Promise<NatsKvNotifierStateStore> {
    return new NatsKvNotifierStateStore(await new Kvm(nc).create(`cairn_notifier_${site.replace(/-/g, '_')}`, { history: 1, replicas: streamReplicas(nc.info) }));
  }

  async load(): Promise<NotifierState | undefined> {
    const entry = await this.kv.get('state');
    if (!entry || entry.operation !== 'PUT' || entry.length === 0) return undefined;
    return entry.json<NotifierState>();
  }

  async save(state: NotifierState): Promise<void> {
    await this.kv.put('state', JSON.stringify(state));
  }
}

export class InMemoryNotifierStateStore implements NotifierStateStore {
  state: NotifierState | undefined;
  async load() { return this.state; }
  async save(state: NotifierState) { this.state = state; }
}
