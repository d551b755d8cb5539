// A policy's scheduled test restore that the data mover refuses (a real data mover over a real
// nats-server: the restore point is not in its repository) is not lost in a log line: the
// scheduler records TestRestoreRefused (why) in `testrestore-<id>` once, also when a standby runs
// the same slot again, and the notifier turns it into a test-restore-failed notice.
import { describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { pino } from 'pino';
import { newEvent, type Actor, type KnownEvent } from '@cairn/contracts';
import { createJetStreamEventLog } from '@cairn/eventlog';
import { startDataMover } from '@cairn/data-mover';
import { noticeOf } from '@cairn/notifications';
import { DirectoryBackend, initRepository } from '@cairn/repository';
import { useHarness, waitFor } from '@cairn/testing';
import { Scheduler, natsSchedulerPorts, schedulerConfig } from '@cairn/scheduler';

const site = 'trref';

describe('scheduled test restore refused (real data mover)', () => {
  const h = useHarness();

  it('the mover refuses: TestRestoreRefused once, naming why; a notice for a person', async () => {
    const nc = await connect({ servers: (await h.nats()).url });
    h.onClose(() => nc.close());
    const log = await createJetStreamEventLog({ nc, site });
    h.onClose(() => log.close());
    const repo = await initRepository(new DirectoryBackend(await h.tmpDir(), { createRoot: true, fsync: false }), { passphrase: 'k', kdf: { N: 1024, r: 8, p: 1 } });
    h.onClose(() => repo.close());
    const mover = await startDataMover({ nc, log, site, repositories: new Map([['default', repo]]), restoreRoots: [await h.tmpDir()], dataDir: await h.tmpDir(), logger: pino({ level: 'silent' }) });
    h.onClose(() => mover.close());

    const config = schedulerConfig({ site, tickMs: 3_600_000 });
    const ports = await natsSchedulerPorts(nc, site, config.actor, 30_000);
    const now = { t: Date.now() };
    const scheduler = async () => {
      const s = new Scheduler(config, log, ports, () => new Date(now.t));
      await s.start();
      h.onClose(() => s.stop());
      const head = await log.headPosition();
      await waitFor(() => BigInt(s.health().position) >= head, { what: 'the scheduler to fold the log' });
      return s;
    };
    await log.append('vm-vm-t', [newEvent('VmDiscovered', {
      vmId: 'vm-t', name: 't', hypervisor: { kind: 'qemu', host: 'h1' }, tags: [], disks: [{ name: 'd0', sizeBytes: 1024 }],
    }, { site, actor: { kind: 'service', id: `snapshot-coordinator@${site}` } as Actor, streamId: 'vm-vm-t' })], { expectedRevision: 'any' });
    // A restore point the log knows but the mover's repository does not hold.
    const meta = { site, actor: config.actor, streamId: 'job-j-1' };
    await log.append('job-j-1', [
      newEvent('JobRequested', { jobId: 'j-1', vmId: 'vm-t', policyId: null, mode: 'auto', trigger: 'manual' }, meta),
      newEvent('RestorePointCommitted', { jobId: 'j-1', restorePointId: 'rp-missing', vmId: 'vm-t', parentId: null, disks: [{ name: 'd0', sizeBytes: 1024, bytesRead: 1024, bytesStored: 10, chunksNew: 1, chunksReused: 0 }] }, meta),
    ], { expectedRevision: 'no_stream' });

    const first = await scheduler();
    await first.createPolicy({
      name: 'tested', selector: { names: ['t'] }, schedule: { cron: '0 3 * * *', timezone: 'UTC' },
      retention: { last: 5, daily: 0, weekly: 0, monthly: 0, yearly: 0 }, repository: 'default', keyRef: 'k', priority: 1,
      testRestore: { cron: '0 * * * *', serialPattern: 'login:' },
    }, { kind: 'user', id: 'ops' }, 'c-1');
    const second = await scheduler();
    now.t += 2 * 3_600_000; // an hourly slot is due
    await first.scheduleTestRestores();
    await first.scheduleTestRestores();
    await second.scheduleTestRestores(); // a standby runs the same slot: the same id, nothing twice

    const events: KnownEvent[] = [];
    for await (const r of log.readAll({ category: 'testrestore' })) events.push(r.event);
    expect(events.map((e) => e.type)).toEqual(['TestRestoreRefused']);
    expect(events[0]!.streamId).toMatch(/^testrestore-tr-[0-9a-f]{32}$/);
    expect(events[0]!.actor).toEqual(config.actor);
    expect(events[0]!.data).toMatchObject({ restorePointId: 'rp-missing', vmId: 'vm-t', policyId: expect.any(String) });
    expect((events[0]!.data as { reason: string }).reason).toMatch(/no restore point rp-missing/);
    const n = noticeOf({ id: events[0]!.id, type: events[0]!.type, time: events[0]!.time, site, data: events[0]!.data as Record<string, unknown> }, 1n, { vmOf: () => undefined });
    expect(n).toMatchObject({ kind: 'test-restore-failed', severity: 'error', vmId: 'vm-t' });
  }, 120_000);
});
