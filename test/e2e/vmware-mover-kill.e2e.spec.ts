// VMware through the product with the data movers as their own processes (govmomi's vCenter
// simulator, NATS): the mover reading a simulator VM's disk — HTTP range reads of the snapshot's
// frozen flat VMDK, served on the coordinator's NBD socket, the job's bandwidth limited so the
// transfer lasts — is SIGKILLed in the middle of the transfer. Asserted as the product does it:
// the cairn snapshot exists in vSphere while the transfer runs, the work goes to the other mover,
// the job completes, and the VM has no snapshot left afterwards (read through the vSphere API);
// the restore point restores byte-identical. Before that, a `cairn-*` snapshot left by an earlier
// crash (no view record owns it) is found by name by the coordinator's reaper and removed, while
// an operator's own snapshot on the same VM is left alone.
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { progressSubject, type KnownEvent } from '@cairn/contracts';
import { useHarness, waitFor } from '@cairn/testing';
import { CatalogueClient } from '@cairn/catalogue-client';
import { startStack } from '@cairn/cli';
import { CommandBus } from '@cairn/messaging';
import { moRef } from '@cairn/hypervisor';
import { generatedDisk, reconfigureDisk, uploadFlat } from '@cairn/hypervisor/testing';
import { cli, runService, vcsimWithProbe, waitForJobEnd, type ServiceProcess } from './e2e-helpers.ts';

const MiB = 1 << 20;
// 64 MiB at 8 MiB/s: about 8 s of transfer, long enough to be cut in the middle.
const DISK_BYTES = 64 * MiB;
const BANDWIDTH = 8 * MiB;

describe('VMware: the data mover SIGKILLed mid-transfer (govmomi vcsim, NATS, mover processes)', () => {
  const h = useHarness();

  it('the job goes to the other mover and completes, the vSphere snapshot is gone after, the restore point is exact; an earlier crash\'s snapshot is reaped by name', async () => {
    const dataDir = await h.tmpDir('cairn-e2e-vmwkill-');
    // The test's own vSphere session: fills the disk, plants the crash leftover, watches snapshots.
    const { sim, credentials, ca, probe } = await vcsimWithProbe(h, dataDir);
    const snapshotsOf = async (name: string) => (await probe.vms()).find((v) => v.name === name)!.snapshots.map((s) => s.name);
    const vm = (await probe.vms()).find((v) => v.name === 'DC0_H0_VM0')!;
    await reconfigureDisk(probe.vsphere, vm, vm.disks[0]!, { capacityBytes: DISK_BYTES });
    const data = generatedDisk(DISK_BYTES, 23);
    await uploadFlat(probe.vsphere, vm, vm.disks[0]!, data);
    // What a coordinator killed between CreateSnapshot_Task and its release leaves behind, next to an operator's own snapshot.
    const other = (await probe.vms()).find((v) => v.name === 'DC0_H0_VM1')!;
    for (const name of ['before-upgrade', 'cairn-vmw-crashed-earlier']) {
      await probe.vsphere.runTask('CreateSnapshot_Task', moRef('VirtualMachine', other.moref), { name, description: 'e2e', memory: false, quiesce: false });
    }
    expect(await snapshotsOf('DC0_H0_VM1')).toEqual(['before-upgrade', 'cairn-vmw-crashed-earlier']);

    const stack = await startStack({ dataDir, without: ['data-mover'] });
    h.onClose(() => stack.stop());
    const args = ['--data', dataDir];
    const catalogue = new CatalogueClient(stack.nc, { site: stack.site });
    const movers: ServiceProcess[] = [];
    for (const m of ['m1', 'm2']) {
      const p = runService(m, [
        '--nats', stack.natsUrl, '--site', stack.site, '--data', join(dataDir, m),
        'run', 'data-mover', '--repo', join(dataDir, 'repository'), '--ack-wait-ms', '3000',
      ], { CAIRN_REPO_PASSPHRASE: stack.passphrase, CAIRN_RESTORE_ROOTS: join(dataDir, 'restores') }, { readyTimeoutMs: 300_000 }); // a start takes minutes on a loaded machine
      h.onClose(async () => { p.kill(); await p.exited; });
      movers.push(p);
    }
    await Promise.all(movers.map((m) => m.ready));
    const added = await cli([...args, 'hypervisor', 'add', 'vmware', '--url', sim.url, '--credentials', credentials, '--ca', ca, '--name', 'vc']);
    expect(added.code, added.stderr).toBe(0);
    await waitFor(async () => (await catalogue.query('vm.list', {})).items.some((v) => v.name === 'DC0_H0_VM0' && v.hypervisor.kind === 'vmware'), { timeoutMs: 60_000, what: 'DC0_H0_VM0 in the catalogue' });

    // The reaper (every 30 s) finds the leftover by its cairn- name: no view record owns it.
    await waitFor(async () => (await snapshotsOf('DC0_H0_VM1')).length === 1 || undefined, { timeoutMs: 120_000, intervalMs: 500, what: 'the crashed snapshot reaped' });
    expect(await snapshotsOf('DC0_H0_VM1')).toEqual(['before-upgrade']);

    const bus = new CommandBus(stack.nc, { site: stack.site, actor: { kind: 'user', id: 'vmware-kill-e2e' }, defaultTimeoutMs: 60_000 });
    const events: KnownEvent[] = [];
    const sub = stack.log.subscribe({ from: 'end', category: 'job' });
    h.onClose(() => sub.stop());
    void (async () => { for await (const r of sub) events.push(r.event); })();
    const reply = await bus.send('scheduler', 'RequestBackup', { vmId: 'DC0_H0_VM0', mode: 'full', bandwidthBytesPerSec: BANDWIDTH }, { idempotencyKey: randomUUID() });
    if (!reply.accepted) throw new Error(`RequestBackup refused: ${reply.error.message}`);
    const jobId = reply.result!.jobId;
    const progress: Array<{ worker: string; bytesDone: number }> = [];
    const progressSub = stack.nc.subscribe(progressSubject(stack.site, jobId));
    h.onClose(() => progressSub.unsubscribe());
    void (async () => { for await (const m of progressSub) progress.push(m.json()); })();
    const ofJob = () => events.filter((e) => e.correlationId === jobId);

    const started = await waitFor(() => ofJob().find((e) => e.type === 'TransferStarted'), { timeoutMs: 120_000, intervalMs: 20, what: 'TransferStarted' });
    const worker = (started.data as { worker: string }).worker;
    const victim = movers.find((m) => worker.startsWith(`data-mover@${m.pid}-`));
    expect(victim, `no mover has the pid of ${worker}`).toBeDefined();
    await waitFor(() => progress.some((p) => p.worker === worker && p.bytesDone > 0), { timeoutMs: 60_000, intervalMs: 10, what: `progress from ${worker}` });
    // Mid-transfer: the job's snapshot is in vSphere.
    const snapshotName = (await snapshotsOf('DC0_H0_VM0'))[0];
    expect(snapshotName).toMatch(/^cairn-vmw-/);
    const doneAtKill = progress.filter((p) => p.worker === worker).at(-1)!.bytesDone;
    victim!.kill('SIGKILL');
    await victim!.exited;
    expect(ofJob().map((e) => e.type), 'the transfer ended before its mover died').not.toContain('RestorePointCommitted');
    expect(doneAtKill).toBeLessThan(DISK_BYTES);

    const job = await waitForJobEnd(catalogue, jobId, 300_000);
    const starts = job.events.filter((e) => e.type === 'TransferStarted').map((e) => (e.data as { worker: string }).worker);
    console.log(`vmware mover-kill e2e: killed ${worker} at ${doneAtKill} of ${DISK_BYTES} bytes (snapshot ${snapshotName}); job ${job.state} ${job.failure?.reason ?? ''}; transfers by ${starts.join(', ')}`);
    // The product's semantics: the unacknowledged work goes to the other mover, which commits.
    expect(job.state, JSON.stringify(job.failure)).toBe('completed');
    expect(starts[0]).toBe(worker);
    expect(starts.at(-1)!.startsWith(`data-mover@${movers.find((m) => m !== victim)!.pid}-`)).toBe(true);
    // The view was released with the job: no snapshot on the VM, as vSphere reports it.
    await waitFor(async () => (await snapshotsOf('DC0_H0_VM0')).length === 0 || undefined, { timeoutMs: 60_000, intervalMs: 250, what: 'the job snapshot removed' });
    expect(await snapshotsOf('DC0_H0_VM1')).toEqual(['before-upgrade']);

    const to = join(dataDir, 'restores', 'after-kill.raw');
    const restored = await cli([...args, 'restore', job.restorePointId!, '--disk', 'scsi0-0', '--to', to]);
    expect(restored.code, restored.stderr).toBe(0);
    expect((await readFile(to)).equals(data), 'the restore point restores to the disk').toBe(true);
  }, 900_000);
});
