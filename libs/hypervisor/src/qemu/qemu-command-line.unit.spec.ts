import { describe, expect, it } from 'vitest';
import { newMac, qemuCommandLine } from './qemu-command-line.ts';
import type { QemuVmConfig } from './vm-config.ts';

const config: QemuVmConfig = {
  kind: 'qemu', name: 'web', machine: 'pc-q35-7.2', vcpus: 2, memoryBytes: 1024 * 1024 * 1024,
  disks: [{ id: 'vda', format: 'qcow2', sizeBytes: 1, file: '/old/vda.qcow2' }, { id: 'vdb', format: 'raw', sizeBytes: 1, file: '/old/vdb.raw' }],
  nics: [{ id: 'nic0', mac: '52:54:00:aa:bb:cc', model: 'e1000' }],
  hostPaths: [], uuid: 'u-old', kernel: '/boot/k', initrd: '/boot/i', append: 'root=/dev/vda',
};

describe('qemuCommandLine', () => {
  it('instant recovery: each disk a qcow2 overlay over its NBD export in one node, the export reconnected when it comes back', () => {
    const argv = qemuCommandLine(config, {
      name: 'web-now', uuid: 'u-new', macs: {}, qmpSocket: '/v/qmp.sock', serialLog: '/v/serial.log', pidFile: '/v/qemu.pid',
      disks: [{ name: 'vda', file: '/v/vda.overlay.qcow2', format: 'qcow2', nbd: { socket: '/v/export,1.sock', exportName: 'vda' }, node: 'vda-top' }],
    });
    const i = argv.indexOf('-blockdev');
    expect(argv[i + 1]).toBe('driver=qcow2,node-name=vda-top,file.driver=file,file.filename=/v/vda.overlay.qcow2,backing.driver=nbd,backing.node-name=vda-top-nbd,'
      + 'backing.server.type=unix,backing.server.path=/v/export,,1.sock,backing.export=vda,backing.reconnect-delay=60');
    expect(argv).toContain('virtio-blk-pci,drive=vda-top,id=vda');
    expect(argv.filter((a) => a === '-blockdev')).toHaveLength(1);
  });

  it('recreates machine, CPUs, memory, kernel boot, the restored disks in order and NICs with the new identity', () => {
    const argv = qemuCommandLine(config, {
      name: 'web-copy', uuid: 'u-new', macs: { nic0: '52:54:00:01:02:03' }, qmpSocket: '/v/qmp.sock', serialLog: '/v/serial.log', pidFile: '/v/qemu.pid',
      disks: [{ name: 'vdb', file: '/v/vdb.raw', format: 'raw' }, { name: 'vda', file: '/v/vda.raw', format: 'raw' }],
    });
    const line = argv.join(' ');
    expect(argv[0]).toBe('qemu-system-x86_64');
    expect(line).toContain('-name web-copy -uuid u-new -M pc-q35-7.2');
    expect(line).toContain('-smp 2 -m 1024');
    expect(line).toContain('-kernel /boot/k -initrd /boot/i -append root=/dev/vda');
    expect(line.indexOf('filename=/v/vda.raw')).toBeLessThan(line.indexOf('filename=/v/vdb.raw'));
    expect(line).toContain('virtio-blk-pci,drive=disk0-fmt,id=vda');
    expect(line).toContain('e1000,netdev=nic0-net,id=nic0,mac=52:54:00:01:02:03');
    expect(line).toContain('user,id=nic0-net,restrict=on');
    expect(line).not.toContain('/old/');
    expect(line).not.toContain('52:54:00:aa:bb:cc');
  });

  it('makes locally administered MACs in QEMU\'s range', () => {
    expect(newMac()).toMatch(/^52:54:00(:[0-9a-f]{2}){3}$/);
  });
});
