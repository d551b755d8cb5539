// planVmRestore for vSphere targets: a whole VMware VM (its configuration kept for the
// coordinator, network map and no-network passed on) and one disk attached to an existing VM
// (only the disks asked for; refused for a restore point that is not of a VMware VM, for an
// unknown disk, for qcow2, and without a host).
import { describe, expect, it } from 'vitest';
import type { Manifest } from '@cairn/repository';
import { planVmRestore } from './vm-restore.ts';

const MiB = 1 << 20;
const vmwareConfig = {
  kind: 'vmware', name: 'web', uuid: '4210aaaa-0000-0000-0000-000000000001', vcpus: 2, memoryBytes: 64 * MiB, firmware: 'bios',
  disks: [{ id: 'scsi0-0', format: 'vmdk', sizeBytes: 32 * MiB }, { id: 'scsi0-1', format: 'vmdk', sizeBytes: 16 * MiB }],
  nics: [{ id: 'ethernet-0', model: 'VirtualE1000', mac: '00:50:56:00:00:01', source: 'dvportgroup-11' }], tags: [], hostPaths: [], secrets: [],
};
const manifest = (config: Record<string, unknown>) => ({
  id: 'rp-1', disks: [{ name: 'scsi0-0', sizeBytes: 32 * MiB }, { name: 'scsi0-1', sizeBytes: 16 * MiB }], vm: { config: { hypervisor: config } },
}) as unknown as Manifest;
const base = { kind: 'vm' as const, format: 'raw' as const, start: false, keepIdentity: false };

describe('planVmRestore into vSphere', () => {
  it('a whole VMware VM keeps its VMware configuration and the network choices for the coordinator', () => {
    const { disks, vm } = planVmRestore('r1', manifest(vmwareConfig), { ...base, vmName: 'web-2', host: 'vc', networkMap: { 'dvportgroup-11': 'VM Network' } }, '/s/web-2');
    expect(disks.map((d) => d.disk)).toEqual(['scsi0-0', 'scsi0-1']);
    expect(vm.config).toMatchObject({ kind: 'vmware', name: 'web' });
    expect(vm.libvirt).toEqual({ host: 'vc', networkMap: { 'dvportgroup-11': 'VM Network' }, noNetwork: false });
  });

  it('one disk attached to an existing VM: only that disk is written, the plan says attach', () => {
    const { disks, vm } = planVmRestore('r2', manifest(vmwareConfig), { ...base, vmName: 'db', host: 'vc', disks: ['scsi0-1'], attach: true }, '/s/db-disks-r2');
    expect(disks).toEqual([expect.objectContaining({ disk: 'scsi0-1', path: '/s/db-disks-r2/scsi0-1.raw', format: 'raw', sizeBytes: 16 * MiB })]);
    expect(vm).toMatchObject({ name: 'db', libvirt: { host: 'vc', attach: true } });
  });

  it('refuses an unknown disk, a restore point not of a VMware VM, qcow2 and a missing host', () => {
    expect(() => planVmRestore('r3', manifest(vmwareConfig), { ...base, vmName: 'db', host: 'vc', disks: ['scsi0-9'], attach: true }, '/s/x'))
      .toThrow(/restore point rp-1 has no disk scsi0-9 \(has scsi0-0, scsi0-1\)/);
    expect(() => planVmRestore('r4', manifest({ kind: 'libvirt', domainXml: '<domain/>' }), { ...base, vmName: 'db', host: 'vc', disks: ['scsi0-0'], attach: true }, '/s/x'))
      .toThrow(/is not of a VMware VM \(libvirt\): only a VMware VM's disk is attached to a vSphere VM/);
    expect(() => planVmRestore('r5', manifest(vmwareConfig), { ...base, format: 'qcow2', vmName: 'db', host: 'vc', disks: ['scsi0-0'], attach: true }, '/s/x'))
      .toThrow(/uploaded raw/);
    expect(() => planVmRestore('r6', manifest(vmwareConfig), { ...base, vmName: 'db', disks: ['scsi0-0'], attach: true }, '/s/x'))
      .toThrow(/names its VMware hypervisor/);
  });
});
