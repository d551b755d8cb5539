// Verify after replication, against a real nats-server: a copy into the target is verified there
// once the copy went quiet (ReplicaVerified, trigger after-copy, nothing damaged), and on the
// target's schedule; a chunk of the copy flipped on disk is found by the next scheduled verify
// (ReplicaVerified not ok, naming the object), which the notifier turns into a damage notice.
import { randomUUID } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { newEvent, type KnownEvent } from '@cairn/contracts';
import { createJetStreamEventLog, type EventLog } from '@cairn/eventlog';
import { noticeOf } from '@cairn/notifications';
import { DirectoryBackend, initRepository, type Repository } from '@cairn/repository';
import { useHarness, waitFor } from '@cairn/testing';
import { startReplication, type RunningReplication } from './replication.main.ts';

const h = useHarness();
const logger = pino({ level: process.env['DBG'] ? 'info' : 'silent' });
const actor = { kind: 'service', id: 'test' } as const;

describe('verify after replication and on a schedule at the target', () => {
  let srcLog: EventLog;
  let dstLog: EventLog;
  let repo: Repository;
  let src: RunningReplication;
  let dst: RunningReplication;
  let dstDir = '';

  beforeAll(async () => {
    const server = await h.nats();
    const nc: NatsConnection = await connect({ servers: server.url });
    h.onClose(() => nc.close());
    srcLog = await createJetStreamEventLog({ nc, site: 'src' });
    dstLog = await createJetStreamEventLog({ nc, site: 'dst' });
    repo = await initRepository(new DirectoryBackend(await h.tmpDir(), { createRoot: true, fsync: false }), { passphrase: 'k', kdf: { N: 1024, r: 8, p: 1 }, chunkSize: 64 * 1024 });
    h.onClose(() => repo.close());
    const own = await initRepository(new DirectoryBackend(await h.tmpDir(), { createRoot: true, fsync: false }), { passphrase: 'dst', kdf: { N: 1024, r: 8, p: 1 } });
    h.onClose(() => own.close());
    dstDir = await h.tmpDir();
    src = await startReplication({ nc, log: srcLog, site: 'src', repository: repo, replicasDir: await h.tmpDir(), logger, ackWaitMs: 2000, maxRetryDelayMs: 300 });
    dst = await startReplication({
      nc, log: dstLog, site: 'dst', repository: own, replicasDir: dstDir, logger, ackWaitMs: 2000,
      replicaCopyIdleMs: 500, replicaVerifyAfterCopyMs: 200, replicaVerifyEveryMs: 3000,
    });
    await src.replication.createPolicy({ name: 'to-dst', targetSites: ['dst'], trigger: { kind: 'after-backup' }, delayMs: 0 }, actor, randomUUID());
  });
  afterAll(async () => { await src?.close(); await dst?.close(); });

  const verified = async (): Promise<Array<Extract<KnownEvent, { type: 'ReplicaVerified' }>>> => {
    const out: Array<Extract<KnownEvent, { type: 'ReplicaVerified' }>> = [];
    for await (const r of dstLog.readStream('replicacheck-src')) if (r.event.type === 'ReplicaVerified') out.push(r.event);
    return out;
  };

  it('verifies the copy once it went quiet, then on its schedule; finds a flipped chunk and names it', async () => {
    const data = Buffer.alloc(8 * 64 * 1024);
    for (let i = 0; i < data.length; i += 7) data[i] = (i * 31) & 0xff;
    const w = await repo.writeRestorePoint({ vm: { id: 'vm-1', name: 'vm-1' }, disks: [{ name: 'disk0', sizeBytes: data.length, extents: [{ offset: 0, data }] }] });
    const jobId = randomUUID();
    const d = w.disks[0]!;
    await srcLog.append(`job-${jobId}`, [newEvent('RestorePointCommitted', {
      restorePointId: w.restorePointId, jobId, vmId: 'vm-1', parentId: null,
      disks: [{ name: 'disk0', sizeBytes: d.sizeBytes, bytesRead: d.bytesRead, bytesStored: d.bytesStored, chunksNew: d.chunksNew, chunksReused: d.chunksReused }],
    }, { site: 'src', actor, streamId: `job-${jobId}` })], { expectedRevision: 'no_stream' });

    const afterCopy = await waitFor(async () => (await verified()).find((e) => e.data.trigger === 'after-copy'), { timeoutMs: 60_000, intervalMs: 200, what: 'a verify after the copy' });
    expect(afterCopy.data).toMatchObject({ sourceSite: 'src', ok: true, damagedCount: 0 });
    expect(afterCopy.data.objectsChecked).toBeGreaterThan(8);
    await waitFor(async () => (await verified()).some((e) => e.data.trigger === 'schedule' && e.data.ok), { timeoutMs: 30_000, intervalMs: 200, what: 'a scheduled verify' });

    // One chunk of the copy flipped on the target's disk.
    const sub = (await readdir(join(dstDir, 'src', 'chunks')))[0]!;
    const name = (await readdir(join(dstDir, 'src', 'chunks', sub)))[0]!;
    const file = join(dstDir, 'src', 'chunks', sub, name);
    const bytes = await readFile(file);
    bytes[Math.floor(bytes.length / 2)]! ^= 0x01;
    await writeFile(file, bytes);
    const flippedAt = Date.now();
    const found = await waitFor(async () => (await verified()).find((e) => e.data.trigger === 'schedule' && !e.data.ok && Date.parse(e.time) > flippedAt),
      { timeoutMs: 30_000, intervalMs: 200, what: 'a scheduled verify that finds the flipped chunk' });
    expect(found.data.damagedCount).toBe(1);
    expect(found.data.damaged[0]).toMatchObject({ kind: 'chunk', damage: 'digest-mismatch' });
    expect(name).toContain(found.data.damaged[0]!.id);
    // The notifier's rule: a damaged replica is a critical damage-found notice.
    expect(noticeOf(found, 1n, { vmOf: () => undefined })).toMatchObject({ kind: 'damage-found', severity: 'critical' });
  }, 120_000);
});
