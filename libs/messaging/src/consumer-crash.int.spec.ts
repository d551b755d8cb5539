import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { useHarness, waitFor } from '@cairn/testing';
import type { NatsServerProcess } from '@cairn/nats-server';
import { JetStreamServer } from './jetstream.server.ts';
import { JetStreamClient } from './jetstream-client.ts';
import { ACTOR, EVENTS, SITE, backlog, jobStarted, jobSubject, openSite, type TestSite } from './testing/site.ts';

// `node --import tsx` rather than the tsx CLI: the CLI runs the script in a child process,
// which a SIGKILL of the CLI would leave running (and acking in progress).
const TSX_LOADER = import.meta.resolve('tsx');
const FIXTURE = fileURLToPath(new URL('./testing/hanging-consumer.fixture.ts', import.meta.url));
const ACK_WAIT_MS = 1000;

describe('consumer crash', () => {
  const h = useHarness();
  let site: TestSite;
  let url: string;
  let nats: NatsServerProcess;

  beforeAll(async () => {
    nats = await h.nats();
    url = nats.url;
    site = await openSite(url);
    h.onClose(() => site.nc.close());
  });

  it('redelivers a message whose consumer was SIGKILLed mid-handler to another instance after ack wait', async () => {
    const jobId = `j${randomUUID().slice(0, 8)}`;
    const filter = jobSubject(jobId);
    const child: ChildProcess = spawn(process.execPath, ['--import', TSX_LOADER, FIXTURE, url, EVENTS, 'crashy', filter, String(ACK_WAIT_MS)], { stdio: ['ignore', 'pipe', 'pipe'] });
    h.onClose(async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await once(child, 'exit');
      }
    });
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    await waitFor(() => out.includes('READY'), { timeoutMs: 60_000, what: `fixture ready (stderr: ${err})` });

    const event = jobStarted(jobId);
    const publishedAt = Date.now();
    const ack = await new JetStreamClient(site.nc).publishEvent(event);
    const line = await waitFor(() => /HANDLING (\d+) (\d+) (\d+)/.exec(out), { timeoutMs: 20_000, what: 'child handling the message' });
    expect(Number(line[1])).toBe(ack.seq);
    expect(Number(line[2])).toBe(1);
    const handledAt = Number(line[3]);

    child.kill('SIGKILL');
    await once(child, 'exit');

    const received: Array<{ id: string; deliveries: number; at: number }> = [];
    const server = new JetStreamServer({ servers: url, site: SITE, actor: ACTOR });
    server.addJetStreamHandler({ stream: EVENTS, durable: 'crashy', filterSubject: filter, ackWaitMs: ACK_WAIT_MS }, (p, ctx) => {
      received.push({ id: (p as { id: string }).id, deliveries: ctx.deliveryCount, at: Date.now() });
    });
    await new Promise<void>((resolve, reject) => server.listen((e?: unknown) => (e ? reject(e) : resolve())));
    h.onClose(() => server.close());

    await waitFor(() => received.length === 1, { timeoutMs: 20_000, what: 'redelivery to the second instance' });
    expect(received[0]).toMatchObject({ id: event.id, deliveries: 2 });
    // Not before the ack wait ran out. The server starts it when it delivers, which lies between
    // the publish and the child's handler starting (`handledAt`, a few ms later), so the publish
    // time is the sound lower bound (measured against handledAt, 998 ms once failed a 1000 ms wait).
    expect(handledAt).toBeGreaterThanOrEqual(publishedAt);
    expect(received[0]!.at - publishedAt).toBeGreaterThanOrEqual(ACK_WAIT_MS);
    await waitFor(async () => (await backlog(site, EVENTS, 'crashy')).ackPending === 0, { what: 'acked' });
  }, 120_000); // a loaded CI machine may take tens of seconds to start the fixture process

  it('keeps consuming after the NATS server is killed and restarted', async () => {
    const jobId = `j${randomUUID().slice(0, 8)}`;
    const seen: string[] = [];
    const server = new JetStreamServer({ servers: url, site: SITE, actor: ACTOR });
    server.addJetStreamHandler({ stream: EVENTS, durable: 'survivor', filterSubject: jobSubject(jobId), ackWaitMs: 1000 }, (p) => {
      seen.push((p as { id: string }).id);
    });
    await new Promise<void>((resolve, reject) => server.listen((e?: unknown) => (e ? reject(e) : resolve())));
    h.onClose(() => server.close());
    const client = new JetStreamClient(site.nc);
    const before = jobStarted(jobId);
    await client.publishEvent(before);
    await waitFor(() => seen.length === 1, { what: 'first event' });

    await nats.kill('SIGKILL');
    await nats.start();
    const after = jobStarted(jobId);
    await waitFor(async () => (await client.publishEvent(after).then(() => true, () => false)), { timeoutMs: 20_000, what: 'publish after restart' });
    await waitFor(() => seen.length === 2, { timeoutMs: 30_000, what: 'event after the restart' });
    expect(seen).toEqual([before.id, after.id]);
  }, 60_000);
});
