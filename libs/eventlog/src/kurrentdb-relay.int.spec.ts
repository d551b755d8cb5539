import { describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { newEvent } from '@cairn/contracts';
import { useHarness } from '@cairn/testing';
import { InMemoryCheckpointStore } from './checkpoint-store.ts';
import { InMemoryEventLog } from './in-memory-event-log.adapter.ts';
import { JetStreamEventLog } from './jetstream-event-log.adapter.ts';
import { startKurrentDbRelay } from './kurrentdb-relay.adapter.ts';
import type { Recorded } from './event-log.port.ts';

// The relay follows any subscribable log; here an in-memory one stands in for KurrentDB
// (no server here), which exercises the NATS side: subjects, headers, idempotence, resume.
describe('KurrentDB relay to NATS', () => {
  const h = useHarness();
  const actor = { kind: 'service' as const, id: 'relay-test' };

  it('republishes every event once on its subject, with its revision, and resumes from its checkpoint', async () => {
    const server = await h.nats();
    const nc = await connect({ servers: server.url });
    h.onClose(() => nc.close());
    const source = new InMemoryEventLog('site-r');
    const checkpoints = new InMemoryCheckpointStore();
    const jobs = ['a', 'b', 'c'];
    for (const j of jobs) {
      await source.append(`job-${j}`, [
        newEvent('JobRequested', { jobId: j, vmId: 'vm-1', policyId: null, mode: 'full', trigger: 'manual' }, { site: 'site-r', actor, streamId: `job-${j}` }),
        newEvent('JobStarted', { jobId: j, attempt: 1 }, { site: 'site-r', actor, streamId: `job-${j}` }),
      ], { expectedRevision: 'no_stream' });
    }
    const target = await JetStreamEventLog.open({ nc, site: 'site-r' });
    const relay = await startKurrentDbRelay({ source, nc, site: 'site-r', checkpointStore: checkpoints });
    const waitHead = async (n: bigint) => {
      for (let i = 0; i < 200 && (await target.headPosition()) < n; i++) await new Promise((r) => setTimeout(r, 25));
    };
    await waitHead(6n);
    await relay.stop();
    expect(relay.position).toBe(6n);

    // a relay that crashed before saving its checkpoint republishes: the duplicates are dropped
    await checkpoints.save('kurrentdb-relay', 2n);
    await source.append('job-d', [newEvent('JobStarted', { jobId: 'd', attempt: 1 }, { site: 'site-r', actor, streamId: 'job-d' })], { expectedRevision: 'any' });
    const again = await startKurrentDbRelay({ source, nc, site: 'site-r', checkpointStore: checkpoints });
    await waitHead(7n);
    await new Promise((r) => setTimeout(r, 200));
    await again.stop();

    const relayed: Recorded[] = [];
    for await (const r of target.readAll()) relayed.push(r);
    const original: Recorded[] = [];
    for await (const r of source.readAll()) original.push(r);
    expect(relayed.map((r) => r.event.id)).toEqual(original.map((r) => r.event.id));
    expect(relayed.map((r) => [r.event.streamId, r.revision])).toEqual(original.map((r) => [r.event.streamId, r.revision]));
    expect(await checkpoints.load('kurrentdb-relay')).toBe(7n);
    // what the services see is a normal JetStream log: appends continue the relayed revisions
    const stream = [];
    for await (const r of target.readStream('job-b')) stream.push(r.revision);
    expect(stream).toEqual([0n, 1n]);
  });
});
