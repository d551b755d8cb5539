import { describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { newEvent } from '@cairn/contracts';
import { useHarness } from '@cairn/testing';
import { JetStreamEventLog } from './jetstream-event-log.adapter.ts';
import { NatsKvCheckpointStore } from './nats-kv-checkpoint-store.adapter.ts';
import { resetProjection, runProjection } from './projection-runner.ts';
import type { InvalidRecord } from './errors.ts';

describe('projection runner with checkpoints in NATS KV', () => {
  const h = useHarness();
  const actor = { kind: 'service' as const, id: 'catalogue' };

  it('resumes after its checkpoint in another process, reports bad records, and replays after a reset', async () => {
    const server = await h.nats();
    const nc = await connect({ servers: server.url });
    h.onClose(() => nc.close());
    const log = await JetStreamEventLog.open({ nc, site: 'site-p' });
    const append = async (vmId: string) => (await log.append(`vm-${vmId}`, [
      newEvent('VmDiscovered', { vmId, name: vmId, hypervisor: { kind: 'qemu', host: 'h' }, tags: [], disks: [] }, { site: 'site-p', actor, streamId: `vm-${vmId}` }),
    ], { expectedRevision: 'no_stream' })).position;

    const store = await NatsKvCheckpointStore.open(nc, 'cairn_checkpoints_site_p');
    expect(await store.load('vms')).toBe(0n);
    await append('a');
    await append('b');
    const seen: string[] = [];
    const first = await runProjection({ name: 'vms', log, checkpointStore: store, handle: (r) => { seen.push(r.event.streamId); } });
    await first.waitForPosition(2n);
    await first.stop();

    // "another process": a new store object on a new connection
    const nc2 = await connect({ servers: server.url });
    h.onClose(() => nc2.close());
    const store2 = await NatsKvCheckpointStore.open(nc2, 'cairn_checkpoints_site_p');
    expect(await store2.load('vms')).toBe(2n);
    await append('c');
    const bad: InvalidRecord[] = [];
    await nc.publish('cairn.site-p.evt.vm.vm-x', new TextEncoder().encode('garbage'));
    const last = await append('d');
    const second = await runProjection({
      name: 'vms', log, checkpointStore: store2, handle: (r) => { seen.push(r.event.streamId); }, onInvalid: (r) => { bad.push(r); },
    });
    await second.waitForPosition(last);
    await second.stop();
    expect(seen).toEqual(['vm-a', 'vm-b', 'vm-c', 'vm-d']);
    expect(bad.map((b) => b.error.code)).toEqual(['malformed_json']);

    await resetProjection('vms', store2);
    const rebuilt: string[] = [];
    const third = await runProjection({ name: 'vms', log, checkpointStore: store2, handle: (r) => { rebuilt.push(r.event.streamId); }, onInvalid: () => undefined });
    await third.waitForPosition(last);
    await third.stop();
    expect(rebuilt).toEqual(seen);

    // without onInvalid, the projection stops on the bad record and says where
    await resetProjection('vms', store2);
    const strict = await runProjection({ name: 'vms', log, checkpointStore: store2, handle: () => undefined });
    await expect(strict.done).rejects.toThrow(/unreadable record at position 4/);
    expect(await store2.load('vms')).toBe(3n);
  });
});
