// Replica lifecycle against a real nats-server: a restore point expired or deleted at the
// source is removed at the target (ReplicaExpired in the target's log), the replica GC there
// frees what no other replica uses — without the key — and the replica that stays restores
// byte-identical; a target that is down gets the expiry when it returns; a locked restore
// point's replica stays until the lock ends; a replica GC asked for while a copy is being
// received is deferred, and the copy loses nothing; a replica copied without a refs list stops
// every sweep until a copy by hand sends its list.
import { randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { newEvent, type KnownEvent, type ReplicationPolicy } from '@cairn/contracts';
import { createJetStreamEventLog, type EventLog } from '@cairn/eventlog';
import { copyRestorePoint, DirectoryBackend, initRepository, openRepository, type Repository } from '@cairn/repository';
import { useHarness, waitFor } from '@cairn/testing';
import { RemoteSink } from './remote-sink.ts';
import { startReplication, type RunningReplication } from './replication.main.ts';

const h = useHarness();
const logger = pino({ level: process.env['DBG'] ? 'info' : 'silent' });
const PASS = 'source site key';
const KDF = { N: 1024, r: 8, p: 1 };
const CHUNK = 64 * 1024;
const actor = { kind: 'service', id: 'test' } as const;

function image(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  let x = seed;
  for (let i = 0; i < size; i += 4) { x = (x * 1103515245 + 12345) & 0x7fffffff; b.writeUInt32LE(x, i); }
  return b;
}

async function chunkFiles(dir: string): Promise<Set<string>> {
  const out = new Set<string>();
  for (const sub of await readdir(join(dir, 'chunks')).catch(() => [] as string[])) for (const f of await readdir(join(dir, 'chunks', sub))) out.add(f);
  return out;
}

describe('replica expiry and replica GC', () => {
  let nc: NatsConnection;
  let srcLog: EventLog;
  let dstLog: EventLog;
  let repo: Repository;
  let own: Repository;
  let src: RunningReplication;
  let dst: RunningReplication | undefined;
  let dstDir = '';
  const base = image(24 * CHUNK, 5);

  async function backup(data: Buffer): Promise<string> {
    const w = await repo.writeRestorePoint({ vm: { id: 'vm-1', name: 'vm-1' }, disks: [{ name: 'disk0', sizeBytes: data.length, extents: [{ offset: 0, data }] }] });
    const jobId = randomUUID();
    const d = w.disks[0]!;
    await srcLog.append(`job-${jobId}`, [newEvent('RestorePointCommitted', {
      restorePointId: w.restorePointId, jobId, vmId: 'vm-1', parentId: null,
      disks: [{ name: 'disk0', sizeBytes: d.sizeBytes, bytesRead: d.bytesRead, bytesStored: d.bytesStored, chunksNew: d.chunksNew, chunksReused: d.chunksReused }],
    }, { site: 'src', actor, streamId: `job-${jobId}` })], { expectedRevision: 'any' });
    return w.restorePointId;
  }

  /** What retention does at the source: RestorePointExpired, and the data mover deletes the manifest. */
  async function expire(id: string): Promise<void> {
    await srcLog.append(`restorepoint-${id}`, [newEvent('RestorePointExpired', { restorePointId: id, vmId: 'vm-1', policyId: randomUUID(), reason: 'keepLast 1' },
      { site: 'src', actor, streamId: `restorepoint-${id}` })], { expectedRevision: 'any' });
    await repo.deleteRestorePoint(id);
  }

  const dstEvents = async (): Promise<KnownEvent[]> => {
    const out: KnownEvent[] = [];
    for await (const r of dstLog.readAll()) out.push(r.event);
    return out;
  };
  const has = (type: string, id: string) => async () => (await dstEvents()).some((e) => e.type === type && (e.data as { restorePointId?: string }).restorePointId === id);

  const startDst = async () => {
    dst = await startReplication({ nc, log: dstLog, site: 'dst', repository: own, replicasDir: dstDir, logger, ackWaitMs: 2000, replicaGcGraceMs: 0, replicaGcDelayMs: 50 });
  };

  async function restoreFromCopy(id: string): Promise<Buffer> {
    const copy = await openRepository(new DirectoryBackend(join(dstDir, 'src')), { passphrase: PASS });
    try {
      const out = join(await h.tmpDir(), 'disk0.raw');
      await copy.restoreDisk(id, 'disk0', out);
      return await readFile(out);
    } finally {
      await copy.close();
    }
  }

  beforeAll(async () => {
    const server = await h.nats();
    nc = await connect({ servers: server.url });
    h.onClose(() => nc.close());
    srcLog = await createJetStreamEventLog({ nc, site: 'src' });
    dstLog = await createJetStreamEventLog({ nc, site: 'dst' });
    repo = await initRepository(new DirectoryBackend(await h.tmpDir(), { createRoot: true, fsync: false }), { passphrase: PASS, kdf: KDF, chunkSize: CHUNK });
    h.onClose(() => repo.close());
    own = await initRepository(new DirectoryBackend(await h.tmpDir(), { createRoot: true, fsync: false }), { passphrase: 'dst key', kdf: KDF });
    h.onClose(() => own.close());
    dstDir = await h.tmpDir();
    src = await startReplication({ nc, log: srcLog, site: 'src', repository: repo, replicasDir: await h.tmpDir(), logger, ackWaitMs: 2000, maxRetryDelayMs: 300 });
    await startDst();
    await src.replication.createPolicy({ name: 'to-dst', targetSites: ['dst'], trigger: { kind: 'after-backup' }, delayMs: 0 }, actor, randomUUID());
  });
  afterAll(async () => { await src?.close(); await dst?.close(); });

  it('expiry at the source removes the replica at the target; the replica GC frees only what no other replica uses', async () => {
    const first = await backup(base);
    const changed = Buffer.from(base);
    for (const at of [1, 7, 15]) image(CHUNK, 100 + at).copy(changed, at * CHUNK);
    const second = await backup(changed);
    await waitFor(has('ReplicaCommitted', second), { timeoutMs: 30_000, intervalMs: 100, what: 'both copies' });
    const copyDir = join(dstDir, 'src');
    const before = await chunkFiles(copyDir);
    const firstRefs = (await dst!.receiver.target('src').readRefs(first))!;
    const secondRefs = (await dst!.receiver.target('src').readRefs(second))!;
    const onlyFirst = firstRefs.chunks.filter((c) => !secondRefs.chunks.includes(c));
    expect(onlyFirst).toHaveLength(3);

    await expire(first);
    await waitFor(has('ReplicaExpired', first), { timeoutMs: 30_000, intervalMs: 100, what: 'ReplicaExpired at the target' });
    expect(await dst!.receiver.target('src').hasRestorePoint(first)).toBe(false);
    const gc = await waitFor(async () => (await dstEvents()).find((e) => e.type === 'ReplicaGarbageCollected'), { timeoutMs: 30_000, intervalMs: 100, what: 'the replica GC' });
    expect(gc.data).toMatchObject({ sourceSite: 'src', liveReplicas: 1, withoutRefs: 0, objectsDeleted: 3 + firstRefs.pages.filter((p) => !secondRefs.pages.includes(p)).length });
    const after = await chunkFiles(copyDir);
    expect([...before].filter((c) => !after.has(c)).sort()).toEqual([...onlyFirst].sort());
    for (const c of secondRefs.chunks) expect(after.has(c)).toBe(true);
    expect((await dst!.receiver.target('src').verify()).ok).toBe(true);
    expect((await restoreFromCopy(second)).equals(changed)).toBe(true);
    expect(src.replication.expiriesSent).toBeGreaterThanOrEqual(1);
  });

  it('a target that is down when the source deletes a restore point removes its replica when it returns', async () => {
    const id = await backup(image(6 * CHUNK, 77));
    await waitFor(has('ReplicaCommitted', id), { timeoutMs: 30_000, intervalMs: 100, what: 'the copy' });
    await dst!.close();
    dst = undefined;
    await srcLog.append(`restorepoint-${id}`, [newEvent('RestorePointDeleted', { restorePointId: id, approvalId: randomUUID(), requestedBy: 'alice', approvedBy: 'bob' },
      { site: 'src', actor, streamId: `restorepoint-${id}` })], { expectedRevision: 'any' });
    await repo.deleteRestorePoint(id);
    expect(await has('ReplicaExpired', id)()).toBe(false);
    await startDst();
    const e = await waitFor(async () => (await dstEvents()).find((x) => x.type === 'ReplicaExpired' && x.data.restorePointId === id), { timeoutMs: 30_000, intervalMs: 100, what: 'the expiry after the return' });
    expect(e.data).toMatchObject({ sourceSite: 'src', targetSite: 'dst', reason: expect.stringMatching(/^deleted/) });
    expect(await dst!.receiver.target('src').hasRestorePoint(id)).toBe(false);
  });

  it('a locked restore point keeps its replica until the lock ends', async () => {
    const id = await backup(image(3 * CHUNK, 91));
    await waitFor(has('ReplicaCommitted', id), { timeoutMs: 30_000, intervalMs: 100, what: 'the copy' });
    const retainUntil = new Date(Date.now() + 8000).toISOString();
    await srcLog.append(`restorepoint-${id}`, [newEvent('RestorePointLocked', { restorePointId: id, retainUntil, objectsLocked: 0 },
      { site: 'src', actor, streamId: `restorepoint-${id}` })], { expectedRevision: 'any' });
    const waiting = src.replication.expiriesWaitingForLock;
    await srcLog.append(`restorepoint-${id}`, [newEvent('RestorePointExpired', { restorePointId: id, vmId: 'vm-1', policyId: randomUUID(), reason: 'keepLast 1' },
      { site: 'src', actor, streamId: `restorepoint-${id}` })], { expectedRevision: 'any' });
    await waitFor(async () => src.replication.expiriesWaitingForLock > waiting, { timeoutMs: 30_000, intervalMs: 50, what: 'the expiry seen and put off' });
    expect(Date.now()).toBeLessThan(Date.parse(retainUntil));
    expect(await dst!.receiver.target('src').hasRestorePoint(id)).toBe(true);
    await waitFor(has('ReplicaExpired', id), { timeoutMs: 30_000, intervalMs: 100, what: 'the expiry after the lock' });
    const expiredAt = (await dstEvents()).find((x) => x.type === 'ReplicaExpired' && x.data.restorePointId === id)!.time;
    expect(Date.parse(expiredAt)).toBeGreaterThanOrEqual(Date.parse(retainUntil));
  });

  it('a replica GC while a copy is being received is deferred; afterwards it frees only the expired replica\'s own objects and the copy restores byte-identical', async () => {
    const target = dst!.receiver.target('src');
    const write = async (data: Buffer) => (await repo.writeRestorePoint({ vm: { id: 'vm-2', name: 'vm-2' }, disks: [{ name: 'disk0', sizeBytes: data.length, extents: [{ offset: 0, data }] }] })).restorePointId;
    const old = image(20 * CHUNK, 300);
    const oldId = await write(old);
    await src.replication.copy(oldId, 'dst');
    // The next restore point keeps half of the old one's chunks and has 20 new ones, sent slowly.
    const next = Buffer.concat([old.subarray(0, 10 * CHUNK), image(20 * CHUNK, 301)]);
    const nextId = await write(next);
    const oldRefs = (await target.readRefs(oldId))!;
    const slow = { policyId: randomUUID(), name: 'slow', sourceSite: 'src', targetSites: ['dst'], trigger: { kind: 'after-backup' }, delayMs: 0, bandwidthBytesPerSec: 256 * 1024 } as ReplicationPolicy;
    const received = dst!.receiver.objectsReceived;
    const copying = src.replication.copy(nextId, 'dst', { policy: slow });
    await waitFor(() => dst!.receiver.objectsReceived > received, { timeoutMs: 30_000, intervalMs: 20, what: 'the copy under way' });
    // The old one expires meanwhile (sent by hand here: in-process, an expiry waits for the copy).
    expect(await new RemoteSink(nc, 'src', 'dst').expire(oldId, 'expired: test')).toEqual({ held: true });
    const during = await dst!.receiver.gc('src', 0);
    expect(await target.hasRestorePoint(nextId)).toBe(false); // the copy was still running
    expect(during).toMatchObject({ deferred: true, objectsDeleted: 0 });
    expect((await copying).committed).toBe(true);

    const before = await chunkFiles(join(dstDir, 'src'));
    const after = await dst!.receiver.gc('src', 0);
    expect(after).toMatchObject({ deferred: false, withoutRefs: 0 });
    const nextRefs = (await target.readRefs(nextId))!;
    // Everything no live replica references goes (the old one's own 10 chunks, and what
    // earlier expiries left while their GC was deferred by a copy); everything referenced stays.
    const events = await dstEvents();
    const expired = new Set(events.filter((e) => e.type === 'ReplicaExpired').map((e) => e.data.restorePointId));
    const live = new Set<string>();
    for (const e of events) {
      if (e.type !== 'ReplicaCommitted' || expired.has(e.data.restorePointId)) continue;
      for (const c of (await target.readRefs(e.data.restorePointId))!.chunks) live.add(c);
    }
    const now = await chunkFiles(join(dstDir, 'src'));
    const gone = [...before].filter((c) => !now.has(c)).sort();
    expect(gone).toEqual([...before].filter((c) => !live.has(c)).sort());
    expect(gone).toEqual(expect.arrayContaining(oldRefs.chunks.filter((c) => !nextRefs.chunks.includes(c))));
    for (const c of live) expect(now.has(c)).toBe(true);
    expect((await target.verify()).ok).toBe(true);
    expect((await restoreFromCopy(nextId)).equals(next)).toBe(true);
  });

  it('a replica without a refs list (an older copy) stops every sweep; a copy by hand sends its list', async () => {
    const target = dst!.receiver.target('src');
    const data = image(4 * CHUNK, 400);
    const id = (await repo.writeRestorePoint({ vm: { id: 'vm-3', name: 'vm-3' }, disks: [{ name: 'disk0', sizeBytes: data.length, extents: [{ offset: 0, data }] }] })).restorePointId;
    // As an older version copied: no refs list.
    const remote = new RemoteSink(nc, 'src', 'dst');
    remote.commitMeta = { vmId: 'vm-3', vmName: 'vm-3', jobId: null, policyId: null, sourceCommittedAt: new Date().toISOString(), disks: [{ name: 'disk0', sizeBytes: data.length }], chunksSent: 0, pagesSent: 0 };
    await copyRestorePoint(repo.replicationSource(), { adopt: (i) => remote.adopt(i), missing: (r) => remote.missing(r), put: (o) => remote.put(o), commit: (m, p) => remote.commit(m, p) }, id);
    expect(await target.readRefs(id)).toBeUndefined();
    const files = (await chunkFiles(join(dstDir, 'src'))).size;
    expect(await dst!.receiver.gc('src', 0)).toMatchObject({ deferred: false, withoutRefs: 1, objectsDeleted: 0 });
    expect((await chunkFiles(join(dstDir, 'src'))).size).toBe(files);
    const again = await src.replication.copy(id, 'dst', { full: true });
    expect(again).toMatchObject({ committed: false, chunksSent: 0 });
    expect((await target.readRefs(id))!.chunks).toHaveLength(4);
    expect(await dst!.receiver.gc('src', 0)).toMatchObject({ deferred: false, withoutRefs: 0 });
  });
});
