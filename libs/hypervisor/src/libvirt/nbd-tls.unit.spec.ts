import { describe, expect, it } from 'vitest';
import { hostOf, isPortTakenError, nbdTlsFiles, transportOf } from './nbd-tls.ts';

describe('NBD TLS files of a qemu+tls URI', () => {
  it('tells the transport and the host', () => {
    expect(transportOf('qemu+tls://kvm1/system')).toBe('tls');
    expect(transportOf('qemu+ssh://root@kvm1/system')).toBe('ssh');
    expect(transportOf('qemu:///system')).toBe('');
    expect(hostOf('qemu+tls://kvm1.example:16515/system?pkipath=/p')).toBe('kvm1.example');
    expect(hostOf('qemu+tls://[fd00::1]/system')).toBe('fd00::1');
  });
  it('takes the URI\'s pkipath, an explicit directory in either naming, or libvirt\'s defaults', () => {
    const none = () => false;
    expect(nbdTlsFiles('qemu+tls://h/system?pkipath=/etc/cairn/pki', { root: true, exists: none }))
      .toEqual({ caFile: '/etc/cairn/pki/cacert.pem', certFile: '/etc/cairn/pki/clientcert.pem', keyFile: '/etc/cairn/pki/clientkey.pem' });
    expect(nbdTlsFiles('qemu+tls://h/system?pkipath=/p', { dir: '/q', root: true, exists: (f) => f === '/q/client-cert.pem' }))
      .toEqual({ caFile: '/q/ca-cert.pem', certFile: '/q/client-cert.pem', keyFile: '/q/client-key.pem' });
    expect(nbdTlsFiles('qemu+tls://h/system', { dir: '/q', root: true, exists: none }).certFile).toBe('/q/clientcert.pem');
    expect(nbdTlsFiles('qemu+tls://h/system', { root: true, exists: none }))
      .toEqual({ caFile: '/etc/pki/CA/cacert.pem', certFile: '/etc/pki/libvirt/clientcert.pem', keyFile: '/etc/pki/libvirt/private/clientkey.pem' });
    expect(nbdTlsFiles('qemu+tls://h/system', { root: false, exists: none }).caFile).toMatch(/\.pki\/libvirt\/cacert\.pem$/);
  });
  it('knows a port taken on the host', () => {
    expect(isPortTakenError("virsh backup-begin d: internal error: unable to execute QEMU command 'nbd-server-start': Failed to bind socket: Address already in use")).toBe(true);
    expect(isPortTakenError('checkpoint not found')).toBe(false);
  });
});
