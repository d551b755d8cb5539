// Replication lag watch against a real nats-server and real directory repositories: an
// after-backup policy allowing 30 min of lag; the target cut off (its replication service
// stopped) while backups go on gives exactly one ReplicationBehind (source, target, lag, the
// newest restore point not there), however often the watch runs; once the target is back and
// the waiting copy went through, exactly one ReplicationCaughtUp.
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { pino } from 'pino';
import { newEvent, type KnownEvent } from '@cairn/contracts';
import { createJetStreamEventLog } from '@cairn/eventlog';
import { DirectoryBackend, initRepository } from '@cairn/repository';
import { useHarness, waitFor } from '@cairn/testing';
import { startReplication } from './replication.main.ts';

const h = useHarness();
const logger = pino({ level: 'silent' });
const KDF = { N: 1024, r: 8, p: 1 };
const CHUNK = 64 * 1024;

describe('replication lag watch (real log, real target)', () => {
  it('target cut off while backups continue: one ReplicationBehind; back and copied: one ReplicationCaughtUp', async () => {
    const nc = await connect({ servers: (await h.nats()).url });
    h.onClose(() => nc.close());
    const srcLog = await createJetStreamEventLog({ nc, site: 'lagsrc' });
    const dstLog = await createJetStreamEventLog({ nc, site: 'lagdst' });
    const repo = await initRepository(new DirectoryBackend(await h.tmpDir(), { createRoot: true, fsync: false }), { passphrase: 'src key', kdf: KDF, chunkSize: CHUNK });
    h.onClose(() => repo.close());
    const own = await initRepository(new DirectoryBackend(await h.tmpDir(), { createRoot: true, fsync: false }), { passphrase: 'dst key', kdf: KDF });
    h.onClose(() => own.close());
    const dstDir = await h.tmpDir();
    const src = await startReplication({ nc, log: srcLog, site: 'lagsrc', repository: repo, replicasDir: await h.tmpDir(), logger, ackWaitMs: 2000, maxRetryDelayMs: 500, lagWatchMs: 0 });
    h.onClose(() => src.close());
    const startTarget = () => startReplication({ nc, log: dstLog, site: 'lagdst', repository: own, replicasDir: dstDir, logger, ackWaitMs: 2000, lagWatchMs: 0 });
    let dst = await startTarget();

    const backup = async (seed: number) => {
      const data = Buffer.alloc(2 * CHUNK, seed);
      const w = await repo.writeRestorePoint({ vm: { id: 'vm-lag', name: 'vm-lag' }, disks: [{ name: 'disk0', sizeBytes: data.length, extents: [{ offset: 0, data }] }] });
      const jobId = randomUUID();
      const d = w.disks[0]!;
      await srcLog.append(`job-${jobId}`, [newEvent('RestorePointCommitted', {
        restorePointId: w.restorePointId, jobId, vmId: 'vm-lag', parentId: null,
        disks: [{ name: 'disk0', sizeBytes: d.sizeBytes, bytesRead: d.bytesRead, bytesStored: d.bytesStored, chunksNew: d.chunksNew, chunksReused: d.chunksReused }],
      }, { site: 'lagsrc', actor: { kind: 'service', id: 'test' }, streamId: `job-${jobId}` })], { expectedRevision: 'any' });
      return w.restorePointId;
    };
    const replicas = async () => {
      const out: string[] = [];
      for await (const r of dstLog.readAll({ category: 'replica' })) if (r.event.type === 'ReplicaCommitted') out.push(r.event.data.restorePointId);
      return out;
    };
    const lagEvents = async () => {
      const out: KnownEvent[] = [];
      for await (const r of srcLog.readAll({ category: 'repllag' })) out.push(r.event);
      return out;
    };

    await src.replication.createPolicy({ name: 'offsite', targetSites: ['lagdst'], vmIds: ['vm-lag'], trigger: { kind: 'after-backup' }, delayMs: 0, maxLagMinutes: 30 }, { kind: 'user', id: 'ops' }, 'c-1');
    const first = await backup(1);
    await waitFor(async () => (await replicas()).includes(first), { timeoutMs: 60_000, intervalMs: 200, what: 'the first copy' });
    await src.replication.watchLag(new Date(Date.now() + 60 * 60_000));
    expect(await lagEvents()).toEqual([]);

    // The target is cut off; backups go on.
    await dst.close();
    const second = await backup(2);
    const third = await backup(3);
    await src.replication.watchLag(new Date(Date.now() + 10 * 60_000));
    expect(await lagEvents()).toEqual([]); // within the 30 minutes allowed
    for (let i = 0; i < 3; i++) await src.replication.watchLag(new Date(Date.now() + 45 * 60_000));
    let events = await lagEvents();
    expect(events.map((e) => [e.type, e.streamId])).toEqual([['ReplicationBehind', expect.stringMatching(/^repllag-.+-lagdst$/)]]);
    expect(events[0]!.data).toMatchObject({
      sourceSite: 'lagsrc', targetSite: 'lagdst', maxLagMinutes: 30, unreplicated: 2,
      oldestUnreplicated: { restorePointId: second, vmId: 'vm-lag' }, newestUnreplicated: { restorePointId: third, vmId: 'vm-lag' },
    });
    expect((events[0]!.data as { lagMinutes: number }).lagMinutes).toBeGreaterThanOrEqual(44);
    expect(events[0]!.actor).toEqual({ kind: 'service', id: 'replication@lagsrc' });

    // The target is back: the waiting copies go through, the watch says caught up, once.
    dst = await startTarget();
    h.onClose(() => dst.close());
    await waitFor(async () => { const r = await replicas(); return r.includes(second) && r.includes(third); }, { timeoutMs: 90_000, intervalMs: 250, what: 'the copies after the target came back' });
    for (let i = 0; i < 3; i++) await src.replication.watchLag(new Date(Date.now() + 50 * 60_000));
    events = await lagEvents();
    expect(events.map((e) => e.type)).toEqual(['ReplicationBehind', 'ReplicationCaughtUp']);
    expect(events[1]!.data).toMatchObject({ sourceSite: 'lagsrc', targetSite: 'lagdst', unreplicated: 0 });
  }, 180_000);
});
