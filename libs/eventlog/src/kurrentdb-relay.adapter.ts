// The relay from KurrentDB to NATS: follows `$all` and republishes each Cairn event on its
// JetStream subject, so services consume the same way whichever log the site uses.
// Idempotent: `Nats-Msg-Id` = event id, so a republish after a crash (the checkpoint is
// saved after the publish is acknowledged) is dropped by the server's duplicate window.
// Unreadable records are handed to `onInvalid` (default: the relay stops with the error),
// never skipped silently.
import { eventSubject } from '@cairn/contracts';
import { jetstream } from '@nats-io/jetstream';
import { headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import type { CheckpointStore } from './checkpoint-store.ts';
import type { EventSubscriber, OnInvalidRecord } from './event-log.port.ts';
import { EVENT_TYPE_HEADER, JetStreamEventLog, REVISION_HEADER, SCHEMA_VERSION_HEADER } from './jetstream-event-log.adapter.ts';

export interface KurrentDbRelayOptions {
  /** The KurrentDB log to follow (anything that can subscribe to the whole log). */
  readonly source: EventSubscriber;
  readonly nc: NatsConnection;
  readonly site: string;
  readonly domain?: string;
  readonly checkpointStore: CheckpointStore;
  /** Checkpoint key (default `kurrentdb-relay`). */
  readonly name?: string;
  readonly onInvalid?: OnInvalidRecord;
}

export interface RunningRelay {
  /** KurrentDB position of the last event republished. */
  readonly position: bigint;
  readonly done: Promise<void>;
  stop(): Promise<void>;
}

export async function startKurrentDbRelay(options: KurrentDbRelayOptions): Promise<RunningRelay> {
  const name = options.name ?? 'kurrentdb-relay';
  // Makes sure the site's stream exists (same configuration as the JetStream log).
  await JetStreamEventLog.open({ nc: options.nc, site: options.site, ...(options.domain ? { domain: options.domain } : {}) });
  const js = jetstream(options.nc, options.domain ? { domain: options.domain } : {});
  let position = await options.checkpointStore.load(name);
  const subscription = options.source.subscribe({ from: position, ...(options.onInvalid ? { onInvalid: options.onInvalid } : {}) });
  const done = (async () => {
    for await (const { event, revision, position: at } of subscription) {
      if (event.site !== options.site) continue; // another site's event in a shared database
      const h = natsHeaders();
      h.set(REVISION_HEADER, String(revision));
      h.set(EVENT_TYPE_HEADER, event.type);
      h.set(SCHEMA_VERSION_HEADER, String(event.schemaVersion));
      if (event.trace) h.set('traceparent', event.trace.traceparent);
      await js.publish(eventSubject(options.site, event.streamId), JSON.stringify(event), { msgID: event.id, headers: h });
      await options.checkpointStore.save(name, at);
      position = at;
    }
  })();
  done.catch(() => undefined);
  return {
    get position() { return position; },
    done,
    async stop() {
      await subscription.stop();
      await done.catch(() => undefined);
    },
  };
}
