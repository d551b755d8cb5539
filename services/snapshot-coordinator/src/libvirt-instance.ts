// One libvirt connection of the coordinator: the adapter with its state under the data
// directory, its NBD socket and scratch files where QEMU (libvirt's qemu user) can reach them,
// and libvirt's domain events turned into inventory rounds (several events close together
// make one round).
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { LibvirtAdapter, type AdapterLogger } from '@cairn/hypervisor';

export interface LibvirtInstance {
  readonly name: string;
  readonly uri: string;
  readonly credentialsFile?: string;
  readonly scratchDir?: string;
  /** qemu+tls:// only: the NBD client certificate directory (LibvirtAdapterConfig.nbdTlsDir). */
  readonly nbdTlsDir?: string;
  /** qemu+tls:// only: the host's TCP ports for NBD exports, first and last. */
  readonly nbdPorts?: readonly [number, number];
}

/**
 * What is wrong with an instance's NBD settings, or undefined: they apply to qemu+tls:// only
 * (other transports use a unix socket), the directory is absolute, and the range runs upwards.
 */
export function libvirtNbdSettingsProblem(i: Pick<LibvirtInstance, 'uri' | 'nbdTlsDir' | 'nbdPorts'>): string | undefined {
  const tls = /^[a-z0-9]+\+tls:\/\//i.test(i.uri);
  if (!tls && (i.nbdTlsDir !== undefined || i.nbdPorts !== undefined)) {
    return `nbdTlsDir and nbdPorts apply to qemu+tls:// connections only (NBD over TCP with TLS); ${i.uri.replace(/\?.*$/, '')} exports through a unix socket`;
  }
  if (i.nbdTlsDir !== undefined && !i.nbdTlsDir.startsWith('/')) return `nbdTlsDir must be an absolute path, not ${JSON.stringify(i.nbdTlsDir)}`;
  if (i.nbdPorts) {
    const [lo, hi] = i.nbdPorts;
    for (const p of [lo, hi]) if (!Number.isInteger(p) || p < 1 || p > 65535) return `nbdPorts: ${p} is not a TCP port (1–65535)`;
    if (lo > hi) return `nbdPorts: the first port (${lo}) is above the last (${hi})`;
  }
  return undefined;
}

export interface LibvirtInstanceSettings {
  readonly dataDir: string;
  readonly leaseMs: number;
  readonly logger: AdapterLogger & { child(b: object): AdapterLogger };
  /** Called (debounced) when libvirt reports a domain event. */
  readonly onChange: () => void;
}

/**
 * Default scratch directory: under /var/tmp (on disk, not RAM; world-traversable, so the qemu
 * user reaches it), one per data directory and instance, short enough for a unix socket path.
 */
export function defaultScratchDir(dataDir: string, name: string): string {
  return `/var/tmp/cairn-lv-${createHash('sha256').update(`${dataDir}\0${name}`).digest('hex').slice(0, 12)}`;
}

export async function connectLibvirt(i: LibvirtInstance, s: LibvirtInstanceSettings): Promise<LibvirtAdapter> {
  const problem = libvirtNbdSettingsProblem(i);
  if (problem) throw new Error(`libvirt ${i.name}: ${problem}`);
  const logger = s.logger.child({ instance: i.name });
  const scratch = i.scratchDir ?? defaultScratchDir(s.dataDir, i.name);
  const adapter = await LibvirtAdapter.connect({
    uri: i.uri, runDir: scratch, stateDir: join(s.dataDir, 'libvirt', i.name), defaultLeaseMs: s.leaseMs, logger,
    ...(i.credentialsFile ? { credentialsFile: i.credentialsFile } : {}),
    ...(i.nbdTlsDir ? { nbdTlsDir: i.nbdTlsDir } : {}),
    ...(i.nbdPorts ? { nbdPorts: i.nbdPorts } : {}),
  });
  let timer: NodeJS.Timeout | undefined;
  adapter.watch((e) => {
    if (!/lifecycle|device-added|device-removed|device-removal-failed/.test(e.event)) return;
    clearTimeout(timer);
    timer = setTimeout(s.onChange, 500).unref();
  });
  return adapter;
}
