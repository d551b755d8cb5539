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
  const logger = s.logger.child({ instance: i.name });
  const scratch = i.scratchDir ?? defaultScratchDir(s.dataDir, i.name);
  const adapter = await LibvirtAdapter.connect({
    uri: i.uri, runDir: scratch, stateDir: join(s.dataDir, 'libvirt', i.name), defaultLeaseMs: s.leaseMs, logger,
    ...(i.credentialsFile ? { credentialsFile: i.credentialsFile } : {}),
  });
  let timer: NodeJS.Timeout | undefined;
  adapter.watch((e) => {
    if (!/lifecycle|device-added|device-removed|device-removal-failed/.test(e.event)) return;
    clearTimeout(timer);
    timer = setTimeout(s.onChange, 500).unref();
  });
  return adapter;
}
