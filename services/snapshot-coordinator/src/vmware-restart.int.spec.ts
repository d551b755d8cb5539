// The coordinator as a child process against real NATS and govmomi's vCenter simulator: a VMware
// view is opened for a job and read partly over NBD, then the coordinator is SIGKILLed (its
// process group, as a host crash would end it). The snapshot stays in vSphere meanwhile. The
// restarted coordinator adopts the recorded view and serves its export again on the same socket
// (the killed run's socket file is still there): the whole disk reads byte-identical, and the
// job's ReleaseSnapshot removes the vSphere snapshot.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { startVcsim, useHarness, waitFor } from '@cairn/testing';
import { createJetStreamEventLog } from '@cairn/eventlog';
import { CommandBus } from '@cairn/messaging';
import { NbdClient } from '@cairn/nbd';
import { VmwareAdapter } from '@cairn/hypervisor';
import { generatedDisk, readExport, reconfigureDisk, uploadFlat } from '@cairn/hypervisor/testing';
import { newEvent, type KnownEvent } from '@cairn/contracts';

const ROOT = resolve(import.meta.dirname, '../../..');
const MAIN = join(ROOT, 'services/snapshot-coordinator/src/snapshot-coordinator.main.ts');
const MiB = 1 << 20;
const DISK_BYTES = 16 * MiB;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('snapshot coordinator restart with a VMware view open (child process, NATS, vcsim)', () => {
  const h = useHarness();

  it('SIGKILL mid-read, restart: the adopted view is served again byte-identical, its release removes the vSphere snapshot', async () => {
    const sim = await startVcsim();
    h.onClose(() => sim.stop());
    const dir = await h.tmpDir('cairn-sc-vmw-');
    const nats = await h.nats();
    const probe = await VmwareAdapter.connect({
      url: sim.url, credentials: { username: sim.username, password: sim.password }, tls: { caPem: sim.caPem },
      nbdSocket: join(dir, 'probe.sock'), stateFile: join(dir, 'probe.json'),
    });
    h.onClose(() => probe.close());
    const snapshots = async () => (await probe.vms()).find((v) => v.name === 'DC0_H0_VM0')!.snapshots.map((s) => s.name);
    const vm = (await probe.vms()).find((v) => v.name === 'DC0_H0_VM0')!;
    await reconfigureDisk(probe.vsphere, vm, vm.disks[0]!, { capacityBytes: DISK_BYTES });
    const data = generatedDisk(DISK_BYTES, 41);
    await uploadFlat(probe.vsphere, vm, vm.disks[0]!, data);

    const dataDir = join(dir, 'data');
    await mkdir(dataDir, { recursive: true });
    await writeFile(join(dir, 'vc.json'), JSON.stringify({ username: sim.username, password: sim.password }), { mode: 0o600 });
    await writeFile(join(dir, 'vc-ca.pem'), sim.caPem);
    // What `cairn hypervisor add vmware` remembers; the coordinator connects it at start.
    await writeFile(join(dataDir, 'hypervisors.json'), JSON.stringify([{ name: 'vc', kind: 'vmware', url: sim.url, credentialsFile: join(dir, 'vc.json'), caFile: join(dir, 'vc-ca.pem') }]));
    const configFile = join(dir, 'coordinator.json');
    await writeFile(configFile, JSON.stringify({ site: 'test', natsUrl: nats.url, dataDir, leaseMs: 600_000, reapIntervalMs: 1000, inventoryIntervalMs: 60_000 }));

    let child: ChildProcess | undefined;
    let output = '';
    const start = async () => {
      const proc = spawn(join(ROOT, 'node_modules/.bin/tsx'), [MAIN, configFile], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      child = proc;
      let out = '';
      proc.stdout.setEncoding('utf8').on('data', (s: string) => { out += s; output += s; });
      proc.stderr.setEncoding('utf8').on('data', (s: string) => { out += s; output += s; });
      await waitFor(() => {
        if (proc.exitCode !== null) throw new Error(`coordinator exited: ${out}`);
        return out.includes('snapshot coordinator started');
      }, { timeoutMs: 240_000, what: 'coordinator start' }); // minutes on a loaded machine
    };
    const kill = async (signal: NodeJS.Signals) => {
      const proc = child;
      if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      process.kill(-proc.pid!, signal); // tsx runs the program in a child of its own: the whole group
      await exited;
      await waitFor(() => { try { process.kill(-proc.pid!, 0); return false; } catch { return true; } }, { what: 'coordinator process group gone' });
    };
    h.onClose(() => kill('SIGKILL'));

    const nc = await connect({ servers: nats.url });
    h.onClose(() => nc.close());
    const log = await createJetStreamEventLog({ nc, site: 'test' });
    const bus = new CommandBus(nc, { site: 'test', actor: { kind: 'user', id: 'tester' } });
    const events = async (streamId: string) => { const out: KnownEvent[] = []; for await (const r of log.readStream(streamId)) out.push(r.event); return out; };
    try {
      await start();
      await waitFor(async () => (await events('vm-DC0_H0_VM0')).length > 0 || undefined, { timeoutMs: 120_000, what: 'VmDiscovered of DC0_H0_VM0' });
      const meta = { site: 'test', actor: { kind: 'service' as const, id: 'scheduler@test' }, streamId: 'job-vjob1' };
      await log.append('job-vjob1', [
        newEvent('JobRequested', { jobId: 'vjob1', vmId: 'DC0_H0_VM0', policyId: null, mode: 'full', trigger: 'manual' }, meta),
        newEvent('JobStarted', { jobId: 'vjob1', attempt: 1 }, meta),
        newEvent('SnapshotRequested', { jobId: 'vjob1', vmId: 'DC0_H0_VM0', snapshotId: 'vsnap1' }, meta),
      ], { expectedRevision: 'no_stream' });
      const reply = await bus.send('snapshot-coordinator', 'RequestSnapshot', { jobId: 'vjob1', vmId: 'DC0_H0_VM0', quiesce: 'off' }, { idempotencyKey: 'vsnap1', timeoutMs: 120_000 });
      expect(reply, JSON.stringify(reply)).toEqual({ accepted: true, result: { snapshotId: 'vsnap1' } });
      const taken = (await events('job-vjob1')).find((e) => e.type === 'SnapshotTaken') as Extract<KnownEvent, { type: 'SnapshotTaken' }>;
      const nbd = taken.data.nbd;
      if (!('socket' in nbd)) throw new Error(`the view is not on a unix socket: ${JSON.stringify(nbd)}`);
      const { socket, exports } = nbd;
      expect(exports).toEqual([expect.objectContaining({ disk: 'scsi0-0', mode: 'full' })]);
      expect(await snapshots()).toEqual(['cairn-vmw-vjob1']);
      // A mover reads the first 4 MiB, then the coordinator dies.
      const client = await NbdClient.connect({ path: socket }, { exportName: exports[0]!.exportName });
      expect(sha(Buffer.from(await client.read(0, 4 * MiB)))).toBe(sha(data.subarray(0, 4 * MiB)));
      await client.close();
      await kill('SIGKILL');
      expect(await snapshots()).toEqual(['cairn-vmw-vjob1']);
      await access(socket); // the killed run's socket file is still there

      output = '';
      await start();
      // Adopted from the view records and served again on the same socket: the whole disk, identical.
      expect(sha(await readExport(socket, exports[0]!.exportName))).toBe(sha(data));
      expect(output).toContain('adopted vmware view served again');
      expect(await snapshots()).toEqual(['cairn-vmw-vjob1']);
      const released = await bus.send('snapshot-coordinator', 'ReleaseSnapshot', { jobId: 'vjob1', snapshotId: 'vsnap1', outcome: 'success' }, { idempotencyKey: 'rel-vsnap1', timeoutMs: 120_000 });
      expect(released.accepted, JSON.stringify(released)).toBe(true);
      expect(await snapshots()).toEqual([]);
      expect((await events('job-vjob1')).map((e) => e.type)).toEqual(['JobRequested', 'JobStarted', 'SnapshotRequested', 'SnapshotTaken', 'SnapshotReleased']);
    } catch (e) {
      console.error(`coordinator output:\n${output.slice(-8000)}`);
      throw e;
    } finally {
      await kill('SIGTERM');
    }
  }, 900_000);
});
