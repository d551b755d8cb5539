import { describe, expect, it } from 'vitest';
import { libvirtNbdSettingsProblem } from './libvirt-instance.ts';
import { parseCoordinatorConfig } from './snapshot-coordinator.config.ts';

describe('libvirt NBD settings (nbdTlsDir, nbdPorts)', () => {
  const tls = 'qemu+tls://host.example/system?pkipath=/etc/pki/cairn';

  it('qemu+tls:// takes an absolute directory and an upward port range', () => {
    expect(libvirtNbdSettingsProblem({ uri: tls, nbdTlsDir: '/etc/pki/cairn', nbdPorts: [11000, 11010] })).toBeUndefined();
    expect(libvirtNbdSettingsProblem({ uri: tls, nbdPorts: [11000, 11000] })).toBeUndefined();
    expect(libvirtNbdSettingsProblem({ uri: 'qemu:///system' })).toBeUndefined();
    expect(libvirtNbdSettingsProblem({ uri: tls, nbdTlsDir: 'pki' })).toMatch(/absolute path/);
    expect(libvirtNbdSettingsProblem({ uri: tls, nbdPorts: [11010, 11000] })).toMatch(/first port \(11010\) is above the last \(11000\)/);
    expect(libvirtNbdSettingsProblem({ uri: tls, nbdPorts: [0, 11000] })).toMatch(/not a TCP port/);
  });

  it('other transports refuse them (their exports are unix sockets)', () => {
    expect(libvirtNbdSettingsProblem({ uri: 'qemu:///system', nbdPorts: [11000, 11010] })).toMatch(/qemu\+tls:\/\/ connections only/);
    expect(libvirtNbdSettingsProblem({ uri: 'qemu+ssh://root@h/system?keyfile=/k', nbdTlsDir: '/x' })).toMatch(/qemu\+ssh:\/\/root@h\/system exports through a unix socket/);
  });

  it('the coordinator config validates them at start-up', () => {
    const base = { site: 'a', natsUrl: 'nats://127.0.0.1:4222', dataDir: '/var/lib/cairn' };
    const ok = parseCoordinatorConfig({ ...base, libvirt: [{ name: 'h1', uri: tls, nbdTlsDir: '/etc/pki/cairn', nbdPorts: [11000, 11010] }] });
    expect(ok.libvirt[0]).toMatchObject({ nbdTlsDir: '/etc/pki/cairn', nbdPorts: [11000, 11010] });
    expect(() => parseCoordinatorConfig({ ...base, libvirt: [{ name: 'h1', uri: tls, nbdPorts: [11000] }] })).toThrow(/invalid snapshot-coordinator config: \/libvirt\/0\/nbdPorts/);
    expect(() => parseCoordinatorConfig({ ...base, libvirt: [{ name: 'h1', uri: tls, nbdPorts: [11010, 11000] }] })).toThrow(/\/libvirt\/0 \(h1\) nbdPorts: the first port/);
    expect(() => parseCoordinatorConfig({ ...base, libvirt: [{ name: 'h1', uri: 'qemu:///system', nbdTlsDir: '/x' }] })).toThrow(/qemu\+tls:\/\/ connections only/);
  });
});
