// The VMware adapter against govmomi's vCenter simulator (built from the Debian packages by the
// test setup, TLS with its own certificate pinned by thumbprint): inventory kept current through
// WaitForUpdatesEx; a full view of a VM whose flat disk the test filled through the datastore
// endpoint, read over the adapter's NBD export byte-identical, its snapshot there while the view
// is open and gone after, also when the process holding the view is SIGKILLed mid-transfer;
// changed-block tracking with QueryChangedDiskAreas answered from a canned vSphere response.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { NbdClient } from '@cairn/nbd';
import { buildGuestImage, ensureLibvirtd, startVcsim, virsh, waitFor, type Vcsim } from '@cairn/testing';
import { useCleanup } from '../testing/cleanup.ts';
import { readExport, dirtyBlocks, dirtyBlocksWithNbdinfo } from '../testing/nbd-tools.ts';
import { generatedDisk, reconfigureDisk, uploadFlat } from '../testing/vmware-fixtures.ts';
import { VmwareAdapter } from './vmware.adapter.ts';
import { libvirtConfigFromVmware } from './vmware-to-libvirt.ts';
import { domainXmlForRestore } from '../libvirt/domain-xml.ts';
import { moRef, soapResponse } from './vsphere-xml.ts';
import type { VmwareVm } from './vmware-inventory.ts';

const MiB = 1 << 20;
const DISK_BYTES = 32 * MiB;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const here = fileURLToPath(new URL('.', import.meta.url));

describe('VMware adapter (govmomi vcsim over TLS, thumbprint pinned)', () => {
  const h = useCleanup();
  let sim: Vcsim;
  let dir: string;
  let adapter: VmwareAdapter;
  const connect = (name: string, extra: Partial<Parameters<typeof VmwareAdapter.connect>[0]> = {}) => VmwareAdapter.connect({
    url: sim.url, credentials: { username: sim.username, password: sim.password }, tls: { thumbprint: sim.thumbprint },
    nbdSocket: join(dir, `${name}.sock`), stateFile: join(dir, `${name}-state.json`), ...extra,
  });
  const vmNamed = async (name: string): Promise<VmwareVm> => (await adapter.vms()).find((v) => v.name === name)!;
  const snapshotNames = async (name: string) => (await vmNamed(name)).snapshots.map((s) => s.name);

  beforeAll(async () => {
    sim = await startVcsim();
    h.onClose(() => sim.stop());
    dir = await h.tmpDir('cairn-vmware-');
    adapter = await connect('main');
    h.onClose(() => adapter.close());
  }, 600_000);

  it('refuses a certificate that is not the pinned one, before sending credentials', async () => {
    await expect(VmwareAdapter.connect({
      url: sim.url, credentials: { username: sim.username, password: sim.password }, tls: { thumbprint: '00'.repeat(32) },
      nbdSocket: join(dir, 'x.sock'), stateFile: join(dir, 'x.json'),
    })).rejects.toThrow(/not the pinned .*refusing to send credentials/);
  });

  it('lists datacenters, clusters, hosts and VMs with disks, NICs, CPU and memory, power state', async () => {
    const vms = await adapter.vms();
    expect(vms.map((v) => v.name)).toEqual(['DC0_C0_RP0_VM0', 'DC0_C0_RP0_VM1', 'DC0_H0_VM0', 'DC0_H0_VM1']);
    const clustered = vms.find((v) => v.name === 'DC0_C0_RP0_VM0')!;
    expect(clustered).toMatchObject({ datacenter: 'DC0', cluster: 'DC0_C0', powerState: 'poweredOn', numCpu: 1, memoryMB: 32 });
    expect(clustered.host).toMatch(/^DC0_C0_H\d$/);
    expect(clustered.disks).toEqual([expect.objectContaining({ id: 'scsi0-0', datastore: 'LocalDS_0', path: 'DC0_C0_RP0_VM0/disk1.vmdk', capacityBytes: MiB, backing: 'VirtualDiskFlatVer2BackingInfo', hasParent: false })]);
    expect(clustered.nics).toEqual([expect.objectContaining({ type: 'VirtualE1000', network: expect.stringMatching(/^dvportgroup-/) })]);
    const inv = await adapter.inventory();
    expect(inv.find((v) => v.name === 'DC0_H0_VM0')).toMatchObject({ state: 'running', disks: [{ id: 'scsi0-0', format: 'vmdk', sizeBytes: MiB }] });
  }, 120_000);

  it('follows power-off and removal through WaitForUpdatesEx', async () => {
    let changes = 0;
    await adapter.watch(() => { changes++; });
    const before = changes;
    const vm = await vmNamed('DC0_H0_VM1');
    await adapter.vsphere.runTask('PowerOffVM_Task', moRef('VirtualMachine', vm.moref));
    await waitFor(() => changes > before, { timeoutMs: 60_000, what: 'an update after power-off' });
    expect((await adapter.inventory()).find((v) => v.name === 'DC0_H0_VM1')!.state).toBe('stopped');
    const afterOff = changes;
    await adapter.vsphere.runTask('Destroy_Task', moRef('VirtualMachine', vm.moref));
    await waitFor(() => changes > afterOff, { timeoutMs: 60_000, what: 'an update after removal' });
    expect((await adapter.inventory()).map((v) => v.name)).not.toContain('DC0_H0_VM1');
  }, 120_000);

  describe('backup of DC0_H0_VM0 (32 MiB flat disk filled through the datastore endpoint)', () => {
    let data: Buffer;
    beforeAll(async () => {
      const vm = await vmNamed('DC0_H0_VM0');
      await reconfigureDisk(adapter.vsphere, vm, vm.disks[0]!, { capacityBytes: DISK_BYTES });
      data = generatedDisk(DISK_BYTES, 23);
      await uploadFlat(adapter.vsphere, await vmNamed('DC0_H0_VM0'), vm.disks[0]!, data);
    }, 120_000);

    it('full view: the snapshot exists while it is open, the export reads byte-identical, release removes the snapshot', async () => {
      const view = await adapter.openView({ vm: 'DC0_H0_VM0', mode: 'auto', jobId: 'full-1', quiesce: true });
      expect(view.disks).toEqual([expect.objectContaining({ disk: 'scsi0-0', sizeBytes: DISK_BYTES, mode: 'full', reason: 'no backup chain to track changes for' })]);
      expect(view.quiesced).toEqual({ frozen: true, reason: 'VMware Tools quiesced the guest for the snapshot' });
      expect(view.vmConfig).toMatchObject({
        kind: 'vmware', vcpus: 1, memoryBytes: 32 * MiB, firmware: 'bios', disks: [{ id: 'scsi0-0', format: 'vmdk', sizeBytes: DISK_BYTES }],
        hostPaths: [{ where: 'disk scsi0-0', path: '[LocalDS_0] DC0_H0_VM0/disk1.vmdk' }],
      });
      expect(await snapshotNames('DC0_H0_VM0')).toEqual([`cairn-${view.viewId}`]);
      const read = await readExport((view.nbd as { socketPath: string }).socketPath, view.disks[0]!.exportName);
      expect(sha(read)).toBe(sha(data));
      await adapter.releaseView(view.viewId, { success: true });
      expect(await snapshotNames('DC0_H0_VM0')).toEqual([]);
      await adapter.releaseView(view.viewId, { success: true }); // idempotent
    }, 180_000);

    it('a reader that dies mid-transfer: the failed release still removes the snapshot', async () => {
      const view = await adapter.openView({ vm: 'DC0_H0_VM0', mode: 'full', jobId: 'cut-1' });
      const client = await NbdClient.connect({ path: (view.nbd as { socketPath: string }).socketPath }, { exportName: view.disks[0]!.exportName });
      await client.read(0, 4 * MiB);
      await client.close();
      expect(await snapshotNames('DC0_H0_VM0')).toEqual([`cairn-${view.viewId}`]);
      await adapter.releaseView(view.viewId, { success: false });
      expect(await snapshotNames('DC0_H0_VM0')).toEqual([]);
    }, 120_000);

    it('the process holding the view is SIGKILLed mid-transfer: the orphaned snapshot is found by name and removed', async () => {
      const child = spawn(process.execPath, ['--import', 'tsx', join(here, '../testing/vmware-view-holder.ts'), JSON.stringify({
        url: sim.url, username: sim.username, password: sim.password, thumbprint: sim.thumbprint, vm: 'DC0_H0_VM0', jobId: 'killed-1', dir,
      })], { stdio: ['ignore', 'pipe', 'pipe'] });
      let err = '';
      child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
      const line = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout!.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('\n')) resolve(out.split('\n')[0]!); });
        child.once('exit', (code) => reject(new Error(`view holder exited with ${code}: ${err}`)));
      });
      const { viewId } = JSON.parse(line) as { viewId: string };
      expect(await snapshotNames('DC0_H0_VM0')).toEqual([`cairn-${viewId}`]);
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
      expect(await snapshotNames('DC0_H0_VM0')).toEqual([`cairn-${viewId}`]);
      // A view this adapter keeps open is spared; the orphan is not.
      const kept = await adapter.openView({ vm: 'DC0_C0_RP0_VM0', mode: 'full', jobId: 'kept-1' });
      const report = await adapter.reapOrphans();
      expect(report.nodes).toEqual([`DC0_H0_VM0/cairn-${viewId}`]);
      expect(await snapshotNames('DC0_H0_VM0')).toEqual([]);
      expect(await snapshotNames('DC0_C0_RP0_VM0')).toEqual([`cairn-${kept.viewId}`]);
      await adapter.releaseView(kept.viewId, { success: true });
      expect(await snapshotNames('DC0_C0_RP0_VM0')).toEqual([]);
    }, 180_000);

    it('incremental from CBT, QueryChangedDiskAreas answered from a canned vSphere response (not in the simulator); a reset change id gives a full with the reason', async () => {
      const canned = await readFile(join(here, 'testdata/query-changed-disk-areas.xml'), 'utf8');
      const asked: Array<{ deviceKey: number; startOffset: number; changeId: string }> = [];
      const cbt = await connect('cbt', {
        queryChangedDiskAreas: async (_vm, _snapshot, deviceKey, startOffset, changeId) => {
          asked.push({ deviceKey, startOffset, changeId });
          return soapResponse(canned, 'QueryChangedDiskAreas')[0];
        },
      });
      try {
        const vm = await vmNamed('DC0_H0_VM0');
        const disk = vm.disks[0]!;
        // vSphere sets the change id on the disk's backing itself; the simulator keeps what it is given.
        const epoch = '52 de 2a 41 0e 13 a1 9b-5c 5b 4c 3e 6f 0b 26 77';
        await reconfigureDisk(cbt.vsphere, vm, disk, { changeId: `${epoch}/4` });
        const first = await cbt.openView({ vm: 'DC0_H0_VM0', mode: 'auto', jobId: 'cbt-1', chain: 'policy-a' });
        expect(first.disks[0]).toMatchObject({ mode: 'full', reason: 'first backup of scsi0-0 in chain policy-a' });
        expect(first.vmConfig).toMatchObject({ disks: [{ changeId: `${epoch}/4` }] });
        expect((await vmNamed('DC0_H0_VM0')).changeTracking).toBe(true);
        await cbt.releaseView(first.viewId, { success: true });

        await reconfigureDisk(cbt.vsphere, vm, disk, { changeId: `${epoch}/9` });
        const second = await cbt.openView({ vm: 'DC0_H0_VM0', mode: 'auto', jobId: 'cbt-2', chain: 'policy-a' });
        expect(asked).toEqual([{ deviceKey: disk.key, startOffset: 0, changeId: `${epoch}/4` }]);
        const d = second.disks[0]!;
        expect(d).toMatchObject({ mode: 'incremental', changedBytes: 65536 + MiB + 8192, reason: `changes since change id ${epoch}/4 (3 areas, ${65536 + MiB + 8192} bytes)` });
        const socket = (second.nbd as { socketPath: string }).socketPath;
        const expected = new Set([0, ...Array.from({ length: 16 }, (_, i) => 256 + i), 480]);
        expect(await dirtyBlocks(socket, d.exportName, d.bitmapContext!)).toEqual(expected);
        expect(await dirtyBlocksWithNbdinfo(socket, d.exportName, d.bitmapContext!)).toEqual(expected);
        // A failed backup keeps the chain at /4: the next one asks from there again.
        await cbt.releaseView(second.viewId, { success: false });
        const retry = await cbt.openView({ vm: 'DC0_H0_VM0', mode: 'auto', jobId: 'cbt-3', chain: 'policy-a' });
        expect(asked.at(-1)!.changeId).toBe(`${epoch}/4`);
        await cbt.releaseView(retry.viewId, { success: true });

        // Tracking reset (a new epoch): full, with the reason, and no query against the stale id.
        const calls = asked.length;
        await reconfigureDisk(cbt.vsphere, vm, disk, { changeId: '52 00 11 22 33 44 55 66-77 88 99 aa bb cc dd ee/1' });
        const reset = await cbt.openView({ vm: 'DC0_H0_VM0', mode: 'auto', jobId: 'cbt-4', chain: 'policy-a' });
        expect(reset.disks[0]).toMatchObject({ mode: 'full', reason: `change tracking of scsi0-0 was reset (change id ${epoch}/9 → 52 00 11 22 33 44 55 66-77 88 99 aa bb cc dd ee/1)` });
        expect(reset.disks[0]!.bitmapContext).toBeUndefined();
        expect(asked.length).toBe(calls);
        await cbt.releaseView(reset.viewId, { success: true });
        expect(await snapshotNames('DC0_H0_VM0')).toEqual([]);
      } finally {
        await cbt.close();
      }
    }, 240_000);

    it('after a restart (a new adapter on the same socket and state), an adopted view is served again by reapOrphans: the full disk byte-identical, the incremental one with the same dirty context; its release removes the snapshot and commits the chain', async () => {
      const canned = await readFile(join(here, 'testdata/query-changed-disk-areas.xml'), 'utf8');
      const cannedCbt = { queryChangedDiskAreas: async () => soapResponse(canned, 'QueryChangedDiskAreas')[0] };
      const vm = await vmNamed('DC0_H0_VM0');
      const disk = vm.disks[0]!;
      const epoch = '52 aa 00 41 0e 13 a1 9b-5c 5b 4c 3e 6f 0b 26 77';
      const before = await connect('restart', cannedCbt);
      await reconfigureDisk(before.vsphere, vm, disk, { changeId: `${epoch}/1` });
      const seed = await before.openView({ vm: 'DC0_H0_VM0', mode: 'auto', jobId: 'restart-0', chain: 'policy-r' });
      await before.releaseView(seed.viewId, { success: true });
      await reconfigureDisk(before.vsphere, vm, disk, { changeId: `${epoch}/2` });
      const incremental = await before.openView({ vm: 'DC0_H0_VM0', mode: 'auto', jobId: 'restart-1', chain: 'policy-r' });
      const full = await before.openView({ vm: 'DC0_C0_RP0_VM0', mode: 'full', jobId: 'restart-2' });
      const socket = (incremental.nbd as { socketPath: string }).socketPath;
      const d = incremental.disks[0]!;
      expect(d.mode).toBe('incremental');
      const dirty = await dirtyBlocks(socket, d.exportName, d.bitmapContext!);
      const fullBytes = await readExport(socket, full.disks[0]!.exportName);
      // The coordinator's process ends without releasing anything (its socket file stays, as after a SIGKILL).
      await before.close();
      await writeFile(socket, '');
      expect(await snapshotNames('DC0_H0_VM0')).toEqual([`cairn-${incremental.viewId}`]);

      const after = await connect('restart', cannedCbt);
      try {
        // As SnapshotCoordinator.recover does: adopt what the view records hold, then reap the rest.
        after.adoptView(incremental);
        after.adoptView(full);
        const report = await after.reapOrphans(new Set([incremental.viewId, full.viewId]));
        expect(report.nodes).toEqual([]);
        expect(after.openViews().map((v) => v.viewId).sort()).toEqual([full.viewId, incremental.viewId].sort());
        expect(await dirtyBlocks(socket, d.exportName, d.bitmapContext!)).toEqual(dirty);
        expect(sha(await readExport(socket, d.exportName))).toBe(sha(data));
        expect(sha(await readExport(socket, full.disks[0]!.exportName))).toBe(sha(fullBytes));
        await after.releaseView(incremental.viewId, { success: true });
        await after.releaseView(full.viewId, { success: false });
        expect(await snapshotNames('DC0_H0_VM0')).toEqual([]);
        expect(await snapshotNames('DC0_C0_RP0_VM0')).toEqual([]);
        // The adopted view's change ids were committed: the next backup of the chain asks from /2.
        await reconfigureDisk(after.vsphere, vm, disk, { changeId: `${epoch}/3` });
        const next = await after.openView({ vm: 'DC0_H0_VM0', mode: 'auto', jobId: 'restart-3', chain: 'policy-r' });
        expect(next.disks[0]).toMatchObject({ mode: 'incremental', reason: expect.stringContaining(`changes since change id ${epoch}/2`) });
        await after.releaseView(next.viewId, { success: true });
      } finally {
        await after.close();
      }
    }, 240_000);
  });

  it('a VMware restore point restored as a libvirt domain boots (the test guest placed as the simulator VM\'s disk)', async () => {
    await ensureLibvirtd();
    const bootDir = await h.tmpDir('cairn-vmware-boot-');
    await chmod(bootDir, 0o777);
    const image = await buildGuestImage({ dir: bootDir, hostname: 'vmwboot', format: 'raw', sizeMiB: 64 });
    const guest = await readFile(image.disk);
    const vm = await vmNamed('DC0_C0_RP0_VM1');
    await reconfigureDisk(adapter.vsphere, vm, vm.disks[0]!, { capacityBytes: guest.length });
    await uploadFlat(adapter.vsphere, vm, vm.disks[0]!, guest);
    // The simulator's VMs have 32 MiB; the guest's kernel and initramfs want more.
    await adapter.vsphere.runTask('ReconfigVM_Task', moRef('VirtualMachine', vm.moref), { spec: { numCPUs: 1, memoryMB: 512 } });
    const view = await adapter.openView({ vm: 'DC0_C0_RP0_VM1', mode: 'full', jobId: 'boot-1' });
    const restored = join(bootDir, 'restored-vda.raw');
    try {
      await writeFile(restored, await readExport((view.nbd as { socketPath: string }).socketPath, view.disks[0]!.exportName));
    } finally { await adapter.releaseView(view.viewId, { success: true }); }
    await chmod(restored, 0o666);
    const serialLog = join(bootDir, 'serial.log');
    await writeFile(serialLog, '');
    await chmod(serialLog, 0o666);
    const config = libvirtConfigFromVmware(view.vmConfig!, {
      domainType: 'qemu', serialLog, userNetwork: true, directBoot: { kernel: image.kernel, initrd: image.initrd, append: image.append },
    });
    expect(config.targets).toEqual({ 'scsi0-0': 'vda' });
    expect(config.summary).toMatchObject({ vcpus: 1, memoryBytes: 512 * MiB, disks: [{ target: 'vda', bus: 'virtio' }], nics: [{ model: 'virtio', type: 'user' }] });
    const name = `cairn-vmware-boot-${process.pid}`;
    const xml = domainXmlForRestore(config, { name, disks: { vda: { file: restored, format: 'raw' } }, serialLog });
    const file = join(bootDir, `${name}.xml`);
    await writeFile(file, xml);
    await virsh('define', file);
    h.onClose(async () => { await virsh('destroy', name).catch(() => undefined); await virsh('undefine', name).catch(() => undefined); });
    await virsh('start', name);
    await waitFor(async () => (await readFile(serialLog, 'utf8')).includes(image.marker), { timeoutMs: 240_000, intervalMs: 250, what: `${image.marker} on ${name}'s console` })
      .catch(async (e: Error) => { throw new Error(`${e.message}; console tail: ${(await readFile(serialLog, 'utf8')).slice(-1500)}`); });
    expect((await stat(restored)).size).toBe(guest.length);
  }, 600_000);

  it('restores a disk into an existing VM and a whole VM as a new one (datastore upload, ReconfigVM_Task / CreateVM_Task), both read back identical', async () => {
    const socketOf = (v: { nbd: unknown }) => (v.nbd as { socketPath: string }).socketPath;
    const disk = generatedDisk(8 * MiB, 99);
    const [attached] = await adapter.restoreDisks('DC0_C0_RP0_VM0', 'r1', [{ id: 'scsi0-0', sizeBytes: disk.length, data: disk }]);
    expect(attached!.fileName).toBe('[LocalDS_0] DC0_C0_RP0_VM0/cairn-restore-r1-scsi0-0.vmdk');
    const target = await vmNamed('DC0_C0_RP0_VM0');
    const added = target.disks.find((d) => d.fileName === attached!.fileName)!;
    expect(added).toMatchObject({ capacityBytes: 8 * MiB, hasParent: false });
    const check = await adapter.openView({ vm: 'DC0_C0_RP0_VM0', disks: [added.id], mode: 'full', jobId: 'restored-disk' });
    try {
      expect(sha(await readExport(socketOf(check), check.disks[0]!.exportName))).toBe(sha(disk));
    } finally { await adapter.releaseView(check.viewId, { success: true }); }

    // A whole VM from a restore point's configuration and disk (here: a view of DC0_H0_VM0).
    const source = await adapter.openView({ vm: 'DC0_H0_VM0', mode: 'full', jobId: 'whole-vm' });
    let image: Buffer;
    try { image = await readExport(socketOf(source), source.disks[0]!.exportName); } finally { await adapter.releaseView(source.viewId, { success: true }); }
    await expect(adapter.restoreVm('DC0_H0_VM0', source.vmConfig!, [])).rejects.toThrow(/a VM named DC0_H0_VM0 exists already/);
    const made = await adapter.restoreVm('DC0_H0_VM0-restored', source.vmConfig!, [{ id: 'scsi0-0', sizeBytes: image.length, data: image }]);
    const copy = await vmNamed('DC0_H0_VM0-restored');
    expect(copy).toMatchObject({ moref: made.moref, numCpu: 1, memoryMB: 32, datacenter: 'DC0', disks: [{ id: 'scsi0-0', fileName: '[LocalDS_0] DC0_H0_VM0-restored/DC0_H0_VM0-restored-scsi0-0.vmdk', capacityBytes: image.length }] });
    const back = await adapter.openView({ vm: 'DC0_H0_VM0-restored', mode: 'full', jobId: 'restored-vm' });
    try {
      expect(sha(await readExport(socketOf(back), back.disks[0]!.exportName))).toBe(sha(image));
    } finally { await adapter.releaseView(back.viewId, { success: true }); }
  }, 180_000);
});
