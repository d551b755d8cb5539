// The hub relay between real nats-servers: a hub and a leaf site in their own JetStream
// domains. Multi-event appends (each expecting the previous sequence) reach the hub in order
// and once, across a restart of the site's server and a restart of the relay itself.
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { newEvent, type CairnEvent } from '@cairn/contracts';
import { freePort } from '@cairn/nats-server';
import { useHarness, waitFor } from '@cairn/testing';
import { hubSiteSubject, ORIGIN_SEQ_HEADER, startHubRelay } from './hub-relay.adapter.ts';
import { JetStreamEventLog } from './jetstream-event-log.adapter.ts';

const h = useHarness();

function jobEvents(site: string, n: number): { streamId: string; events: CairnEvent[] } {
  const jobId = randomUUID();
  const streamId = `job-${jobId}`;
  const meta = { site, actor: { kind: 'service' as const, id: 'test' }, streamId };
  const events: CairnEvent[] = [newEvent('JobRequested', { jobId, vmId: 'vm-1', policyId: null, mode: 'full', trigger: 'manual' }, meta)];
  for (let i = 1; i < n; i++) events.push(newEvent('JobStarted', { jobId, attempt: i }, meta));
  return { streamId, events };
}

describe('hub relay', () => {
  it('copies a site\'s log into the hub in order and exactly once, across restarts of the site and of the relay', async () => {
    const leafPort = await freePort();
    const hub = await h.nats({ domain: 'hub', extraConfig: `leafnodes {\n  host: "127.0.0.1"\n  port: ${leafPort}\n}` });
    const site = await h.nats({ domain: 'b', serverName: 'site-b', extraConfig: `leafnodes {\n  reconnect: 1\n  remotes: [ { urls: [ "nats-leaf://127.0.0.1:${leafPort}" ] } ]\n}` });
    const nh = await connect({ servers: hub.url });
    const nb = await connect({ servers: site.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    h.onClose(() => Promise.all([nh.close(), nb.close()]));
    await (await jetstreamManager(nh)).streams.add({ name: 'CAIRN_EVT_HUB', subjects: ['cairn.hub.evt.>', 'cairn.hub.sites.*'] });
    const log = await JetStreamEventLog.open({ nc: nb, site: 'b' });
    const ids: string[] = [];
    const append = async (n: number) => {
      const { streamId, events } = jobEvents('b', n);
      await log.append(streamId, events, { expectedRevision: 'no_stream' });
      ids.push(...events.map((e) => e.id));
    };
    const copied = async () => {
      const hubLog = await JetStreamEventLog.open({ nc: nh, site: 'hub', allSites: true });
      const out: string[] = [];
      for await (const r of hubLog.readAll()) out.push(r.event.id);
      return out;
    };

    let relay = startHubRelay({ nc: nh, hubStream: 'CAIRN_EVT_HUB', sites: ['b'], maxRetryMs: 200 });
    h.onClose(() => relay.stop());
    await append(3);
    await append(2);
    await waitFor(async () => (await copied()).length === ids.length, { timeoutMs: 20_000, intervalMs: 100, what: 'the first events at the hub' });

    await site.stop();
    await site.start();
    await append(3); // right after the restart, while the relay finds the site again
    await append(4);
    await waitFor(async () => (await copied()).length === ids.length, { timeoutMs: 30_000, intervalMs: 100, what: 'the events after the site restart' });

    await relay.stop();
    await append(2);
    relay = startHubRelay({ nc: nh, hubStream: 'CAIRN_EVT_HUB', sites: ['b'], maxRetryMs: 200 });
    await waitFor(async () => (await copied()).length === ids.length, { timeoutMs: 20_000, intervalMs: 100, what: 'the events after the relay restart' });
    expect(await copied()).toEqual(ids);
    const last = await (await jetstreamManager(nh)).streams.getMessage('CAIRN_EVT_HUB', { last_by_subj: hubSiteSubject('b') });
    expect(Number(last!.header.get(ORIGIN_SEQ_HEADER))).toBe(ids.length);
    expect(relay.status()).toEqual([expect.objectContaining({ site: 'b', originSeq: ids.length, connected: true })]);
  }, 90_000);
});
