// The scheduler's snapshot commands on a real nats-server: a request lost on its way (here: the
// coordinator's stand-in drops the first one, as a cluster member that dies with it in flight
// does) is sent again with the same idempotency key after `attemptMs`, not after the whole
// command timeout; an `in_progress` answer (the first is still being handled) is asked again
// after a pause, and the answer that follows is the one the caller gets. A transfer's work publish
// that fails (no work stream leader yet) is tried again rather than left to the 60 s requeue.
import { describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { commandSubject, type Actor } from '@cairn/contracts';
import { jetstreamManager } from '@nats-io/jetstream';
import { workStreamName, type TransferWork } from '@cairn/jobs';
import { useHarness } from '@cairn/testing';
import { natsSchedulerPorts } from './scheduler.ports.adapter.ts';

const site = 'ports';
const actor: Actor = { kind: 'service', id: `scheduler@${site}` };

describe('scheduler ports: snapshot commands', () => {
  const h = useHarness();

  it('sends a release again after attemptMs when the first request is lost, with the same idempotency key', async () => {
    const nc = await connect({ servers: (await h.nats()).url });
    h.onClose(() => nc.close());
    const seen: Array<{ key: string; at: number }> = [];
    nc.subscribe(commandSubject(site, 'snapshot-coordinator', 'ReleaseSnapshot'), {
      callback: (_e, m) => {
        const cmd = m.json<{ idempotencyKey: string }>();
        seen.push({ key: cmd.idempotencyKey, at: Date.now() });
        if (seen.length === 1) return; // lost
        if (seen.length === 2) { m.respond(JSON.stringify({ accepted: false, error: { code: 'in_progress', message: 'being handled' } })); return; }
        m.respond(JSON.stringify({ accepted: true }));
      },
    });
    await nc.flush();
    const ports = await natsSchedulerPorts(nc, site, actor, 120_000, { attemptMs: 1_000, inProgressPauseMs: 300 });
    const t0 = Date.now();
    await ports.releaseSnapshot({ jobId: 'j1', snapshotId: 's1', success: true, jobRevision: 5, causationId: null });
    const took = Date.now() - t0;
    expect(seen.map((s) => s.key)).toEqual(['release-s1', 'release-s1', 'release-s1']);
    expect(seen[1]!.at - seen[0]!.at).toBeGreaterThanOrEqual(950);
    expect(seen[2]!.at - seen[1]!.at).toBeGreaterThanOrEqual(250);
    expect(took).toBeLessThan(5_000);
  });

  it('gives up after the whole command timeout when nothing answers', async () => {
    const nc = await connect({ servers: (await h.nats()).url });
    h.onClose(() => nc.close());
    let asked = 0;
    nc.subscribe(commandSubject(site, 'snapshot-coordinator', 'RequestSnapshot'), { callback: () => { asked++; } });
    await nc.flush();
    const ports = await natsSchedulerPorts(nc, site, actor, 2_500, { attemptMs: 1_000 });
    const t0 = Date.now();
    await expect(ports.requestSnapshot({
      jobId: 'j2', vmId: 'vm-1', snapshotId: 's2', mode: 'full', policyId: null, parent: { none: 'first' }, jobRevision: 1, causationId: null,
    })).rejects.toThrow(/no reply/);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2_400);
    expect(asked).toBe(3);
  });

  it('publishes the work of a transfer again while the work stream does not take it (a leader being elected)', async () => {
    const nc = await connect({ servers: (await h.nats()).url });
    h.onClose(() => nc.close());
    const ports = await natsSchedulerPorts(nc, site, actor, 120_000);
    const jsm = await jetstreamManager(nc);
    const stream = workStreamName(site);
    const config = (await jsm.streams.info(stream)).config;
    await jsm.streams.delete(stream);
    setTimeout(() => { void jsm.streams.add(config); }, 1_500);
    const work = {
      jobId: 'j3', vmId: 'vm-1', vmName: 'vm-1', snapshotId: 's3', policyId: null, repository: 'default', mode: 'full', parent: null,
      nbd: [], jobRevision: 3, causationId: 'c3', lockRetention: null, fileIndex: false,
    } as unknown as TransferWork;
    await ports.enqueueTransfer(work);
    expect((await jsm.streams.info(stream)).state.messages).toBe(1);
  });
});
