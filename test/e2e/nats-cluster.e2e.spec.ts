// A site on a three-node NATS cluster. First the member config in infra/nats/cluster, run as
// written three times: routes form, a stream gets three copies, a member SIGKILLed loses
// nothing and stops nothing, and it catches up when it is back. Then the stack of `cairn up
// --cluster 3` (secure, as `cairn up` runs by default) backing up a real QEMU VM: the member
// leading the event stream is SIGKILLed in the middle of the transfer; the job completes once,
// every event written before the kill is still there, none twice, and the restore is exact.
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { eventStreamName, natsServers, progressSubject, type KnownEvent } from '@cairn/contracts';
import { workStreamName } from '@cairn/jobs';
import { freePort } from '@cairn/nats-server';
import { useHarness, waitFor } from '@cairn/testing';
import { CatalogueClient } from '@cairn/catalogue-client';
import { DEMO_BLOCK, demoBaseBlock, startDemoVm, startStack } from '@cairn/cli';
import { checkRestoredDemoImage, cli, ROOT, waitForJobEnd } from './e2e-helpers.ts';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const DISK_BYTES = 96 * MiB;
// Incompressible data and a bandwidth limit, so the transfer is still running when a member dies.
const RANDOM_AT = 16 * MiB;
const RANDOM_BYTES = 64 * MiB;

/** The demo's disk with a large random region: built raw, then converted to the demo's qcow2. */
async function prepareDisk(dir: string): Promise<(offset: number) => Buffer> {
  await mkdir(dir, { recursive: true });
  const random = randomBytes(RANDOM_BYTES);
  const raw = join(dir, 'disk0.raw');
  const f = await open(raw, 'w');
  try {
    await f.truncate(DISK_BYTES);
    await f.write(Buffer.alloc(RANDOM_AT, 0x5a), 0, RANDOM_AT, 0); // the demo's own base
    await f.write(random, 0, RANDOM_BYTES, RANDOM_AT);
  } finally {
    await f.close();
  }
  await run('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, join(dir, 'disk0.qcow2')]);
  return (offset) => offset >= RANDOM_AT && offset < RANDOM_AT + RANDOM_BYTES
    ? Buffer.from(random.subarray(offset - RANDOM_AT, offset - RANDOM_AT + DEMO_BLOCK))
    : demoBaseBlock(offset);
}

describe('a site on a three-node NATS cluster', () => {
  const h = useHarness();

  it('infra/nats/cluster/node.conf run three times: R3 stream, a member SIGKILLed loses nothing and stops nothing', async () => {
    const ports = await Promise.all([0, 1, 2].map(async () => ({ client: await freePort(), route: await freePort() })));
    const routes = Object.fromEntries(ports.map((p, i) => [`CAIRN_ROUTE_${i + 1}`, `nats-route://127.0.0.1:${p.route}`]));
    const start = async (i: number, store: string) => {
      const p = spawn('nats-server', ['-c', join(ROOT, 'infra', 'nats', 'cluster', 'node.conf'), '-l', join(store, 'nats.log')], {
        stdio: 'ignore',
        env: {
          ...process.env, ...routes, CAIRN_SITE: 'paris', CAIRN_NODE_NAME: `paris-${i + 1}`, CAIRN_NATS_HOST: '127.0.0.1',
          CAIRN_NATS_PORT: String(ports[i]!.client), CAIRN_ROUTE_PORT: String(ports[i]!.route), CAIRN_NATS_STORE: store,
        },
      });
      const exited = new Promise((r) => p.once('exit', r));
      h.onClose(async () => { if (p.exitCode === null && p.signalCode === null) { p.kill('SIGKILL'); await exited; } });
      return { kill: async () => { p.kill('SIGKILL'); await exited; } };
    };
    const stores = await Promise.all([0, 1, 2].map(() => h.tmpDir('cairn-scale-node-')));
    const members = await Promise.all(stores.map((s, i) => start(i, s)));
    const url = ports.map((p) => `nats://127.0.0.1:${p.client}`).join(',');
    const nc = await waitFor(() => connect({ servers: natsServers(url), maxReconnectAttempts: -1 }).catch(() => undefined), { timeoutMs: 30_000, what: 'a member to accept clients' });
    h.onClose(() => nc.close());
    const jsm = await waitFor(() => jetstreamManager(nc, { timeout: 2000 }).catch(() => undefined), { timeoutMs: 60_000, intervalMs: 250, what: 'the cluster\'s JetStream' });
    await waitFor(() => nc.info?.connect_urls?.length === 3 || undefined, { timeoutMs: 30_000, what: 'the client to learn all three members' });
    expect(nc.info?.cluster).toBe('paris');
    await waitFor(() => jsm.streams.add({ name: 'CAIRN_EVT_PARIS', subjects: ['cairn.paris.evt.>'], num_replicas: 3 }).catch(() => undefined),
      { timeoutMs: 60_000, intervalMs: 500, what: 'an R3 stream' });
    const js = jetstream(nc);
    for (let i = 0; i < 50; i++) await js.publish(`cairn.paris.evt.job.job-${i % 5}`, `e${i}`);
    const info = await jsm.streams.info('CAIRN_EVT_PARIS');
    expect(info.config.num_replicas).toBe(3);
    expect(info.cluster?.replicas).toHaveLength(2);

    // The leader dies: the other two elect a new one and keep taking appends.
    const leader = info.cluster!.leader!;
    await members[Number(leader.split('-')[1]) - 1]!.kill();
    for (let i = 50; i < 100; i++) {
      await waitFor(() => js.publish(`cairn.paris.evt.job.job-${i % 5}`, `e${i}`, { msgID: `e${i}`, timeout: 2000 }).catch(() => undefined),
        { timeoutMs: 30_000, intervalMs: 100, what: `append ${i} with a member down` });
    }
    const after = await jsm.streams.info('CAIRN_EVT_PARIS');
    expect(after.state.messages).toBe(100);
    expect(after.cluster?.leader).not.toBe(leader);

    // Back on its store and ports: it catches up to every append.
    const back = Number(leader.split('-')[1]) - 1;
    await start(back, stores[back]!);
    await waitFor(async () => {
      const st = await jsm.streams.info('CAIRN_EVT_PARIS').catch(() => undefined);
      return st?.cluster?.replicas?.find((r) => r.name === leader && r.current) ? true : undefined;
    }, { timeoutMs: 60_000, intervalMs: 250, what: `${leader} to be current again` });
  }, 180_000);

  it('cairn up --cluster 3: the event stream\'s leader SIGKILLed mid-backup, the job completes once and nothing is lost', async () => {
    const dataDir = await h.tmpDir('cairn-e2e-scale-cluster-');
    const base = await prepareDisk(join(dataDir, 'demo'));
    const vm = await startDemoVm(join(dataDir, 'demo'), 'demo', DISK_BYTES);
    h.onClose(() => vm.stop());
    const stack = await startStack({
      dataDir, cluster: 3, secure: true, qemu: [{ qmpSocket: vm.qmpPath }],
      bandwidth: { hostBytesPerSec: 6 * MiB },
      // Down for a while, so the backup goes on on two members before the third is back.
      natsRestartBackoffMs: [4000],
    });
    h.onClose(() => stack.stop());
    const cluster = stack.natsCluster!;
    expect(cluster.members).toHaveLength(3);
    expect(natsServers(stack.natsUrl)).toHaveLength(3);
    const jsm = await jetstreamManager(stack.nc);
    // The site's streams and buckets keep three copies.
    for (const name of [eventStreamName(stack.site), workStreamName(stack.site), 'KV_cairn_processed']) {
      expect((await jsm.streams.info(name)).config.num_replicas, name).toBe(3);
    }
    const catalogue = new CatalogueClient(stack.nc, { site: stack.site });
    await waitFor(async () => (await catalogue.query('vm.list', {})).items.some((v) => v.name === 'demo'), { what: 'demo VM in the catalogue' });
    await vm.write(20);

    const events: KnownEvent[] = [];
    const sub = stack.log.subscribe({ from: 'end', category: 'job' });
    h.onClose(() => sub.stop());
    void (async () => { for await (const r of sub) events.push(r.event); })();
    // The CLI reads the cluster's address from the state file and connects to all three.
    const r = await cli(['--data', dataDir, '--json', 'backup', 'demo']);
    expect(r.code, r.stderr).toBe(0);
    const { jobId } = JSON.parse(r.stdout) as { jobId: string };
    const progress: number[] = [];
    const progressSub = stack.nc.subscribe(progressSubject(stack.site, jobId));
    h.onClose(() => progressSub.unsubscribe());
    void (async () => { for await (const m of progressSub) progress.push((m.json() as { bytesDone: number }).bytesDone); })();
    const ofJob = () => events.filter((e) => e.correlationId === jobId);
    await waitFor(() => ofJob().find((e) => e.type === 'TransferStarted'), { timeoutMs: 90_000, intervalMs: 20, what: 'TransferStarted' });
    await waitFor(() => progress.some((b) => b > 0), { timeoutMs: 60_000, intervalMs: 10, what: 'transfer progress' });

    // Everything recorded so far, then the event stream's leader goes.
    const head = await stack.log.headPosition();
    const before: string[] = [];
    for await (const rec of stack.log.readAll({})) { if (rec.position <= head) before.push(rec.event.id); }
    const leader = (await jsm.streams.info(eventStreamName(stack.site))).cluster!.leader!;
    const victim = cluster.members[cluster.names.indexOf(leader)]!;
    // From outside, as a crash: the stack's supervisor starts it again on its ports and store.
    const victimPid = victim.pid!;
    process.kill(victimPid, 'SIGKILL');
    await waitFor(() => victim.pid !== victimPid || undefined, { timeoutMs: 60_000, intervalMs: 100, what: `${leader} to be started again` });
    expect(ofJob().map((e) => e.type), 'the transfer ended before the member died').not.toContain('RestorePointCommitted');

    const job = await waitForJobEnd(catalogue, jobId, 240_000);
    expect(job.state, JSON.stringify(job.failure)).toBe('completed');
    for (const type of ['TransferStarted', 'RestorePointCommitted', 'SnapshotReleased', 'JobCompleted']) {
      expect(job.events.filter((e) => e.type === type), type).toHaveLength(1);
    }
    // The member is back (the stack restarts it) and current.
    await waitFor(async () => {
      const st = await jsm.streams.info(eventStreamName(stack.site)).catch(() => undefined);
      return st?.cluster?.replicas?.find((x) => x.name === leader && x.current) ? true : undefined;
    }, { timeoutMs: 90_000, intervalMs: 250, what: `${leader} to rejoin and catch up` });
    const health = await stack.health();
    expect(health.filter((x) => x.service.startsWith('nats-server-')).map((x) => x.status)).toEqual(['ok', 'ok', 'ok']);

    // The log: every event from before the kill, in its place; none twice.
    const all: string[] = [];
    for await (const rec of stack.log.readAll({})) all.push(rec.event.id);
    expect(all.slice(0, before.length)).toEqual(before);
    expect(new Set(all).size).toBe(all.length);
    const jobStream: string[] = [];
    for await (const rec of stack.log.readStream(`job-${jobId}`)) jobStream.push(rec.event.type);
    expect(jobStream.filter((t) => t === 'RestorePointCommitted')).toHaveLength(1);

    const points = (await stack.repository.listRestorePoints()).filter((p) => p.labels?.['jobId'] === jobId);
    expect(points.map((p) => p.id)).toEqual([job.restorePointId]);
    const target = join(dataDir, 'restores', 'restored.raw');
    const restored = await cli(['--data', dataDir, 'restore', job.restorePointId!, '--to', target]);
    expect(restored.code, restored.stderr).toBe(0);
    const check = await checkRestoredDemoImage(target, vm.writes, base);
    expect(check, check.reason).toMatchObject({ ok: true, prefix: vm.writes.length });
  }, 420_000);
});
