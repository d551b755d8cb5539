import { describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { eventSubject, newEvent } from '@cairn/contracts';
import { useHarness } from '@cairn/testing';
import { eventLogContract } from './testing/event-log.contract.ts';
import { JetStreamEventLog } from './jetstream-event-log.adapter.ts';
import { EventTooLargeError } from './errors.ts';

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

describe('JetStream event log specifics', () => {
  const actor = { kind: 'service' as const, id: 'js-test' };

  it('stores a repeated event once even after the duplicate window has passed', async () => {
    server ??= await h.nats({ domain: 'site-a' });
    const nc = await client(server.url);
    const log = await JetStreamEventLog.open({ nc, site: 'site-window', duplicateWindowMs: 1_000 });
    const e = newEvent('JobStarted', { jobId: 'w', attempt: 1 }, { site: 'site-window', actor, streamId: 'job-w' });
    const first = await log.append('job-w', [e], { expectedRevision: 'any' });
    await new Promise((r) => setTimeout(r, 1_500));
    expect(await log.append('job-w', [e], { expectedRevision: 'any' })).toEqual(first);
    expect(await log.append('job-w', [e], { expectedRevision: 'no_stream' })).toEqual(first);
    expect(await log.headPosition()).toBe(first.position);
  });

  it('refuses an event larger than the server accepts before sending it', async () => {
    const small = await h.nats({ maxPayload: 4096 });
    const nc = await client(small.url);
    const log = await JetStreamEventLog.open({ nc, site: 'site-small' });
    const e = newEvent('JobCancelled', { jobId: 's', reason: 'x'.repeat(4000) }, { site: 'site-small', actor, streamId: 'job-s' });
    const err = await log.append('job-s', [e], { expectedRevision: 'any' }).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(EventTooLargeError);
    expect((err as EventTooLargeError).maxBytes).toBe(4096 - 512);
    expect(await log.headPosition()).toBe(0n);
  });
});
