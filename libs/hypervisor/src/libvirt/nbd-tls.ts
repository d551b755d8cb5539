// qemu+tls:// hosts: a pull-mode backup's NBD export is on the host, reached over TCP, so it is
// served with TLS (libvirt's <server tls='yes'>, QEMU's x509 credentials from the host's
// backup_tls_x509_cert_dir, client certificates verified by default) and read with the client
// certificate libvirt itself uses for the URI: its `pkipath` directory, else libvirt's default
// places (as root /etc/pki/CA/cacert.pem and /etc/pki/libvirt/{clientcert,private/clientkey}.pem,
// otherwise ~/.pki/libvirt/). One CA for the libvirt connection and the NBD exports is the
// usual setup; an explicit directory (`nbdTlsDir`) names another one.
import { homedir } from 'node:os';
import { join } from 'node:path';

/** Files the data mover reads for an export served with TLS (paths on its machine). */
export interface NbdTlsFiles {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

/** The URI's transport (`tls` for qemu+tls://, `ssh`, … ; '' for qemu:///system). */
export function transportOf(uri: string): string {
  const m = /^[a-z0-9]+\+([a-z0-9]+):/i.exec(uri);
  return m ? m[1]!.toLowerCase() : '';
}

/** The host name of a remote URI (`kvm1` in qemu+tls://kvm1/system). */
export function hostOf(uri: string): string {
  try { return new URL(uri).hostname.replace(/^\[(.*)\]$/, '$1'); } catch { return ''; }
}

/**
 * The client PKI for a qemu+tls URI: `dir` if given (QEMU's names ca-cert.pem, client-cert.pem,
 * client-key.pem, or libvirt's cacert.pem, clientcert.pem, clientkey.pem — whichever `exists`
 * finds), else the URI's pkipath, else libvirt's defaults.
 */
export function nbdTlsFiles(uri: string, o: { dir?: string; root: boolean; exists: (path: string) => boolean }): NbdTlsFiles {
  let pkipath: string | null = null;
  try { pkipath = new URL(uri).searchParams.get('pkipath'); } catch { /* not a URL: defaults */ }
  const dir = o.dir ?? pkipath ?? undefined;
  if (dir) {
    const qemuNames = { caFile: join(dir, 'ca-cert.pem'), certFile: join(dir, 'client-cert.pem'), keyFile: join(dir, 'client-key.pem') };
    if (o.dir && o.exists(qemuNames.certFile)) return qemuNames;
    return { caFile: join(dir, 'cacert.pem'), certFile: join(dir, 'clientcert.pem'), keyFile: join(dir, 'clientkey.pem') };
  }
  if (o.root) return { caFile: '/etc/pki/CA/cacert.pem', certFile: '/etc/pki/libvirt/clientcert.pem', keyFile: '/etc/pki/libvirt/private/clientkey.pem' };
  const d = join(homedir(), '.pki', 'libvirt');
  return { caFile: join(d, 'cacert.pem'), certFile: join(d, 'clientcert.pem'), keyFile: join(d, 'clientkey.pem') };
}

/** libvirt's and QEMU's words when the NBD server cannot listen on the port asked for. */
export function isPortTakenError(message: string): boolean {
  return /address already in use|failed to bind|EADDRINUSE|cannot bind/i.test(message);
}
