// settleQuietly(): requests behave as before (answered, timed out, without responders, cut off
// by a closing connection), and a settled request leaves nothing behind in the client.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, errors, type NatsConnection } from '@nats-io/transport-node';
import { useHarness } from '@cairn/testing';
import { settleQuietly } from './request-cancel.ts';

const h = useHarness();
let nc: NatsConnection;
let url: string;

/** Requests the client still waits for (its reply subscription's table). */
const pending = (c: NatsConnection) => (c as unknown as { protocol: { muxSubscriptions: { size(): number } } }).protocol.muxSubscriptions.size();

beforeAll(async () => {
  expect(settleQuietly()).toBe(true);
  expect(settleQuietly()).toBe(true); // once per process: a second call changes nothing
  const server = await h.nats({ jetstream: false });
  url = server.url;
  nc = await connect({ servers: url, noAsyncTraces: true });
  nc.subscribe('echo', { callback: (_e, m) => { m.respond(m.data); } });
  nc.subscribe('silent', { callback: () => undefined });
  await nc.flush();
});
afterAll(async () => { await nc?.close(); });

describe('settleQuietly', () => {
  it('answers requests and forgets each once answered', async () => {
    const replies = await Promise.all(Array.from({ length: 200 }, (_, i) => nc.request('echo', new TextEncoder().encode(String(i)), { timeout: 5_000 })));
    expect(replies.map((m) => m.string())).toEqual(Array.from({ length: 200 }, (_, i) => String(i)));
    expect(pending(nc)).toBe(0);
  });

  it('still rejects a request nobody answers in time with a timeout, and one nobody listens to as having no responders', async () => {
    await expect(nc.request('silent', undefined, { timeout: 200 })).rejects.toBeInstanceOf(errors.TimeoutError);
    const e = await nc.request('nobody.here', undefined, { timeout: 2_000 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(errors.RequestError);
    expect((e as InstanceType<typeof errors.RequestError>).isNoResponders()).toBe(true);
    expect(pending(nc)).toBe(0);
  });

  it('still rejects the requests a closing connection cuts off', async () => {
    const other = await connect({ servers: url, noAsyncTraces: true });
    const waiting = other.request('silent', undefined, { timeout: 10_000 }).then(() => 'answered', (x: unknown) => x);
    await other.flush();
    await other.close();
    const e = await waiting;
    expect(e).toBeInstanceOf(Error);
    expect(e).not.toBeInstanceOf(errors.TimeoutError);
  });
});
