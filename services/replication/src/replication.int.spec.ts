// The replication service against a real nats-server and real directory repositories: objects
// larger than a message travel in parts; bytes damaged on the way are refused at the target;
// a scheduled policy copies what the target lacks; an after-backup policy with a delay copies
// no earlier than the delay after the backup; the copy restores with the source's key only.
import { randomUUID } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { newEvent, replicationSubject, type CommandName, type CommandPayloadMap, type CommandResultMap } from '@cairn/contracts';
import { createJetStreamEventLog, type EventLog } from '@cairn/eventlog';
import { CommandBus } from '@cairn/messaging';
import {
  copyRestorePoint, DirectoryBackend, initRepository, openRepository, sha256Hex, type Repository,
} from '@cairn/repository';
import { useHarness, waitFor } from '@cairn/testing';
import { RemoteSink } from './remote-sink.ts';
import { startReplication, type RunningReplication } from './replication.main.ts';
import { H, makeHeaders } from './transfer-protocol.ts';

const h = useHarness();
const logger = pino({ level: 'silent' });
const PASS = 'source site key';
const KDF = { N: 1024, r: 8, p: 1 };
const CHUNK = 64 * 1024;

function image(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  let x = seed;
  for (let i = 0; i < size; i += 4) { x = (x * 1103515245 + 12345) & 0x7fffffff; b.writeUInt32LE(i % 8192 < 4096 ? x : 0x41414141, i); }
  return b;
}

describe('replication service', () => {
  let nc: NatsConnection;
  let srcLog: EventLog;
  let dstLog: EventLog;
  let repo: Repository;
  let src: RunningReplication;
  let dst: RunningReplication;
  let dstDir = '';
  const disk = image(40 * CHUNK + 1000, 3);

  const send = async <N extends CommandName>(site: string, name: N, payload: CommandPayloadMap[N]): Promise<CommandResultMap[N]> => {
    const reply = await new CommandBus(nc, { site, actor: { kind: 'user', id: 'test' }, defaultTimeoutMs: 30_000 }).send('replication', name, payload, { idempotencyKey: randomUUID() });
    if (!reply.accepted) throw new Error(`${reply.error.code}: ${reply.error.message}`);
    return reply.result as CommandResultMap[N];
  };

  async function backup(vmId: string, data: Buffer): Promise<{ id: string; time: string }> {
    const w = await repo.writeRestorePoint({ vm: { id: vmId, name: vmId }, disks: [{ name: 'disk0', sizeBytes: data.length, extents: [{ offset: 0, data }] }] });
    const jobId = randomUUID();
    const d = w.disks[0]!;
    const e = newEvent('RestorePointCommitted', {
      restorePointId: w.restorePointId, jobId, vmId, parentId: null,
      disks: [{ name: 'disk0', sizeBytes: d.sizeBytes, bytesRead: d.bytesRead, bytesStored: d.bytesStored, chunksNew: d.chunksNew, chunksReused: d.chunksReused }],
    }, { site: 'src', actor: { kind: 'service', id: 'test' }, streamId: `job-${jobId}` });
    await srcLog.append(`job-${jobId}`, [e], { expectedRevision: 'any' });
    return { id: w.restorePointId, time: e.time };
  }

  const replicaEvents = async () => {
    const out: Array<{ restorePointId: string; time: string }> = [];
    for await (const r of dstLog.readAll()) if (r.event.type === 'ReplicaCommitted') out.push({ restorePointId: r.event.data.restorePointId, time: r.event.time });
    return out;
  };

  beforeAll(async () => {
    const server = await h.nats();
    nc = await connect({ servers: server.url });
    h.onClose(() => nc.close());
    srcLog = await createJetStreamEventLog({ nc, site: 'src' });
    dstLog = await createJetStreamEventLog({ nc, site: 'dst' });
    repo = await initRepository(new DirectoryBackend(await h.tmpDir(), { createRoot: true, fsync: false }), { passphrase: PASS, kdf: KDF, chunkSize: CHUNK });
    h.onClose(() => repo.close());
    dstDir = await h.tmpDir();
    src = await startReplication({ nc, log: srcLog, site: 'src', repository: repo, replicasDir: await h.tmpDir(), logger, ackWaitMs: 2000, maxRetryDelayMs: 500 });
    const own = await initRepository(new DirectoryBackend(await h.tmpDir(), { createRoot: true, fsync: false }), { passphrase: 'dst key', kdf: KDF });
    h.onClose(() => own.close());
    dst = await startReplication({ nc, log: dstLog, site: 'dst', repository: own, replicasDir: dstDir, logger, ackWaitMs: 2000 });
  });
  afterAll(async () => { await src?.close(); await dst?.close(); });

  it('sends objects larger than a message in parts; the copy restores with the source key only', async () => {
    const { id } = await backup('vm-parts', disk);
    const sink = new RemoteSink(nc, 'src', 'dst', { maxPart: 10_000 });
    sink.commitMeta = { vmId: 'vm-parts', vmName: 'vm-parts', jobId: null, policyId: null, sourceCommittedAt: new Date().toISOString(), disks: [{ name: 'disk0', sizeBytes: disk.length }], chunksSent: 0, pagesSent: 0 };
    const r = await copyRestorePoint(repo.replicationSource(), sink, id);
    expect(r.committed).toBe(true);
    expect(sink.stats.requests).toBeGreaterThan(r.chunksSent + r.pagesSent); // several parts per chunk
    expect((await dst.receiver.target('src').verify()).ok).toBe(true);
    const copy = await openRepository(new DirectoryBackend(join(dstDir, 'src')), { passphrase: PASS });
    h.onClose(() => copy.close());
    const out = join(await h.tmpDir(), 'disk0.raw');
    await copy.restoreDisk(id, 'disk0', out);
    expect((await readFile(out)).equals(disk)).toBe(true);
    await expect(openRepository(new DirectoryBackend(join(dstDir, 'src')), { passphrase: 'dst key' })).rejects.toThrow(/wrong passphrase/);
    expect((await replicaEvents()).map((e) => e.restorePointId)).toContain(id);
  });

  it('refuses an object whose bytes changed on the way, and stores nothing', async () => {
    const source = repo.replicationSource();
    const [page] = await source.pages((await repo.listRestorePoints())[0]!.id);
    const chunk = await source.sealed('chunk', (await source.pageChunks(page!))[0]!);
    const bad = Buffer.from(chunk.bytes);
    bad[40]! ^= 1;
    const reply = await nc.request(replicationSubject('dst', 'src', 'put'), bad, {
      timeout: 5000,
      headers: makeHeaders({ [H.kind]: 'chunk', [H.id]: '0'.repeat(64), [H.sha256]: sha256Hex(chunk.bytes), [H.part]: '0', [H.parts]: '1' }),
    });
    expect(reply.headers?.get(H.status)).toBe('error');
    expect(reply.json<{ code: string }>().code).toBe('integrity');
    expect(await dst.receiver.target('src').missing([{ kind: 'chunk', id: '0'.repeat(64) }])).toHaveLength(1);
  });

  it('a target that lost its copy is given the identity again before any object', async () => {
    const first = await backup('vm-again', image(2 * CHUNK, 21));
    await send('src', 'ReplicateRestorePoint', { restorePointId: first.id, targetSite: 'dst' });
    await rm(join(dstDir, 'src'), { recursive: true, force: true });
    const second = await backup('vm-again', image(2 * CHUNK, 22));
    const r = await send('src', 'ReplicateRestorePoint', { restorePointId: second.id, targetSite: 'dst' });
    expect(r.committed).toBe(true);
    const copy = await openRepository(new DirectoryBackend(join(dstDir, 'src')), { passphrase: PASS });
    h.onClose(() => copy.close());
    expect((await copy.listRestorePoints()).map((p) => p.id)).toEqual([second.id]);
  });

  it('scheduled policies (interval, cron) copy every restore point the target lacks; an after-backup policy waits its delay', async () => {
    const scheduled = await backup('vm-sched', image(5 * CHUNK, 9));
    await send('src', 'CreateReplicationPolicy', { name: 'nightly', targetSites: ['dst'], vmIds: ['vm-sched'], trigger: { kind: 'schedule', everyMs: 1000 }, delayMs: 0 });
    await waitFor(async () => (await replicaEvents()).some((e) => e.restorePointId === scheduled.id), { timeoutMs: 30_000, intervalMs: 200, what: 'the scheduled copy' });

    const nightly = await backup('vm-cron', image(2 * CHUNK, 13));
    await send('src', 'CreateReplicationPolicy', { name: 'cron', targetSites: ['dst'], vmIds: ['vm-cron'], trigger: { kind: 'cron', cron: '* * * * * *', timezone: 'Europe/Paris' }, delayMs: 0 });
    await waitFor(async () => (await replicaEvents()).some((e) => e.restorePointId === nightly.id), { timeoutMs: 30_000, intervalMs: 200, what: 'the cron copy' });
    await expect(send('src', 'CreateReplicationPolicy', { name: 'bad', targetSites: ['dst'], trigger: { kind: 'cron', cron: 'every night ok', timezone: 'UTC' }, delayMs: 0 }))
      .rejects.toThrow(/invalid_command/);

    const { policyId } = await send('src', 'CreateReplicationPolicy', { name: 'later', targetSites: ['dst'], vmIds: ['vm-late'], trigger: { kind: 'after-backup' }, delayMs: 1500 });
    const late = await backup('vm-late', image(3 * CHUNK, 11));
    const copied = await waitFor(async () => (await replicaEvents()).find((e) => e.restorePointId === late.id), { timeoutMs: 30_000, intervalMs: 200, what: 'the delayed copy' });
    expect(Date.parse(copied.time) - Date.parse(late.time)).toBeGreaterThanOrEqual(1500);
    await send('src', 'DeleteReplicationPolicy', { policyId });
    expect(src.replication.policies.has(policyId)).toBe(false);
    await expect(send('src', 'CreateReplicationPolicy', { name: 'self', targetSites: ['src'], trigger: { kind: 'after-backup' }, delayMs: 0 })).rejects.toThrow(/itself/);
  });
});
