import { describe, expect, it } from 'vitest';
import { CliError } from '../cli-error.ts';
import { libvirtNbdOptions, parseNbdPorts } from './libvirt-options.ts';

describe('cairn hypervisor add libvirt: --nbd-tls-dir and --nbd-ports', () => {
  const tls = 'qemu+tls://host.example/system';

  it('a range or one port', () => {
    expect(parseNbdPorts('10809-10899')).toEqual([10809, 10899]);
    expect(parseNbdPorts(' 10950 - 10950 ')).toEqual([10950, 10950]);
    expect(parseNbdPorts('10810')).toEqual([10810, 10810]);
  });

  it('refuses what is not a port range, with the reason', () => {
    for (const bad of ['', 'a-b', '0-10', '10-70000', '10899-10809', '10809,10810', '-5']) {
      expect(() => parseNbdPorts(bad), bad).toThrow(CliError);
    }
    expect(() => parseNbdPorts('10899-10809')).toThrow(/first port \(10899\) is above the last \(10809\)/);
  });

  it('qemu+tls:// only; the directory is made absolute', () => {
    expect(libvirtNbdOptions(tls, {})).toEqual({});
    expect(libvirtNbdOptions(tls, { nbdTlsDir: '/etc/pki/cairn', nbdPorts: '11000-11010' })).toEqual({ nbdTlsDir: '/etc/pki/cairn', nbdPorts: [11000, 11010] });
    expect(libvirtNbdOptions(tls, { nbdTlsDir: 'pki' }).nbdTlsDir).toBe(`${process.cwd()}/pki`);
    expect(() => libvirtNbdOptions('qemu:///system', { nbdPorts: '11000-11010' })).toThrow(/qemu\+tls:\/\/ URIs only/);
    expect(() => libvirtNbdOptions('qemu+ssh://root@h/system?keyfile=/k', { nbdTlsDir: '/x' })).toThrow(/qemu\+ssh:\/\/root@h\/system exports through a unix socket/);
  });
});
