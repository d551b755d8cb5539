import { describe, expect, it } from 'vitest';
import { backupXml, domainXmlForRestore, libvirtVmConfig, liveDisks, parseBackupXml, parseCheckpointXml, parseDomainXml, DomainXmlError } from './domain-xml.ts';
import { parseBlockJobInfo } from './instant-domain.ts';
import { parseEventLine } from './domain-events.ts';

const XML = `<domain type='kvm'>
  <name>web-1</name><uuid>4f21f958-ea11-44f1-a03b-8804dcc7637a</uuid>
  <memory unit='KiB'>524288</memory><vcpu placement='static' current='2'>4</vcpu>
  <os firmware='efi'><type arch='x86_64' machine='pc-q35-7.2'>hvm</type><loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader><nvram>/var/lib/libvirt/qemu/nvram/web-1_VARS.fd</nvram></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/srv/web-1.qcow2'/><target dev='vda' bus='virtio'/></disk>
    <disk type='network' device='disk'><driver name='qemu' type='raw'/><source protocol='rbd' name='pool/img'><host name='ceph'/></source>
      <auth username='admin'><secret type='ceph' uuid='11111111-2222-3333-4444-555555555555'/></auth><target dev='vdb' bus='virtio'/></disk>
    <disk type='file' device='cdrom'><source file='/iso/x.iso'/><target dev='sda' bus='sata'/></disk>
    <interface type='network'><mac address='52:54:00:aa:bb:cc'/><source network='default'/><model type='virtio'/></interface>
    <graphics type='vnc' port='-1' passwd='hunter2'/>
    <serial type='file'><source path='/var/log/web-1.log'/></serial>
  </devices>
</domain>`;

describe('domain XML', () => {
  it('summarises the domain: disks (no CD-ROMs), NICs, vCPUs, memory, firmware', () => {
    const s = parseDomainXml(XML);
    expect(s).toMatchObject({ name: 'web-1', uuid: '4f21f958-ea11-44f1-a03b-8804dcc7637a', type: 'kvm', machine: 'pc-q35-7.2', vcpus: 2, memoryBytes: 512 * 1024 * 1024, firmware: 'efi' });
    expect(s.disks.map((d) => [d.target, d.type, d.source, d.format])).toEqual([['vda', 'file', '/srv/web-1.qcow2', 'qcow2'], ['vdb', 'network', undefined, 'raw']]);
    expect(s.nics).toEqual([{ mac: '52:54:00:aa:bb:cc', model: 'virtio', type: 'network', source: 'default' }]);
  });
  it('keeps host paths and secret references apart and never keeps a password', () => {
    const c = libvirtVmConfig(XML);
    expect(c.domainXml).not.toMatch(/hunter2/);
    expect(c.hostPaths).toEqual(expect.arrayContaining([
      { where: 'disk vda', path: '/srv/web-1.qcow2' }, { where: 'os/loader', path: '/usr/share/OVMF/OVMF_CODE.fd' },
      { where: 'os/nvram', path: '/var/lib/libvirt/qemu/nvram/web-1_VARS.fd' }, { where: 'serial', path: '/var/log/web-1.log' },
    ]));
    expect(c.secrets).toEqual(expect.arrayContaining([{ where: 'disk vdb', uuid: '11111111-2222-3333-4444-555555555555' }, { where: 'graphics vnc', usage: 'password (not stored)' }]));
    expect(() => parseDomainXml('<pool/>')).toThrow(DomainXmlError);
  });
  it('defines a copy on new images: new name, no UUID, new MACs, only the restored disks', () => {
    const out = domainXmlForRestore(libvirtVmConfig(XML), { name: 'web-1-restored', disks: { vda: { file: '/restore/vda.qcow2', format: 'qcow2' } } });
    const s = parseDomainXml(out);
    expect(s.name).toBe('web-1-restored');
    expect(s.uuid).toBe('');
    expect(s.disks.map((d) => [d.target, d.source])).toEqual([['vda', '/restore/vda.qcow2']]);
    expect(s.nics[0]!.mac).toBeUndefined();
    expect(out).toMatch(/cdrom/);
    expect(() => domainXmlForRestore(libvirtVmConfig(XML), { name: 'x', disks: { vdz: { file: '/a', format: 'raw' } } })).toThrow(/no disk vdz/);
  });
  it('instant recovery: a disk is a local qcow2 overlay whose backing is the NBD export (the chain given, not probed)', () => {
    const out = domainXmlForRestore(libvirtVmConfig(XML), {
      name: 'web-1-instant', disks: { vda: { file: '/vms/i/vda.overlay.qcow2', format: 'qcow2', backingNbd: { socket: '/vms/i/export/export.sock', exportName: 'vda' } } },
    });
    expect(parseDomainXml(out).disks.map((d) => [d.target, d.source, d.format])).toEqual([['vda', '/vms/i/vda.overlay.qcow2', 'qcow2']]);
    const disk = out.slice(out.indexOf('<disk'), out.indexOf('</disk>'));
    expect(disk).toMatch(/<source file="\/vms\/i\/vda.overlay.qcow2"\s*\/>\s*<backingStore type="network">\s*<format type="raw"\s*\/>\s*<source protocol="nbd" name="vda">\s*<host transport="unix" socket="\/vms\/i\/export\/export.sock"\s*\/>/);
  });
  it('reads a running domain\'s disks: a block copy in progress and its readiness, a network backing', () => {
    const live = `<domain type='qemu'><name>i</name><devices>
      <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/vms/i/vda.overlay.qcow2' index='1'/>
        <backingStore type='network' index='2'><format type='raw'/><source protocol='nbd' name='vda'><host transport='unix' socket='/vms/i/export/export.sock'/></source></backingStore>
        <mirror type='file' file='/vms/i/vda.raw' format='raw' job='copy' ready='yes'><format type='raw'/><source file='/vms/i/vda.raw'/></mirror>
        <target dev='vda' bus='virtio'/></disk>
      <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/vms/i/vdb.raw'/><backingStore/><target dev='vdb' bus='virtio'/></disk></devices></domain>`;
    expect(liveDisks(live)).toEqual([
      { target: 'vda', source: '/vms/i/vda.overlay.qcow2', mirror: { file: '/vms/i/vda.raw', ready: true }, networkBacking: true },
      { target: 'vdb', source: '/vms/i/vdb.raw', mirror: undefined, networkBacking: false },
    ]);
    expect(parseBlockJobInfo('Block Copy: 1048576/4194304 bytes', 4 << 20)).toEqual({ done: 1 << 20, total: 4 << 20 });
    expect(parseBlockJobInfo('Block Copy: [ 50 %]', 4 << 20)).toEqual({ done: 2 << 20, total: 4 << 20 });
    expect(parseBlockJobInfo('', 1)).toBeUndefined();
  });
  it('defines a restored domain with the identity, networks and console the restore decided', () => {
    const config = libvirtVmConfig(XML);
    const disks = { vda: { file: '/restore/vda.raw', format: 'raw' } };
    const out = domainXmlForRestore(config, {
      name: 'web-1-copy', disks, uuid: '0b5d7c1e-7f5e-4a8e-9d59-2f0c8f7e6a11', macs: ['52:54:00:12:34:56'],
      networkMap: { default: 'isolated' }, serialLog: '/restore/web-1-copy/serial.log',
    });
    const s = parseDomainXml(out);
    expect(s).toMatchObject({ name: 'web-1-copy', uuid: '0b5d7c1e-7f5e-4a8e-9d59-2f0c8f7e6a11' });
    expect(s.nics).toEqual([{ mac: '52:54:00:12:34:56', model: 'virtio', type: 'network', source: 'isolated' }]);
    expect(s.disks.map((d) => [d.target, d.source, d.format])).toEqual([['vda', '/restore/vda.raw', 'raw']]);
    expect(out).toMatch(/<source path="\/restore\/web-1-copy\/serial\.log"/);
    expect(out).not.toMatch(/web-1\.log|52:54:00:aa:bb:cc/);
    const off = domainXmlForRestore(config, { name: 'web-1-off', disks, noNetwork: true, keepMacs: true });
    expect(parseDomainXml(off).nics[0]).toMatchObject({ mac: '52:54:00:aa:bb:cc', source: 'default' });
    expect(off).toMatch(/<link state="down"/);
    expect(() => domainXmlForRestore(config, { name: 'x', disks, macs: [] })).toThrow(/0 MAC addresses for 1 NICs/);
    expect(() => domainXmlForRestore(config, { name: 'x', disks, uuid: 'nope' })).toThrow(/not a UUID/);
  });
  it('writes the backup document and reads back libvirt\'s backup and checkpoint documents', () => {
    const x = backupXml({ server: { socketPath: '/run/c.sock' }, disks: [{ target: 'vda', exportName: 'e-vda', scratchFile: '/s/a.qcow2', incremental: 'cp1', exportBitmap: 'e-vda' }], excluded: ['vdb'] });
    expect(x).toMatch(/backupmode='incremental' incremental='cp1' exportname='e-vda' exportbitmap='e-vda'/);
    expect(x).toMatch(/<disk name='vdb' backup='no'\/>/);
    expect(parseBackupXml(x)).toEqual({ socket: '/run/c.sock', disks: [{ target: 'vda', exportName: 'e-vda', scratch: '/s/a.qcow2' }] });
    const t = backupXml({ server: { host: 'kvm1.example', port: 10810, tls: true }, disks: [{ target: 'vda', exportName: 'e-vda', scratchFile: '/var/tmp/s.qcow2' }] });
    expect(t).toMatch(/<server transport='tcp' name='kvm1.example' port='10810' tls='yes'\/>/);
    expect(parseBackupXml(t)).toEqual({ socket: undefined, tcp: { host: 'kvm1.example', port: 10810, tls: true }, disks: [{ target: 'vda', exportName: 'e-vda', scratch: '/var/tmp/s.qcow2' }] });
    expect(parseCheckpointXml(`<domaincheckpoint><name>c1</name><creationTime>5</creationTime><disks><disk name='vda' checkpoint='bitmap' bitmap='c1'/><disk name='vdb' checkpoint='no'/></disks></domaincheckpoint>`))
      .toEqual({ name: 'c1', description: '', creationTime: 5, disks: ['vda'] });
  });
  it('reads virsh event lines', () => {
    expect(parseEventLine("event 'lifecycle' for domain 'web-1': Started Booted")).toEqual({ event: 'lifecycle', domain: 'web-1', detail: 'Started Booted' });
    expect(parseEventLine('garbage')).toBeUndefined();
  });
});
