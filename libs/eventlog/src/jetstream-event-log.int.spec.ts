import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { eventSubject } from '@cairn/contracts';
import { useHarness } from '@cairn/testing';
import { eventLogContract } from './testing/event-log.contract.ts';
import { JetStreamEventLog } from './jetstream-event-log.adapter.ts';

const h = useHarness();
let server: Awaited<ReturnType<typeof h.nats>> | undefined;
let sites = 0;

async function client(url: string): Promise<NatsConnection> {
  const nc = await connect({ servers: url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  h.onClose(() => nc.close());
  return nc;
}

eventLogContract('NATS JetStream', async () => {
  server ??= await h.nats({ domain: 'site-a' });
  const site = `site-${++sites}`;
  const nc = await client(server.url);
  const log = await JetStreamEventLog.open({ nc, site });
  const otherLog = await JetStreamEventLog.open({ nc: await client(server.url), site });
  const js = jetstream(nc);
  const s = server;
  return {
    log,
    otherLog,
    writeRaw: async (streamId, payload) => { await js.publish(eventSubject(site, streamId), payload); },
    restartServer: async () => { await s.kill('SIGKILL'); await s.start(); },
  };
});
