// Several sites on loopback: a hub and sites A and B, each its own nats-server (B and A are
// leaf nodes of the hub, each its own JetStream domain) and its own Cairn stack. Shows, in
// order: replication A→B with the bytes sent for an incremental against the compressed bytes
// of its new chunks; B cut off while A keeps backing up, then catching up with the hub's view
// complete; the replication process SIGKILLed midway and resumed without sending a finished
// chunk twice; a chunk damaged at B found by the keyless verify and repaired from A; restore
// points expired at A (once with B away) removed at B, B's replica GC deferred while a copy is
// received, then freeing exactly what no other replica uses, the copy restoring byte-identical; and A's repository deleted, its VM restored
// at B from the replica, byte-identical.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CatalogueClient } from '@cairn/catalogue-client';
import { newEvent, replicationSubject, type CommandName, type CommandPayloadMap, type CommandResultMap } from '@cairn/contracts';
import { CommandBus } from '@cairn/messaging';
import { startHub, startStack, type Hub, type Stack } from '@cairn/cli';
import { useHarness, waitFor } from '@cairn/testing';
import { CAIRN, cli, ROOT } from './e2e-helpers.ts';
import { backup, changeChunks, chunkFiles, discoverVm, makeImage, type Vm } from './sites-helpers.ts';

const h = useHarness();
const MiB = 1024 * 1024;

describe('several sites: hub, A and B', () => {
  let hub: Hub;
  let a: Stack;
  let b: Stack;
  let child: ChildProcess | undefined;
  const vmA: Vm = { vmId: 'vm-a-1', name: 'alpha', size: 16 * MiB };
  const vmB: Vm = { vmId: 'vm-b-1', name: 'bravo', size: 4 * MiB };
  const imageA = makeImage(vmA.size, 7);
  const pointsA: string[] = [];
  const imagesA = new Map<string, Buffer>();
  let lastA = '';

  const send = async <N extends CommandName>(stack: Pick<Stack, 'nc' | 'site'>, service: string, name: N, payload: CommandPayloadMap[N], timeoutMs = 60_000): Promise<CommandResultMap[N]> => {
    const bus = new CommandBus(stack.nc, { site: stack.site, actor: { kind: 'user', id: 'sites-e2e' }, defaultTimeoutMs: timeoutMs });
    const reply = await bus.send(service, name, payload, { idempotencyKey: randomUUID(), timeoutMs });
    if (!reply.accepted) throw new Error(`${name} refused: ${reply.error.code}: ${reply.error.message}`);
    return reply.result as CommandResultMap[N];
  };
  const replicasAt = async (stack: Stack, site: string) =>
    (await new CatalogueClient(stack.nc, { site }).query('replica.list', { limit: 1000 })).items;

  beforeAll(async () => {
    hub = await startHub({ dataDir: await h.tmpDir('cairn-hub-'), sites: ['a', 'b'] });
    h.onClose(() => hub.stop());
    const quick = { ackWaitMs: 3000, maxRetryDelayMs: 1000, recordReceived: true };
    a = await startStack({ dataDir: await h.tmpDir('cairn-site-a-'), site: 'a', hub: hub.leafUrl, without: ['scheduler'], replication: quick });
    h.onClose(() => a.stop());
    b = await startStack({ dataDir: await h.tmpDir('cairn-site-b-'), site: 'b', hub: hub.leafUrl, without: ['scheduler'], replication: quick, replicaPassphrases: { a: a.passphrase } });
    h.onClose(() => b.stop());
    // The leaf connections are up when A reaches B's receiver through the hub.
    await waitFor(async () => (await a.nc.request(replicationSubject('b', 'a', 'has-rp'), '20000101T000000Z-000000000000', { timeout: 1000 })).headers?.get('Cairn-Status') === 'ok',
      { timeoutMs: 30_000, intervalMs: 200, what: 'site A to reach site B through the hub' });
    await discoverVm(a, vmA);
    await discoverVm(b, vmB);
  }, 120_000);

  afterAll(() => { child?.kill('SIGKILL'); });

  async function backupA(changed: number): Promise<{ id: string; newChunkBytes: number }> {
    const before = await chunkFiles(join(a.dataDir, 'repository'));
    const parent = lastA ? { id: lastA, chunks: changeChunks(imageA, a.repository.chunkSize, changed, pointsA.length + 1) } : undefined;
    const id = await backup(a, vmA, imageA, parent);
    let newChunkBytes = 0;
    for (const [chunk, size] of await chunkFiles(join(a.dataDir, 'repository'))) if (!before.has(chunk)) newChunkBytes += size;
    pointsA.push(id);
    imagesA.set(id, Buffer.from(imageA));
    lastA = id;
    return { id, newChunkBytes };
  }

  it('replicates A to B after each backup; an incremental sends at most 1.1× the compressed bytes of its new chunks', async () => {
    await send(a, 'replication', 'CreateReplicationPolicy', { name: 'a-to-b', targetSites: ['b'], vmIds: [vmA.vmId], trigger: { kind: 'after-backup' }, delayMs: 0 });
    const full = await backupA(0);
    await waitFor(async () => (await replicasAt(b, 'b')).some((r) => r.restorePointId === full.id), { timeoutMs: 60_000, intervalMs: 200, what: 'the full at B' });
    const inc = await backupA(6);
    const replica = await waitFor(async () => (await replicasAt(b, 'b')).find((r) => r.restorePointId === inc.id), { timeoutMs: 60_000, intervalMs: 200, what: 'the incremental at B' });
    const copy = a.replication.replication.copies.find((c) => c.restorePointId === inc.id)!;
    const ratio = copy.bytesSent / inc.newChunkBytes;
    console.log(`[sites] incremental: ${copy.chunksSent} new chunks, ${inc.newChunkBytes} compressed bytes; ${copy.bytesSent} bytes sent (all messages); ratio ${ratio.toFixed(4)}`);
    expect(copy.chunksSent).toBe(6);
    expect(copy.chunkBytesSent).toBe(inc.newChunkBytes);
    expect(ratio).toBeLessThanOrEqual(1.1);
    expect(replica).toMatchObject({ sourceSite: 'a', site: 'b', vmId: vmA.vmId, chunksSent: 6 });
    expect(replica.bytesSent).toBe(copy.bytesSent);
  }, 180_000);

  it('B cut off: A keeps backing up; when B returns replication catches up and the hub sees everything once', async () => {
    await b.nats!.stop();
    for (let i = 0; i < 3; i++) await backupA(3);
    await backup(a, vmA, imageA, { id: lastA, chunks: [] }).then((id) => { pointsA.push(id); imagesA.set(id, Buffer.from(imageA)); lastA = id; });
    await new Promise((r) => setTimeout(r, 3000)); // A tries, fails and waits while B is away
    expect(a.replication.replication.copies.filter((c) => pointsA.slice(2).includes(c.restorePointId))).toEqual([]);
    await b.nats!.start();
    const own = await backup(b, vmB, makeImage(vmB.size, 99));

    const atB = await waitFor(async () => {
      const items = await replicasAt(b, 'b');
      return pointsA.every((id) => items.some((r) => r.restorePointId === id)) ? items : undefined;
    }, { timeoutMs: 120_000, intervalMs: 250, what: 'every restore point of A at B' });
    expect(atB.map((r) => r.restorePointId).sort()).toEqual([...pointsA].sort());

    // The hub: A's and B's VMs, restore points and jobs, each marked with its site; A's
    // restore points replicated at B exactly once; nothing missing, nothing twice.
    const global = new CatalogueClient(hub.nc, { site: 'hub' });
    let seen = '';
    const view = await waitFor(async () => {
      const rps = (await global.query('restorePoint.list', { limit: 1000 })).items;
      const reps = (await global.query('replica.list', { limit: 1000 })).items;
      seen = `${rps.length} restore points (${rps.map((r) => r.site).join(',')}), ${reps.length} replicas`;
      return rps.length === pointsA.length + 1 && reps.length === pointsA.length ? { rps, reps } : undefined;
    }, { timeoutMs: 60_000, intervalMs: 250, what: 'the hub to see every restore point and replica' }).catch(async (e: Error) => {
      const { jetstreamManager } = await import('@nats-io/jetstream');
      const hubInfo = await (await jetstreamManager(hub.nc)).streams.info('CAIRN_EVT_HUB', { subjects_filter: 'cairn.hub.>' });
      const bInfo = await (await jetstreamManager(b.nc)).streams.info('CAIRN_EVT_B', { subjects_filter: 'cairn.b.evt.>' });
      const { readFile: rf } = await import('node:fs/promises');
      const hubLog = (await rf(hub.nats.logFile, 'utf8')).split('\n').filter((l) => /source|WRN|ERR/i.test(l)).slice(-15).join('\n');
      const bLog = (await rf(b.nats!.logFile, 'utf8')).split('\n').filter((l) => /WRN|ERR/i.test(l)).slice(-15).join('\n');
      console.log(`HUBLOG\n${hubLog}\nBLOG\n${bLog}`);
      throw new Error(`${e.message}; the hub saw ${seen}; hub stream subjects ${JSON.stringify(hubInfo.state.subjects)} relay ${JSON.stringify(hub.relay.status())}; B stream ${JSON.stringify(bInfo.state.subjects)}`);
    });
    expect(view.rps.filter((r) => r.site === 'a').map((r) => r.restorePointId).sort()).toEqual([...pointsA].sort());
    expect(view.rps.filter((r) => r.site === 'b').map((r) => r.restorePointId)).toEqual([own]);
    expect(view.reps.every((r) => r.site === 'b' && r.sourceSite === 'a')).toBe(true);
    expect(new Set(view.reps.map((r) => r.restorePointId)).size).toBe(pointsA.length);
    const vms = (await global.query('vm.list', {})).items;
    expect(vms.map((v) => [v.vmId, v.site]).sort()).toEqual([[vmA.vmId, 'a'], [vmB.vmId, 'b']]);
    const jobs = (await global.query('job.list', { limit: 1000 })).items;
    expect(jobs.filter((j) => j.site === 'a')).toHaveLength(pointsA.length);
    expect(jobs.filter((j) => j.site === 'b')).toHaveLength(1);
    const policies = (await global.query('replicationPolicy.list', {})).items;
    expect(policies.map((p) => [p.name, p.site, p.targetSites])).toEqual([['a-to-b', 'a', ['b']]]);
    // So does the API of the hub.
    const api = async <T>(path: string): Promise<T> => {
      const r = await fetch(`${hub.gatewayUrl}${path}`, { headers: { Authorization: `Bearer ${hub.gatewayToken}` } });
      expect(r.status, path).toBe(200);
      return (await r.json()) as T;
    };
    expect((await api<{ items: Array<{ site: string }> }>('/v1/vms')).items.map((v) => v.site).sort()).toEqual(['a', 'b']);
    expect((await api<{ items: unknown[] }>('/v1/restore-points?limit=1000')).items).toHaveLength(pointsA.length + 1);
    expect((await api<{ items: Array<{ sourceSite: string; site: string }> }>('/v1/replicas?limit=1000')).items
      .filter((r) => r.sourceSite === 'a' && r.site === 'b')).toHaveLength(pointsA.length);
    // The CLI points at the hub the same way as at a site.
    const listed = await cli(['--nats', hub.natsUrl, '--site', 'hub', '--json', 'replication', 'replicas']);
    expect(listed.code, listed.stderr).toBe(0);
    expect((JSON.parse(listed.stdout) as unknown[]).length).toBe(pointsA.length);
  }, 300_000);

  it('replication SIGKILLed midway resumes without sending a finished chunk twice', async () => {
    // Replication of site A as its own process, as production runs it, slowed to 4 MiB/s.
    await a.replication.close();
    const big: Vm = { vmId: 'vm-a-big', name: 'big', size: 24 * MiB };
    const start = () => {
      const p = spawn(process.execPath, [CAIRN, 'run', 'replication', '--nats', a.natsUrl, '--site', 'a', '--data', join(a.dataDir, 'replication-process'),
        '--repo', join(a.dataDir, 'repository'), '--ack-wait-ms', '3000'], { cwd: ROOT, env: { ...process.env, CAIRN_REPO_PASSPHRASE: a.passphrase, CAIRN_LOG_LEVEL: 'warn' }, stdio: 'ignore' });
      child = p;
      return p;
    };
    start();
    await waitFor(async () => (await send(a, 'replication', 'CreateReplicationPolicy', {
      policyId: 'big-to-b', name: 'big-to-b', targetSites: ['b'], vmIds: [big.vmId], trigger: { kind: 'after-backup' }, delayMs: 0, bandwidthBytesPerSec: 4 * MiB,
    }, 5000).then(() => true, (e: Error) => /exists/.test(e.message))), { timeoutMs: 60_000, intervalMs: 500, what: 'the replication process to take commands' });
    await discoverVm(a, big);
    const received = b.replication.receiver.received;
    const before = new Set(received.keys());
    const newKeys = () => [...received.keys()].filter((k) => !before.has(k) && k.startsWith('a/chunk/'));
    const bigImage = Buffer.alloc(big.size);
    for (let o = 0; o < big.size; o += 4096) bigImage.set(makeImage(4096, o / 4096 + 1), o);
    const bigId = await backup(a, big, bigImage);
    const total = (await a.repository.getManifest(bigId)).disks[0]!.stats.chunksNew;
    await waitFor(() => newKeys().length >= 20, { timeoutMs: 60_000, intervalMs: 50, what: 'part of the big restore point to reach B' });
    child!.kill('SIGKILL');
    const atKill = newKeys().length;
    console.log(`[sites] replication killed after ${atKill} of ${total} chunks`);
    expect(atKill).toBeLessThan(total);
    start();
    await waitFor(async () => (await replicasAt(b, 'b')).some((r) => r.restorePointId === bigId), { timeoutMs: 120_000, intervalMs: 250, what: 'the big restore point at B' });
    const sent = newKeys();
    expect(sent).toHaveLength(total);
    expect(sent.filter((k) => received.get(k) !== 1)).toEqual([]);
    // And over the whole run: no object of A ever reached B twice.
    expect([...received.entries()].filter(([, n]) => n !== 1)).toEqual([]);
  }, 300_000);

  it('a chunk damaged at B: the keyless verify at B reports it; A repairs it', async () => {
    const replicaDir = join(b.dataDir, 'replicas', 'a');
    const chunks = [...(await chunkFiles(replicaDir)).keys()].sort();
    const victim = chunks[Math.floor(chunks.length / 2)]!;
    const file = join(replicaDir, 'chunks', victim.slice(0, 2), victim);
    const bytes = await readFile(file);
    bytes[bytes.length - 100]! ^= 0x5a;
    await writeFile(file, bytes);

    // Through the CLI, as an operator at B and then at A would.
    const verified = await cli(['--nats', b.natsUrl, '--site', 'b', '--json', 'replication', 'verify', '--from', 'a']);
    expect(verified.code).toBe(1);
    const report = JSON.parse(verified.stdout) as CommandResultMap['VerifyReplica'];
    expect(report.ok).toBe(false);
    expect(report.damaged).toEqual([expect.objectContaining({ kind: 'chunk', id: victim, damage: 'digest-mismatch' })]);
    const repaired = await cli(['--nats', a.natsUrl, '--site', 'a', '--json', 'replication', 'repair', '--target', 'b']);
    expect(repaired.code, repaired.stderr).toBe(0);
    expect(JSON.parse(repaired.stdout)).toEqual({ damaged: 1, repaired: 1, unrepairable: [] });
    expect((await send(b, 'replication', 'VerifyReplica', { sourceSite: 'a' }, 300_000)).ok).toBe(true);
    const audit = (await new CatalogueClient(b.nc, { site: 'b' }).query('audit.timeline', { streamId: 'replicacheck-a', limit: 10 })).items.map((e) => e.type);
    expect(audit).toEqual(expect.arrayContaining(['ReplicaVerified', 'ReplicaRepaired']));
  }, 300_000);

  it('restore points expired at A leave B (B away for one of them); B\'s replica GC frees what no other replica uses, a copy running beside it loses nothing', async () => {
    const copyAtB = b.replication.receiver.target('a');
    const replicaDir = join(b.dataDir, 'replicas', 'a');
    // Retention at A, as the scheduler records it; A's data mover deletes the manifest and A's
    // replication (the separate process by now) tells B.
    const expireAtA = async (id: string) => {
      await a.log.append(`restorepoint-${id}`, [newEvent('RestorePointExpired', { restorePointId: id, vmId: vmA.vmId, policyId: randomUUID(), reason: 'keepLast 4' },
        { site: 'a', actor: { kind: 'service', id: 'scheduler@a' }, streamId: `restorepoint-${id}` })], { expectedRevision: 'no_stream' });
      await waitFor(async () => !(await a.repository.listRestorePoints()).some((p) => p.id === id), { timeoutMs: 60_000, intervalMs: 200, what: `A's data mover to expire ${id}` });
    };
    const [first, , third] = pointsA as [string, string, string];
    const gone = [first, third];
    const refsOf = async (id: string) => (await copyAtB.readRefs(id))!;
    const goneChunks = new Set<string>();
    for (const id of gone) for (const c of (await refsOf(id)).chunks) goneChunks.add(c);

    await expireAtA(first);
    await waitFor(async () => !(await replicasAt(b, 'b')).some((r) => r.restorePointId === first), { timeoutMs: 60_000, intervalMs: 200, what: 'the replica gone from B\'s catalogue' });
    expect(await copyAtB.hasRestorePoint(first)).toBe(false);

    // B away while A expires the next one: B removes it when it returns.
    await b.nats!.stop();
    await expireAtA(third);
    await b.nats!.start();
    await waitFor(async () => !(await replicasAt(b, 'b')).some((r) => r.restorePointId === third), { timeoutMs: 120_000, intervalMs: 250, what: 'the expiry at B after its return' });
    expect(await copyAtB.hasRestorePoint(third)).toBe(false);
    const timeline = (await new CatalogueClient(b.nc, { site: 'b' }).query('audit.timeline', { streamId: `replica-${third}`, limit: 10 })).items.map((e) => e.type);
    expect(timeline).toHaveLength(2);
    expect(timeline).toEqual(expect.arrayContaining(['ReplicaCommitted', 'ReplicaExpired']));
    // The hub's view drops them too.
    await waitFor(async () => {
      const reps = (await new CatalogueClient(hub.nc, { site: 'hub' }).query('replica.list', { limit: 1000 })).items;
      return !reps.some((r) => gone.includes(r.restorePointId));
    }, { timeoutMs: 60_000, intervalMs: 250, what: 'the hub to drop the expired replicas' });

    // A new restore point of the big VM (copied at 4 MiB/s by its policy) reaches B while B's
    // replica GC is asked for: deferred while the copy is received; then it runs (CLI).
    const before = await chunkFiles(replicaDir);
    const big: Vm = { vmId: 'vm-a-big', name: 'big', size: 24 * MiB };
    const bigImage = Buffer.from(makeImage(big.size, 4242));
    const receivedBefore = b.replication.receiver.objectsReceived;
    const bigId = await backup(a, big, bigImage);
    await waitFor(() => b.replication.receiver.objectsReceived > receivedBefore + 5, { timeoutMs: 60_000, intervalMs: 50, what: 'the big copy under way' });
    const during = await send(b, 'replication', 'CollectReplicaGarbage', { sourceSite: 'a', graceMs: 0 });
    expect(await copyAtB.hasRestorePoint(bigId)).toBe(false); // the copy was still running
    expect(during).toMatchObject({ deferred: true, objectsDeleted: 0 });
    await waitFor(async () => (await replicasAt(b, 'b')).some((x) => x.restorePointId === bigId), { timeoutMs: 120_000, intervalMs: 250, what: 'the big copy at B' });
    const last = await waitFor(async () => {
      const r = await cli(['--nats', b.natsUrl, '--site', 'b', '--json', 'replication', 'gc', '--from', 'a', '--grace', '0']);
      expect([0, 4], r.stderr).toContain(r.code); // done, or deferred (the automatic run after an expiry may be running)
      return r.code === 0 ? JSON.parse(r.stdout) as CommandResultMap['CollectReplicaGarbage'] : undefined;
    }, { timeoutMs: 120_000, intervalMs: 500, what: 'a replica GC after the copy' });
    expect(last).toMatchObject({ deferred: false, withoutRefs: 0 });

    // Exactly the chunks no remaining replica references are gone; the rest are all there.
    const live = new Set<string>();
    for (const r of await replicasAt(b, 'b')) for (const c of (await refsOf(r.restorePointId)).chunks) live.add(c);
    const after = await chunkFiles(replicaDir);
    const freed = [...before.keys()].filter((c) => !after.has(c));
    const expected = [...goneChunks].filter((c) => !live.has(c));
    expect(expected.length).toBeGreaterThan(0);
    expect(freed.sort()).toEqual(expected.sort());
    for (const c of live) expect(after.has(c)).toBe(true);
    const freedBytes = freed.reduce((n, c) => n + before.get(c)!, 0);
    console.log(`[sites] replica GC at B: ${freed.length} chunks (${freedBytes} bytes) freed of ${before.size}; ${live.size} referenced chunks kept`);
    const verified = await cli(['--nats', b.natsUrl, '--site', 'b', '--json', 'replication', 'verify', '--from', 'a']);
    expect(verified.code, verified.stdout).toBe(0);
    const gcs = (await new CatalogueClient(b.nc, { site: 'b' }).query('audit.timeline', { streamId: 'replicacheck-a', limit: 100 })).items.filter((e) => e.type === 'ReplicaGarbageCollected');
    expect(gcs.length).toBeGreaterThan(0);
    // The copy that ran beside the GC restores at B byte-identical (A still up: B's own
    // repository lacks it, so B's data mover opens the replica with A's key).
    const target = join(b.dataDir, 'restores', 'big-beside-gc.raw');
    const restored = await cli(['--nats', b.natsUrl, '--site', 'b', 'restore', bigId, '--to', target]);
    expect(restored.code, restored.stderr).toBe(0);
    expect((await readFile(target)).equals(bigImage)).toBe(true);
  }, 400_000);

  it('A\'s repository deleted: the VM restores at B from its replica, byte-identical', async () => {
    child?.kill('SIGKILL');
    await a.stop();
    await rm(join(a.dataDir, 'repository'), { recursive: true, force: true });
    const target = join(b.dataDir, 'restores', `${vmA.name}-dr.raw`);
    const r = await cli(['--nats', b.natsUrl, '--site', 'b', 'restore', lastA, '--to', target]);
    expect(r.code, r.stderr).toBe(0);
    expect((await readFile(target)).equals(imagesA.get(lastA)!)).toBe(true);
    const earlier = pointsA[1]!;
    const target2 = join(b.dataDir, 'restores', `${vmA.name}-dr-2.raw`);
    const r2 = await cli(['--nats', b.natsUrl, '--site', 'b', 'restore', earlier, '--to', target2]);
    expect(r2.code, r2.stderr).toBe(0);
    expect((await readFile(target2)).equals(imagesA.get(earlier)!)).toBe(true);
  }, 180_000);
});
