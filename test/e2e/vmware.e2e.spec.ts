// VMware end to end against govmomi's vCenter simulator: a running Cairn gets `cairn hypervisor
// add vmware --url … --credentials <file> --ca <file>`, lists the simulator's VMs in `cairn vm
// list` (kept current: a VM powered off and another deleted through the vSphere API show as
// stopped and removed), and backs one up whose 32 MiB flat disk the test filled through the datastore endpoint:
// the restore point restores byte-identical, the cairn snapshot is gone from the VM after, and
// `cairn restore --vm --host <libvirt>` defines it as a libvirt domain on the restored disk, and
// `cairn restore --vm --host <vmware>` creates it as a new vSphere VM on the uploaded disk with its
// NICs (on their networks, a mapped one, or disconnected), and `cairn restore --disk --into-vm
// <vm> --host <vmware>` attaches the disk to an existing vSphere VM.
import { createHash } from 'node:crypto';
import { chmod, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ensureLibvirtd, useHarness, virsh, waitFor } from '@cairn/testing';
import { CatalogueClient } from '@cairn/catalogue-client';
import { startStack } from '@cairn/cli';
import { moRef, parseDomainXml } from '@cairn/hypervisor';
import { destroyVm, generatedDisk, powerOffVm, reconfigureDisk, uploadFlat } from '@cairn/hypervisor/testing';
import { cli, vcsimWithProbe } from './e2e-helpers.ts';

const MiB = 1 << 20;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('VMware through the product (govmomi vcsim, NATS, the data mover)', () => {
  const h = useHarness();

  it('hypervisor add vmware, vm list, cairn backup of a simulator VM, restore byte-identical, snapshot gone', async () => {
    const dataDir = await h.tmpDir('cairn-e2e-vmw-');
    // The test's own session: fills the disk and watches the VM's snapshots.
    const { sim, credentials, ca, probe } = await vcsimWithProbe(h, dataDir);
    const vm = (await probe.vms()).find((v) => v.name === 'DC0_H0_VM0')!;
    await reconfigureDisk(probe.vsphere, vm, vm.disks[0]!, { capacityBytes: 32 * MiB });
    const data = generatedDisk(32 * MiB, 7);
    await uploadFlat(probe.vsphere, vm, vm.disks[0]!, data);

    const stack = await startStack({ dataDir });
    h.onClose(() => stack.stop());
    const args = ['--data', dataDir];
    const noCreds = await cli([...args, 'hypervisor', 'add', 'vmware', '--url', sim.url]);
    expect(noCreds.code).toBe(2);
    expect(noCreds.stderr).toMatch(/needs --credentials <file>/);
    const wrongPin = await cli([...args, 'hypervisor', 'add', 'vmware', '--url', sim.url, '--credentials', credentials, '--thumbprint', '00'.repeat(32), '--name', 'pinned']);
    expect(wrongPin.code).toBe(5);
    expect(wrongPin.stderr).toMatch(/cannot connect to vSphere at .*not the pinned/);
    const added = await cli([...args, 'hypervisor', 'add', 'vmware', '--url', sim.url, '--credentials', credentials, '--ca', ca, '--name', 'vc']);
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout).toMatch(/hypervisor vc added; VMs: DC0_C0_RP0_VM0, DC0_C0_RP0_VM1, DC0_H0_VM0, DC0_H0_VM1/);

    const catalogue = new CatalogueClient(stack.nc, { site: stack.site });
    await waitFor(async () => (await catalogue.query('vm.list', {})).items.filter((v) => v.hypervisor.kind === 'vmware' && v.hypervisor.host === 'vc').length === 4, { timeoutMs: 60_000, what: 'the simulator VMs in the catalogue' });
    const listed = await cli([...args, '--json', 'vm', 'list']);
    const vms = JSON.parse(listed.stdout) as Array<{ name: string; disks: Array<{ name: string; sizeBytes: number }> }>;
    expect(vms.find((v) => v.name === 'DC0_H0_VM0')!.disks).toEqual([expect.objectContaining({ name: 'scsi0-0', sizeBytes: 32 * MiB })]);

    // Kept current through WaitForUpdatesEx: one VM powered off, another deleted, in vCenter.
    const stateOf = async (name: string) => {
      const out = await cli([...args, '--json', 'vm', 'list']);
      const v = (JSON.parse(out.stdout) as Array<{ name: string; powerState: string | null; removedAt: string | null }>).find((x) => x.name === name);
      return v?.removedAt ? 'removed' : v?.powerState;
    };
    await waitFor(async () => await stateOf('DC0_H0_VM1') === 'running', { timeoutMs: 60_000, what: 'DC0_H0_VM1 listed as running' });
    const inVc = await probe.vms();
    await powerOffVm(probe.vsphere, inVc.find((v) => v.name === 'DC0_H0_VM1')!);
    const doomed = inVc.find((v) => v.name === 'DC0_C0_RP0_VM1')!;
    await powerOffVm(probe.vsphere, doomed);
    await destroyVm(probe.vsphere, doomed);
    await waitFor(async () => await stateOf('DC0_H0_VM1') === 'stopped' && await stateOf('DC0_C0_RP0_VM1') === 'removed', { timeoutMs: 120_000, what: 'vm list: DC0_H0_VM1 stopped, DC0_C0_RP0_VM1 removed' });
    const table = await cli([...args, 'vm', 'list']);
    expect(table.code, table.stderr).toBe(0);
    console.log(`vmware e2e vm list after power-off and delete:\n${table.stdout}`);
    expect(table.stdout).toMatch(/DC0_H0_VM1\s.*\sstopped\s/);
    expect(table.stdout).toMatch(/DC0_C0_RP0_VM1\s.*\sremoved \d{4}-/);
    expect(table.stdout).toMatch(/DC0_H0_VM0\s.*\srunning\s/);

    const backup = await cli([...args, '--json', 'backup', 'DC0_H0_VM0', '--wait', '--timeout', '600'], {}, 660_000);
    expect(backup.code, backup.stderr).toBe(0);
    const { restorePointId } = JSON.parse(backup.stdout) as { restorePointId: string };
    expect((await probe.vms()).find((v) => v.name === 'DC0_H0_VM0')!.snapshots).toEqual([]);
    const to = join(dataDir, 'restores', 'DC0_H0_VM0-scsi0-0.raw');
    const restored = await cli([...args, 'restore', restorePointId, '--disk', 'scsi0-0', '--to', to]);
    expect(restored.code, restored.stderr).toBe(0);
    expect(sha(await readFile(to))).toBe(sha(data));
    const shown = await cli([...args, 'restore-point', 'show', restorePointId]);
    expect(shown.code, shown.stderr).toBe(0);
    console.log(`vmware e2e restore point:\n${shown.stdout}`);
    expect(shown.stdout).toMatch(/consistency: application \(VMware Tools quiesced the guest for the snapshot\)/);
    expect(shown.stdout).toContain('configuration (vmware): DC0_H0_VM0, 1 vCPU, 32.0 MiB memory, firmware bios');
    expect(shown.stdout).toContain('disk scsi0-0: vmdk 32.0 MiB');
    expect(shown.stdout).toContain('host-specific disk scsi0-0: [LocalDS_0] DC0_H0_VM0/disk1.vmdk');

    // Exit to KVM: the restore point as a libvirt domain (defined, not started: the disk holds generated data).
    await ensureLibvirtd();
    const lv = await cli([...args, 'hypervisor', 'add', 'libvirt', '--uri', 'qemu:///system', '--name', 'lv']);
    expect(lv.code, lv.stderr).toBe(0);
    const storage = join(dataDir, 'restores', 'vms');
    await mkdir(storage, { recursive: true, mode: 0o755 });
    await chmod(join(dataDir, 'restores'), 0o755);
    const domain = `cairn-vmware-e2e-${process.pid}`;
    h.onClose(async () => { await virsh('destroy', domain).catch(() => undefined); await virsh('undefine', domain).catch(() => undefined); });
    const toKvm = await cli([...args, '--json', 'restore', restorePointId, '--vm', domain, '--host', 'lv', '--storage', storage], {}, 600_000);
    expect(toKvm.code, toKvm.stderr).toBe(0);
    const defined = parseDomainXml(await virsh('dumpxml', '--inactive', domain));
    expect(defined).toMatchObject({ name: domain, vcpus: 1, memoryBytes: 32 * MiB, disks: [{ target: 'vda', bus: 'virtio', format: 'raw', source: join(storage, domain, 'scsi0-0.raw') }] });
    expect(sha(await readFile(defined.disks[0]!.source!))).toBe(sha(data));

    // Back into vSphere as a restore job: the disk uploaded to the datastore, a new VM created from the configuration.
    const toVc = await cli([...args, 'restore', restorePointId, '--vm', 'DC0_H0_VM0-back', '--host', 'vc', '--storage', storage], {}, 600_000);
    expect(toVc.code, toVc.stderr).toBe(0);
    expect(toVc.stdout).toMatch(/vSphere VM DC0_H0_VM0-back \(vm-\d+\) on vc, powered off/);
    const back = (await probe.vms()).find((v) => v.name === 'DC0_H0_VM0-back')!;
    expect(back).toMatchObject({ numCpu: 1, memoryMB: 32, disks: [{ id: 'scsi0-0', capacityBytes: 32 * MiB, fileName: '[LocalDS_0] DC0_H0_VM0-back/DC0_H0_VM0-back-scsi0-0.vmdk' }] });
    const flat = await probe.vsphere.readRange(probe.vsphere.datastoreUrl('DC0', 'LocalDS_0', 'DC0_H0_VM0-back/DC0_H0_VM0-back-scsi0-0-flat.vmdk'), 0, 32 * MiB);
    expect(sha(flat)).toBe(sha(data));
    const again = await cli([...args, 'restore', restorePointId, '--vm', 'DC0_H0_VM1', '--host', 'vc', '--storage', storage], {}, 600_000);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/a VM named DC0_H0_VM1 exists already/);

    // Its NICs are recreated on the networks they were on (the simulator's VM has one, on a distributed port group) …
    const original = vm.nics;
    expect(original.length).toBeGreaterThan(0);
    expect(back.nics.map((n) => ({ type: n.type, network: n.network }))).toEqual(original.map((n) => ({ type: n.type, network: n.network })));
    // … or on the one a network map names, or kept but not connected at power-on with --no-network.
    const mapped = await cli([...args, 'restore', restorePointId, '--vm', 'DC0_H0_VM0-mapped', '--host', 'vc', '--storage', storage,
      '--network-map', `${original[0]!.network}=VM Network`], {}, 600_000);
    expect(mapped.code, mapped.stderr).toBe(0);
    const mappedVm = (await probe.vms()).find((v) => v.name === 'DC0_H0_VM0-mapped')!;
    expect(mappedVm.nics.map((n) => n.network)).toEqual(original.map(() => 'VM Network'));
    const offline = await cli([...args, 'restore', restorePointId, '--vm', 'DC0_H0_VM0-offline', '--host', 'vc', '--storage', storage, '--no-network'], {}, 600_000);
    expect(offline.code, offline.stderr).toBe(0);
    const offlineVm = (await probe.vms()).find((v) => v.name === 'DC0_H0_VM0-offline')!;
    const devices = (await probe.vsphere.properties(moRef('VirtualMachine', offlineVm.moref), ['config.hardware.device']))['config.hardware.device'];
    const cards = JSON.stringify(devices).match(/"startConnected":"(true|false)"/g);
    expect(cards).toEqual(original.map(() => '"startConnected":"false"'));
    const nowhere = await cli([...args, 'restore', restorePointId, '--vm', 'DC0_H0_VM0-nowhere', '--host', 'vc', '--storage', storage,
      '--network-map', `${original[0]!.network}=no-such-network`], {}, 600_000);
    expect(nowhere.code).toBe(2);
    expect(nowhere.stderr).toMatch(/no network for .*no-such-network.* here \(networks: .*VM Network/);
    expect((await probe.vms()).some((v) => v.name === 'DC0_H0_VM0-nowhere')).toBe(false);

    // One disk into an existing vSphere VM as a restore job: uploaded beside its disks, attached as a new one, byte-identical.
    const into = await cli([...args, 'restore', restorePointId, '--disk', 'scsi0-0', '--into-vm', 'DC0_H0_VM1', '--host', 'vc', '--storage', storage], {}, 600_000);
    expect(into.code, into.stderr).toBe(0);
    console.log(`vmware e2e --into-vm:\n${into.stdout}`);
    expect(into.stdout).toMatch(/attached to vSphere VM DC0_H0_VM1 \(vm-\d+\) on vc: \[LocalDS_0\] DC0_H0_VM1\/cairn-restore-[0-9a-f-]+-scsi0-0\.vmdk/);
    const target = (await probe.vms()).find((v) => v.name === 'DC0_H0_VM1')!;
    const attached = target.disks.find((d) => d.path.includes('/cairn-restore-'))!;
    expect(attached).toMatchObject({ capacityBytes: 32 * MiB });
    expect(target.disks).toHaveLength(2);
    expect(sha(await probe.vsphere.readRange(probe.vsphere.datastoreUrl('DC0', attached.datastore, attached.path.replace(/\.vmdk$/, '-flat.vmdk')), 0, 32 * MiB))).toBe(sha(data));
    const noVm = await cli([...args, 'restore', restorePointId, '--disk', 'scsi0-0', '--into-vm', 'no-such-vm', '--host', 'vc', '--storage', storage], {}, 600_000);
    expect(noVm.code).toBe(3);
    expect(noVm.stderr).toMatch(/no VM named no-such-vm on vc/);
  }, 900_000);
});
