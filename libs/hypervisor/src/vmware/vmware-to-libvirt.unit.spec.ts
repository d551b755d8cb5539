// A VMware configuration as a libvirt domain: disks in controller/unit order as vda…, NICs on
// the networks of their VMware names, refusals for what cannot be a domain; and the flat VMDK
// descriptor a restore into vSphere uploads.
import { describe, expect, it } from 'vitest';
import { libvirtConfigFromVmware } from './vmware-to-libvirt.ts';
import { flatDescriptor } from './vmware-restore.ts';

const config = {
  kind: 'vmware', name: 'db1', vcpus: 4, memoryBytes: 8 * 2 ** 30, firmware: 'efi',
  disks: [
    { id: 'scsi0-1', sizeBytes: 1 << 30, controllerKey: 1000, unitNumber: 1 },
    { id: 'scsi0-0', sizeBytes: 2 * 2 ** 30, controllerKey: 1000, unitNumber: 0 },
  ],
  nics: [{ id: 'Network adapter 1', model: 'VirtualVmxnet3', mac: '00:50:56:aa:bb:cc', source: 'VM Network' }],
};

describe('libvirtConfigFromVmware', () => {
  it('orders disks by controller and unit and keeps CPU, memory, firmware and NICs', () => {
    const lv = libvirtConfigFromVmware(config, { domainType: 'kvm' });
    expect(lv.targets).toEqual({ 'scsi0-0': 'vda', 'scsi0-1': 'vdb' });
    expect(lv.summary).toMatchObject({ name: 'db1', type: 'kvm', vcpus: 4, memoryBytes: 8 * 2 ** 30, firmware: 'efi', nics: [{ mac: '00:50:56:aa:bb:cc', model: 'virtio', type: 'network', source: 'VM Network' }] });
    expect(lv.summary.disks.map((d) => `${d.target}:${d.bus}`)).toEqual(['vda:virtio', 'vdb:virtio']);
    expect(libvirtConfigFromVmware(config, { diskBus: 'sata' }).targets).toEqual({ 'scsi0-0': 'sda', 'scsi0-1': 'sdb' });
  });

  it('refuses what is not a VMware configuration or lacks CPU and memory', () => {
    expect(() => libvirtConfigFromVmware({ kind: 'libvirt' })).toThrow(/not a VMware VM configuration/);
    expect(() => libvirtConfigFromVmware({ ...config, vcpus: 0 })).toThrow(/no vCPU count/);
    expect(() => libvirtConfigFromVmware({ ...config, memoryBytes: 0 })).toThrow(/no memory size/);
  });
});

describe('flatDescriptor', () => {
  it('describes a vmfs flat extent in sectors, and refuses a size that is not whole sectors', () => {
    const d = flatDescriptor('web-scsi0-0', 32 << 20, 0x1234);
    expect(d).toContain('createType="vmfs"');
    expect(d).toContain('RW 65536 VMFS "web-scsi0-0-flat.vmdk"');
    expect(d).toContain('CID=00001234');
    expect(() => flatDescriptor('x', 1000, 1)).toThrow(/whole 512-byte sectors/);
  });
});
