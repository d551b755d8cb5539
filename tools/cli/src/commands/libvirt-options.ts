// `cairn hypervisor add libvirt` options beyond the URI: the NBD settings of qemu+tls://
// connections (the NBD exports listen on TCP ports of the host, with TLS).
import { resolve } from 'node:path';
import { CliError, EXIT } from '../cli-error.ts';

const isTls = (uri: string) => /^[a-z0-9]+\+tls:\/\//i.test(uri);

/** `10809-10899` (or one port) as [first, last]; anything else is a usage error. */
export function parseNbdPorts(text: string): [number, number] {
  const m = /^\s*(\d{1,5})\s*(?:-\s*(\d{1,5})\s*)?$/.exec(text);
  const lo = Number(m?.[1]);
  const hi = Number(m?.[2] ?? m?.[1]);
  if (!m || lo < 1 || hi > 65535) throw new CliError(`--nbd-ports must be a TCP port range such as 10809-10899, not ${JSON.stringify(text)}`, EXIT.usage);
  if (lo > hi) throw new CliError(`--nbd-ports: the first port (${lo}) is above the last (${hi})`, EXIT.usage);
  return [lo, hi];
}

/** The NBD fields of an AddHypervisor libvirt payload from --nbd-tls-dir and --nbd-ports. */
export function libvirtNbdOptions(uri: string, o: { nbdTlsDir?: unknown; nbdPorts?: unknown }): { nbdTlsDir?: string; nbdPorts?: [number, number] } {
  if (o.nbdTlsDir === undefined && o.nbdPorts === undefined) return {};
  if (!isTls(uri)) {
    throw new CliError(`--nbd-tls-dir and --nbd-ports apply to qemu+tls:// URIs only (NBD over TCP with TLS); ${uri.replace(/\?.*$/, '')} exports through a unix socket`, EXIT.usage);
  }
  return {
    ...(o.nbdTlsDir !== undefined ? { nbdTlsDir: resolve(String(o.nbdTlsDir)) } : {}),
    ...(o.nbdPorts !== undefined ? { nbdPorts: parseNbdPorts(String(o.nbdPorts)) } : {}),
  };
}
