// Whole-VM restore on QEMU (issue 15), with two data movers as separate processes: a real
// Linux guest is backed up with its configuration, then restored as new VMs. One restore has
// its mover SIGKILLed midway and completes after redelivery with disks byte-equal to the
// restore point, a new UUID and new MACs, and boots to its marker; another is started (--start)
// by the job and boots to its marker. Last, in place over the original (`--in-place`): refused
// while its QEMU runs; once it has quit and its disk was damaged, the restore backs up what it
// overwrites (the VM is read from its image files), puts the restore point's bytes back, and the
// VM boots again to its marker from the same files.
import { randomBytes, randomUUID } from 'node:crypto';
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { progressSubject, type KnownEvent } from '@cairn/contracts';
import { CatalogueClient } from '@cairn/catalogue-client';
import { bootGuest, buildGuestImage, createHarness, waitFor, type BootedGuest, type GuestImage, type Harness } from '@cairn/testing';
import { startStack, type Stack } from '@cairn/cli';
import { cli, runService, sha256, waitForJobEnd, type ServiceProcess } from './e2e-helpers.ts';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const ORIGINAL_UUID = '5c0ffee0-0000-4000-8000-00000000a11c';
const ORIGINAL_MAC = '52:54:00:aa:bb:cc';
/** Read rate of each mover from the repository: a restore takes seconds, so it can be killed midway. */
const DOWNLOAD_LIMIT = 4 * MiB;

describe('whole-VM restore (real QEMU guest, two movers as processes)', () => {
  let h: Harness;
  let dataDir: string;
  let image: GuestImage;
  let guest: BootedGuest;
  let stack: Stack;
  const movers: ServiceProcess[] = [];
  let restorePointId: string;
  const events: KnownEvent[] = [];
  const pids: number[] = [];

  beforeAll(async () => {
    h = await createHarness();
    dataDir = await h.tmpDir('cairn-e2e-vm-restore-');
    // 24 MiB of random data in the guest, so its restore has weight.
    image = await buildGuestImage({ dir: join(dataDir, 'guest'), hostname: 'orig-guest', files: { '/data/blob': randomBytes(24 * MiB) } });
    guest = await bootGuest({
      image, dir: join(dataDir, 'guest-run'),
      args: ['-name', 'vm-orig', '-uuid', ORIGINAL_UUID, '-netdev', 'user,id=n0,restrict=on', '-device', `virtio-net-pci,netdev=n0,id=nic0,mac=${ORIGINAL_MAC}`],
    });
    h.onClose(() => guest.kill());
    await guest.waitForSerial();
    stack = await startStack({ dataDir, qemu: [{ qmpSocket: guest.qmpPath }], without: ['data-mover'] });
    h.onClose(() => stack.stop());
    for (const name of ['m1', 'm2']) {
      const m = runService(name, [
        '--nats', stack.natsUrl, '--site', stack.site, '--data', join(dataDir, name),
        'run', 'data-mover', '--repo', join(dataDir, 'repository'), '--ack-wait-ms', '3000', '--download-limit', String(DOWNLOAD_LIMIT),
      ], { CAIRN_REPO_PASSPHRASE: stack.passphrase, CAIRN_RESTORE_ROOTS: join(dataDir, 'restores') });
      h.onClose(async () => { m.kill(); await m.exited; });
      movers.push(m);
    }
    await Promise.all(movers.map((m) => m.ready));
    const catalogue = new CatalogueClient(stack.nc, { site: stack.site });
    await waitFor(async () => (await catalogue.query('vm.list', {})).items.some((v) => v.name === 'vm-orig'), { timeoutMs: 60_000, what: 'vm-orig in the catalogue' });
    const r = await cli(['--data', dataDir, '--json', 'backup', 'vm-orig']);
    expect(r.code, r.stderr).toBe(0);
    const job = await waitForJobEnd(catalogue, (JSON.parse(r.stdout) as { jobId: string }).jobId, 240_000);
    expect(job.state, JSON.stringify(job.failure)).toBe('completed');
    restorePointId = job.restorePointId!;
    const sub = stack.log.subscribe({ from: 'end', category: 'restore' });
    h.onClose(() => sub.stop());
    void (async () => { for await (const e of sub) events.push(e.event); })();
    h.onClose(() => { for (const pid of pids) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } } });
  }, 600_000);

  afterAll(async () => { await h?.close(); });

  it('the restore point holds the VM configuration', async () => {
    const m = await stack.repository.getManifest(restorePointId);
    expect((m.vm.config as { hypervisor: unknown }).hypervisor).toMatchObject({
      kind: 'qemu', machine: expect.stringMatching(/^pc-q35/), vcpus: 1, memoryBytes: 512 * MiB, uuid: ORIGINAL_UUID,
      kernel: image.kernel, initrd: image.initrd, append: image.append, disks: [expect.objectContaining({ id: 'disk0' })],
      nics: [{ id: 'nic0', mac: ORIGINAL_MAC, model: 'virtio-net-pci' }],
    });
  });

  it('a mover SIGKILLed during a whole-VM restore: redelivered, disks byte-equal, new UUID and MACs, no half-made VM directory', async () => {
    const storage = join(dataDir, 'restores', 'vms');
    const restoreId = randomUUID();
    const ofJob = () => events.filter((e) => e.streamId === `restore-${restoreId}`);
    const progress: Array<{ worker: string; bytesDone: number; bytesPlanned: number }> = [];
    const progressSub = stack.nc.subscribe(progressSubject(stack.site, restoreId));
    h.onClose(() => progressSub.unsubscribe());
    void (async () => { for await (const m of progressSub) progress.push(m.json()); })();
    const r = await cli(['--data', dataDir, '--json', 'restore', restorePointId, '--vm', 'copy-a', '--storage', storage, '--no-wait', '--id', restoreId]);
    expect(r.code, r.stderr).toBe(0);
    const started = await waitFor(() => ofJob().find((e) => e.type === 'RestoreStarted'), { timeoutMs: 90_000, intervalMs: 20, what: 'RestoreStarted' });
    const worker = (started.data as { worker: string }).worker;
    const victim = movers.find((m) => worker.startsWith(`data-mover@${m.pid}-`))!;
    expect(victim, `no mover has the pid of ${worker}`).toBeDefined();
    await waitFor(() => progress.some((p) => p.worker === worker && p.bytesDone > 0 && p.bytesDone < p.bytesPlanned), { timeoutMs: 60_000, intervalMs: 10, what: `progress from ${worker}` });
    victim.kill('SIGKILL');
    await victim.exited;
    expect(ofJob().map((e) => e.type)).not.toContain('RestoreCompleted');
    expect(await stat(join(storage, 'copy-a')).then(() => true, () => false), 'a VM directory before its disks are all there').toBe(false);

    const end = await waitFor(() => ofJob().find((e) => e.type === 'RestoreCompleted' || e.type === 'RestoreFailed'), { timeoutMs: 240_000, intervalMs: 100, what: 'the VM restore to end' });
    expect(end.type, JSON.stringify(end.data)).toBe('RestoreCompleted');
    const starts = ofJob().filter((e) => e.type === 'RestoreStarted').map((e) => e.data as { worker: string });
    expect(starts.length).toBeGreaterThanOrEqual(2);
    expect(starts.at(-1)!.worker).not.toBe(worker);
    const vm = (end.data as { vm: { dir: string; uuid: string; macs: Record<string, string>; started: boolean } }).vm;
    expect(vm).toMatchObject({ dir: join(storage, 'copy-a'), started: false });
    expect(vm.uuid).not.toBe(ORIGINAL_UUID);
    expect(vm.macs['nic0']).toMatch(/^52:54:00:/);
    expect(vm.macs['nic0']).not.toBe(ORIGINAL_MAC);
    expect(await readdir(storage)).toEqual(['copy-a']);
    expect((await readdir(vm.dir)).sort()).toEqual(['disk0.raw', 'start.sh', 'vm.json']);
    const saved = JSON.parse(await readFile(join(vm.dir, 'vm.json'), 'utf8')) as { uuid: string; macs: Record<string, string> };
    expect(saved).toMatchObject({ uuid: vm.uuid, macs: vm.macs });
    const script = await readFile(join(vm.dir, 'start.sh'), 'utf8');
    expect(script).toContain(`-uuid ${vm.uuid}`);
    expect(script).toContain(`mac=${vm.macs['nic0']}`);
    // Byte for byte the restore point's disk (restored here straight from the repository).
    const reference = join(dataDir, 'reference-disk0.raw');
    await stack.repository.restoreDisk(restorePointId, 'disk0', reference);
    expect(await sha256(join(vm.dir, 'disk0.raw'))).toBe(await sha256(reference));
    // And the VM the redelivered job made boots.
    await run('/bin/sh', [join(vm.dir, 'start.sh')], { timeout: 120_000 });
    const pid = Number((await readFile(join(vm.dir, 'qemu.pid'), 'utf8')).trim());
    pids.push(pid);
    await waitFor(async () => (await readFile(join(vm.dir, 'serial.log'), 'utf8').catch(() => '')).includes(image.marker) || undefined,
      { timeoutMs: 240_000, intervalMs: 250, what: `${image.marker} on the VM of the redelivered restore` });
    process.kill(pid, 'SIGKILL');
  }, 600_000);

  it('restored as a new VM with --start: it boots and shows its marker', async () => {
    const storage = join(dataDir, 'restores', 'vms');
    const t0 = Date.now();
    const r = await cli(['--data', dataDir, '--json', 'restore', restorePointId, '--vm', 'copy-b', '--storage', storage, '--start'], {}, 300_000);
    expect(r.code, `${r.stdout} ${r.stderr}`).toBe(0);
    const view = JSON.parse(r.stdout) as { state: string; vm: { started: boolean; pid: number; serialLog: string; uuid: string; macs: Record<string, string> } };
    expect(view.state).toBe('completed');
    expect(view.vm.started).toBe(true);
    pids.push(view.vm.pid);
    const restoredAt = Date.now();
    await waitFor(async () => (await readFile(view.vm.serialLog, 'utf8').catch(() => '')).includes(image.marker) || undefined,
      { timeoutMs: 240_000, intervalMs: 250, what: `${image.marker} on the restored VM's console` });
    const bootedAt = Date.now();
    // The running VM has the new identity.
    const cmdline = (await readFile(`/proc/${view.vm.pid}/cmdline`, 'utf8')).split('\0');
    expect(cmdline).toContain(view.vm.uuid);
    expect(cmdline.join(' ')).toContain(`mac=${view.vm.macs['nic0']}`);
    expect(view.vm.uuid).not.toBe(ORIGINAL_UUID);
    console.log(`[vm-restore] full restore + start: ${((restoredAt - t0) / 1000).toFixed(1)} s (CLI included, 4 MiB/s read limit), boot to marker: ${((bootedAt - restoredAt) / 1000).toFixed(1)} s, command to marker: ${((bootedAt - t0) / 1000).toFixed(1)} s`);
  }, 400_000);

  it('in place over the QEMU VM: refused while it runs; shut off and damaged, backed up first, restored over its own files, boots again', async () => {
    const args = ['--data', dataDir, '--json'];
    const whileRunning = await cli([...args, 'restore', restorePointId, '--in-place'], {}, 600_000);
    expect(whileRunning.code, whileRunning.stdout + whileRunning.stderr).toBe(4);
    expect(whileRunning.stdout + whileRunning.stderr).toMatch(/vm-orig is running \(the QEMU monitor of .* answers/);
    // Shut off (SIGTERM: QEMU quits cleanly, its persistent bitmaps stored; its one QMP connection is the coordinator's),
    // then its disk damaged: the first 64 KiB (the ext4 superblock) overwritten.
    await guest.kill('SIGTERM');
    await waitFor(() => guest.process.exitCode !== null || guest.process.signalCode !== null || undefined, { timeoutMs: 60_000, what: 'the original QEMU to end' });
    await run('qemu-io', ['-f', image.format, '-c', 'write -P 0xab 0 64k', image.disk]);
    const before = join(dataDir, 'before-in-place.raw');
    await run('qemu-img', ['convert', '-O', 'raw', image.disk, before]);
    const reference = join(dataDir, 'reference-disk0.raw');
    if (!(await stat(reference).then(() => true, () => false))) await stack.repository.restoreDisk(restorePointId, 'disk0', reference);
    expect(await sha256(before)).not.toBe(await sha256(reference));

    const t0 = Date.now();
    const r = await cli([...args, 'restore', restorePointId, '--in-place'], {}, 900_000);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const restoredMs = Date.now() - t0;
    const vm = (JSON.parse(r.stdout) as { vm: { name: string; started: boolean; qemuInPlace?: { host: string; safetyRestorePointId?: string } } }).vm;
    expect(vm).toMatchObject({ name: 'vm-orig', started: false, qemuInPlace: { safetyRestorePointId: expect.any(String) } });
    const after = join(dataDir, 'after-in-place.raw');
    await run('qemu-img', ['convert', '-O', 'raw', image.disk, after]);
    expect(await sha256(after), 'the disk is the restore point again').toBe(await sha256(reference));
    // The safety backup holds what was overwritten.
    const safety = join(dataDir, 'restores', 'safety-disk0.raw');
    const sr = await cli([...args, 'restore', vm.qemuInPlace!.safetyRestorePointId!, '--disk', 'disk0', '--to', safety], {}, 600_000);
    expect(sr.code, sr.stderr).toBe(0);
    expect(await sha256(safety), 'the safety backup holds the damaged disk').toBe(await sha256(before));
    // Started again from the same files as before: it boots to its marker.
    const again = await bootGuest({
      image, dir: join(dataDir, 'guest-run-again'),
      args: ['-name', 'vm-orig', '-uuid', ORIGINAL_UUID, '-netdev', 'user,id=n0,restrict=on', '-device', `virtio-net-pci,netdev=n0,id=nic0,mac=${ORIGINAL_MAC}`],
    });
    h.onClose(() => again.kill());
    const bootAt = Date.now();
    await again.waitForSerial(undefined, 300_000);
    console.log(`[vm-restore] QEMU in place (safety backup of the damaged disk, restore over it): ${(restoredMs / 1000).toFixed(1)} s including the CLI; boot to marker ${((Date.now() - bootAt) / 1000).toFixed(1)} s`);
  }, 1_200_000);
});
