// A durable pull consumer on a real three-node NATS cluster (R3 work stream) whose consumer leader
// is SIGKILLed: the handler's process stays connected to a member that lives, so its pull waits on
// the dead leader and nothing says it is lost but the missing heartbeats. Work published after the
// kill reaches the handler within seconds (pulls that expire after 5 s, heartbeats every 2.5 s),
// not after the client's default 30 s pull (two missed 15 s heartbeats, then up to 45 s between
// tries): in the 3,000-VM scale run the live data movers took no transfer for ~30 s after the kill.
import { describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { AckPolicy, RetentionPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { natsServers } from '@cairn/contracts';
import { useHarness, waitFor } from '@cairn/testing';
import { JetStreamServer } from './jetstream.server.ts';
import { ACTOR, SITE, WORK, workQueue } from './testing/site.ts';

describe('JetStream consumer on a cluster', () => {
  const h = useHarness();

  it('takes work again within seconds after its consumer leader is SIGKILLed', async () => {
    const cluster = await h.natsCluster({ name: 'failover' });
    const nc = await connect({ servers: natsServers(cluster.url), maxReconnectAttempts: -1 });
    h.onClose(() => nc.close());
    const jsm = await waitFor(() => jetstreamManager(nc, { timeout: 2_000 }).catch(() => undefined), { timeoutMs: 30_000 });
    await jsm.streams.add({ name: WORK, subjects: [`cairn.${SITE}.work.>`], retention: RetentionPolicy.Workqueue, num_replicas: 3 });
    const filter = workQueue('failover');
    await jsm.consumers.add(WORK, { durable_name: 'failover', ack_policy: AckPolicy.Explicit, filter_subject: filter, num_replicas: 3 });
    const leaderName = (await jsm.consumers.info(WORK, 'failover')).cluster?.leader;
    const dead = cluster.names.indexOf(leaderName!);
    // The handler's process connects to another member only: it never sees a disconnect.
    const live = cluster.members.find((_, i) => i !== dead)!;

    const got: Array<{ n: number; at: number }> = [];
    const server = new JetStreamServer({ servers: live.url, site: SITE, actor: ACTOR, drainTimeoutMs: 1000 });
    server.addJetStreamHandler({ stream: WORK, durable: 'failover', filterSubject: filter, ackWaitMs: 5_000, dedup: false, validate: (v) => ({ ok: true, value: v }) }, (p) => {
      got.push({ n: (p as { n: number }).n, at: Date.now() });
    });
    await new Promise<void>((resolve, reject) => server.listen((err?: unknown) => (err ? reject(err) : resolve())));
    h.onClose(() => server.close());
    const js = jetstream(nc);
    await js.publish(filter, JSON.stringify({ n: 1 }));
    await waitFor(() => got.length === 1, { timeoutMs: 10_000 });
    // Its next pull is waiting on the leader now.
    await new Promise((r) => setTimeout(r, 1_000));

    await cluster.members[dead]!.kill('SIGKILL');
    const killedAt = Date.now();
    // Published as soon as the stream takes it again (its own leader may have been there too).
    await waitFor(() => js.publish(filter, JSON.stringify({ n: 2 }), { msgID: 'failover-2', timeout: 2_000 }).then(() => true, () => false), { timeoutMs: 30_000 });
    await waitFor(() => got.length === 2, { timeoutMs: 60_000, intervalMs: 100 });
    const after = got[1]!.at - killedAt;
    expect(got.map((g) => g.n)).toEqual([1, 2]);
    // Election (nats-server 2.9: a few seconds), two missed 2.5 s heartbeats, one consumer info.
    expect(after).toBeLessThan(20_000);
  }, 120_000);
});
