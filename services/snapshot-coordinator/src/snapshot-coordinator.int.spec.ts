// The coordinator as a child process against real NATS and a real QEMU: commands, events,
// inventory, and a SIGKILL mid-job after which the restarted coordinator leaves nothing
// behind within one lease period.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdir, writeFile, mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { useHarness, waitFor } from '@cairn/testing';
import { createJetStreamEventLog, type EventLog } from '@cairn/eventlog';
import { CommandBus } from '@cairn/messaging';
import { QemuAdapter, QmpClient } from '@cairn/hypervisor';
import { startQemuVm, readExport, type QemuVm } from '@cairn/hypervisor/testing';
import { newEvent, type KnownEvent } from '@cairn/contracts';

const ROOT = resolve(import.meta.dirname, '../../..');
const MAIN = join(ROOT, 'services/snapshot-coordinator/src/snapshot-coordinator.main.ts');
const LEASE_MS = 3000;

describe('snapshot coordinator (child process, real NATS and QEMU)', () => {
  const h = useHarness();
  let dir: string;
  let vm: QemuVm;
  let nc: NatsConnection;
  let log: EventLog;
  let bus: CommandBus;
  let monitor: QmpClient;
  let child: ChildProcess | undefined;
  let configFile: string;
  let output = '';

  async function startCoordinator(): Promise<void> {
    const proc = spawn(join(ROOT, 'node_modules/.bin/tsx'), [MAIN, configFile], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    child = proc;
    let out = '';
    proc.stdout.setEncoding('utf8').on('data', (s: string) => { out += s; output += s; });
    proc.stderr.setEncoding('utf8').on('data', (s: string) => { out += s; output += s; });
    await waitFor(() => {
      if (proc.exitCode !== null) throw new Error(`coordinator exited: ${out}`);
      return out.includes('snapshot coordinator started');
    }, { timeoutMs: 45_000, what: 'coordinator start' });
  }

  async function killCoordinator(signal: NodeJS.Signals): Promise<void> {
    const proc = child;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    // tsx runs the program in a child of its own: signal the whole process group, as a crash
    // of the host (or an OOM kill of the service) would end both.
    process.kill(-proc.pid!, signal);
    await exited;
    await waitFor(() => { try { process.kill(-proc.pid!, 0); return false; } catch { return true; } }, { what: 'coordinator process group gone' });
  }

  /** A job that asked for a snapshot, as the scheduler leaves it: the coordinator records its facts there. */
  async function requestedJob(jobId: string, snapshotId: string): Promise<void> {
    const meta = { site: 'test', actor: { kind: 'service' as const, id: 'scheduler@test' }, streamId: `job-${jobId}` };
    await log.append(`job-${jobId}`, [
      newEvent('JobRequested', { jobId, vmId: 'vm-a', policyId: null, mode: 'auto', trigger: 'manual' }, meta),
      newEvent('JobStarted', { jobId, attempt: 1 }, meta),
      newEvent('SnapshotRequested', { jobId, vmId: 'vm-a', snapshotId }, meta),
    ], { expectedRevision: 'no_stream' });
  }

  async function events(streamId: string): Promise<KnownEvent[]> {
    const out: KnownEvent[] = [];
    for await (const r of log.readStream(streamId)) out.push(r.event);
    return out;
  }

  /** Everything Cairn may have created on the QEMU and beside it. */
  async function leftovers() {
    const nodes = await monitor.execute<Array<{ 'node-name': string; 'dirty-bitmaps'?: Array<{ name?: string }> }>>('query-named-block-nodes', { flat: true });
    return {
      exports: await monitor.execute<unknown[]>('query-block-exports'),
      jobs: await monitor.execute<unknown[]>('query-block-jobs'),
      nodes: nodes.map((n) => n['node-name']).filter((n) => n.startsWith('cairn')),
      bitmaps: nodes.flatMap((n) => (n['dirty-bitmaps'] ?? []).map((b) => b.name)).filter((b) => typeof b === 'string' && b.startsWith('cairn.')),
      files: await readdir(join(dir, 'data/overlays/host1')).catch(() => []),
    };
  }
  const nothingLeft = { exports: [], jobs: [], nodes: [], bitmaps: [], files: [] };

  beforeAll(async () => {
    dir = await h.tmpDir('cairn-sc-');
    const nats = await h.nats();
    vm = await startQemuVm({ dir: join(dir, 'vm'), name: 'vm-a', disks: [{ id: 'vblk0', format: 'qcow2', sizeBytes: 16 << 20 }, { id: 'vblk1', format: 'qcow2', sizeBytes: 4 << 20 }], extraMonitors: 2 });
    h.onClose(() => vm.kill('SIGKILL'));
    h.onClose(() => killCoordinator('SIGKILL'));
    monitor = await QmpClient.connect(vm.monitors[0]!);
    h.onClose(() => monitor.close());
    nc = await connect({ servers: nats.url });
    h.onClose(() => nc.close());
    log = await createJetStreamEventLog({ nc, site: 'test' });
    bus = new CommandBus(nc, { site: 'test', actor: { kind: 'user', id: 'tester' } });
    await mkdir(join(dir, 'data'), { recursive: true });
    configFile = join(dir, 'coordinator.json');
    await writeFile(configFile, JSON.stringify({
      site: 'test', natsUrl: nats.url, dataDir: join(dir, 'data'), leaseMs: LEASE_MS, reapIntervalMs: 250, inventoryIntervalMs: 60_000,
      healthPort: 0,
      instances: [{ name: 'host1', qmpSocket: vm.qmpPath, nbd: { socketPath: join(dir, 'nbd.sock') } }],
    }));
    await startCoordinator();
  });

  afterAll(async () => { await killCoordinator('SIGTERM'); });
  // The coordinator's own log is the first thing to read when a test here fails.
  afterEach((ctx) => { if (ctx.task.result?.state === 'fail') console.error(`coordinator output:\n${output.slice(-8000)}`); });

  it('answers its health check', async () => {
    const line = output.split('\n').find((l) => l.includes('snapshot coordinator started'))!;
    const port = (JSON.parse(line) as { healthPort: number }).healthPort;
    const res = await fetch(`http://127.0.0.1:${port}/health`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok', instances: [{ name: 'host1', connected: true }], openSnapshots: 0 });
  });

  it('publishes the inventory, takes and releases a snapshot', async () => {
    const vmEvents = await waitFor(async () => { const e = await events('vm-vm-a'); return e.length > 0 ? e : undefined; }, { what: 'VmDiscovered' });
    expect(vmEvents[0]).toMatchObject({ type: 'VmDiscovered', data: { vmId: 'vm-a', name: 'vm-a', hypervisor: { kind: 'qemu', host: 'host1' }, disks: [{ name: 'vblk0', sizeBytes: 16 << 20 }, { name: 'vblk1', sizeBytes: 4 << 20 }] } });

    await requestedJob('job1', 'snap1');
    const reply = await bus.send('snapshot-coordinator', 'RequestSnapshot', { jobId: 'job1', vmId: 'vm-a', disks: ['vblk0'], leaseMs: 120_000 }, { idempotencyKey: 'snap1', timeoutMs: 30_000 });
    expect(reply).toEqual({ accepted: true, result: { snapshotId: 'snap1' } });
    const taken = (await events('job-job1')).find((e) => e.type === 'SnapshotTaken');
    expect(taken).toMatchObject({ data: { jobId: 'job1', snapshotId: 'snap1', nbd: { socket: join(dir, 'nbd.sock'), exports: [{ disk: 'vblk0', mode: 'full', reason: expect.stringMatching(/no dirty bitmap cairn-manual yet/) }] } } });
    const nbd = (taken as Extract<KnownEvent, { type: 'SnapshotTaken' }>).data.nbd;
    expect((await readExport(join(dir, 'nbd.sock'), nbd.exports[0]!.exportName)).length).toBe(16 << 20);

    const released = await bus.send('snapshot-coordinator', 'ReleaseSnapshot', { jobId: 'job1', snapshotId: 'snap1', outcome: 'success' }, { idempotencyKey: 'rel-snap1', timeoutMs: 30_000 });
    expect(released.accepted).toBe(true);
    expect((await events('job-job1')).map((e) => e.type)).toEqual(['JobRequested', 'JobStarted', 'SnapshotRequested', 'SnapshotTaken', 'SnapshotReleased']);
    expect(await leftovers()).toEqual(nothingLeft);

    const unknown = await bus.send('snapshot-coordinator', 'ReleaseSnapshot', { jobId: 'job1', snapshotId: 'nope' }, { idempotencyKey: 'rel-nope', timeoutMs: 30_000 });
    expect(unknown).toMatchObject({ accepted: false, error: { code: 'not_found' } });
  });

  it('SIGKILL mid-job, restart: nothing is left behind within one lease period', async () => {
    await requestedJob('job2', 'snap2');
    const reply = await bus.send('snapshot-coordinator', 'RequestSnapshot', { jobId: 'job2', vmId: 'vm-a', disks: ['vblk0'] }, { idempotencyKey: 'snap2', timeoutMs: 30_000 });
    expect(reply.accepted).toBe(true);
    const taken = (await events('job-job2')).find((e) => e.type === 'SnapshotTaken') as Extract<KnownEvent, { type: 'SnapshotTaken' }>;
    expect(taken.data.nbd.exports[0]!.mode).toBe('incremental');
    expect((await leftovers()).exports).toHaveLength(1);
    await killCoordinator('SIGKILL');
    const killedAt = Date.now();

    // While it is down, a view nobody recorded appears (as a run killed inside openView leaves);
    // on another disk, since QEMU 7.2 allows one fleecing job per disk.
    const stray = await QemuAdapter.connect({ qmpSocket: vm.monitors[1]!, overlayDir: join(dir, 'data/overlays/host1'), nbd: { socketPath: join(dir, 'nbd.sock') } });
    await stray.openView({ vm: 'vm-a', mode: 'auto', jobId: 'stray', chain: 'other', disks: ['vblk1'] });
    await stray.close();
    expect((await leftovers()).exports).toHaveLength(2);

    output = '';
    await startCoordinator();
    expect(output).toContain('removed leftovers of an earlier run');
    expect(output).toContain(`cairn-x-`);
    // The stray view is reaped at start; the recorded one is kept until its lease ends, then released.
    await waitFor(async () => JSON.stringify(await leftovers()) === JSON.stringify(nothingLeft), { timeoutMs: LEASE_MS + 15_000, what: 'all leftovers gone' });
    expect(Date.parse(taken.data.leaseExpiresAt!) - killedAt).toBeLessThanOrEqual(LEASE_MS);
    // The reaper releases the view, then records it: the event may land just after the view is gone.
    const released = await waitFor(async () => (await events('job-job2')).find((e) => e.type === 'SnapshotReleased'), { timeoutMs: 15_000, what: 'SnapshotReleased of snap2' });
    expect(released).toMatchObject({ data: { snapshotId: 'snap2', cause: 'lease_expired' } });

    // Expired as failed: the next incremental still holds what snap2 had taken.
    await monitor.execute('human-monitor-command', { 'command-line': 'qemu-io -d /machine/peripheral/vblk0/virtio-backend "write -P 0x5a 1048576 65536"' });
    await requestedJob('job3', 'snap3');
    const again = await bus.send('snapshot-coordinator', 'RequestSnapshot', { jobId: 'job3', vmId: 'vm-a', disks: ['vblk0'], leaseMs: 120_000 }, { idempotencyKey: 'snap3', timeoutMs: 30_000 });
    expect(again.accepted).toBe(true);
    const t3 = (await events('job-job3')).find((e) => e.type === 'SnapshotTaken') as Extract<KnownEvent, { type: 'SnapshotTaken' }>;
    expect(t3.data.nbd.exports[0]!.mode).toBe('incremental');
    await bus.send('snapshot-coordinator', 'ReleaseSnapshot', { jobId: 'job3', snapshotId: 'snap3', outcome: 'failure' }, { idempotencyKey: 'rel-snap3', timeoutMs: 30_000 });
    expect(await leftovers()).toEqual(nothingLeft);
  });
});
