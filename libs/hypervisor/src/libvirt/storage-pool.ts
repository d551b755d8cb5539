// A whole-VM restore into a libvirt storage pool (`cairn restore … --host h --storage <pool>`):
// the restored disk files become volumes of the pool (`vol-create-as`, then `vol-upload
// --sparse`, which goes through libvirt, so it works for a remote host too), and the domain is
// defined on the volumes' paths. Refused with the reason, before any volume is made, for a pool
// libvirt does not have, one that is not running, not file-based, or without the space.
// Again for the same restore: a volume whose source file is gone was imported already.
import { stat, rm } from 'node:fs/promises';
import { Virsh, VirshError } from './virsh.ts';

/** The pool cannot take the restore: unknown, inactive, not file-based, or too small. */
export class StoragePoolError extends Error {
  override readonly name = 'StoragePoolError';
  constructor(message: string, readonly code: 'not_found' | 'conflict' | 'invalid') { super(message); }
}

export interface PoolVolume {
  /** Volume name in the pool (`<vm>-<disk>.<format>`). */
  readonly name: string;
  /** The restored file (removed once uploaded). */
  readonly file: string;
  readonly format: 'raw' | 'qcow2';
  /** The disk's virtual size. */
  readonly capacityBytes: number;
}

export interface PoolInfo { readonly state: string; readonly availableBytes: number; readonly type: string }

/** Pure: may these files go into a pool in this state? (bytes = what the uploads allocate) */
export function poolRefusal(pool: string, info: PoolInfo, neededBytes: number): StoragePoolError | undefined {
  if (info.state !== 'running') return new StoragePoolError(`storage pool ${pool} is ${info.state || 'not running'}: start it (virsh pool-start ${pool}); nothing was changed`, 'conflict');
  if (!['dir', 'fs', 'netfs'].includes(info.type)) return new StoragePoolError(`storage pool ${pool} is of type ${info.type}: a restore goes into file-based pools (dir, fs, netfs)`, 'invalid');
  if (neededBytes > info.availableBytes) {
    return new StoragePoolError(`storage pool ${pool} has ${info.availableBytes} bytes available; the restored disks need ${neededBytes}: free space or choose another pool (the restored files are kept where they were written)`, 'conflict');
  }
  return undefined;
}

export async function poolInfo(virsh: Virsh, pool: string): Promise<PoolInfo> {
  let out: string;
  try { out = await virsh.run(['pool-info', '--bytes', pool]); } catch (e) {
    if (e instanceof VirshError && /not found|no storage pool/i.test(e.message)) {
      const pools = (await virsh.run(['pool-list', '--all', '--name']).catch(() => '')).split('\n').map((s) => s.trim()).filter(Boolean);
      throw new StoragePoolError(`libvirt at ${virsh.opts.uri} has no storage pool ${pool} (it has ${pools.join(', ') || 'none'})`, 'not_found');
    }
    throw e;
  }
  const field = (k: string) => new RegExp(`^${k}:\\s*(.*)$`, 'mi').exec(out)?.[1]?.trim() ?? '';
  const xml = await virsh.run(['pool-dumpxml', pool]);
  return { state: field('State'), availableBytes: Number(field('Available')) || 0, type: /<pool\s+type=['"]([^'"]+)['"]/.exec(xml)?.[1] ?? '' };
}

/** Imports the files as volumes of the pool; answers each volume's path by its file. */
export async function importIntoPool(virsh: Virsh, pool: string, volumes: readonly PoolVolume[]): Promise<Map<string, string>> {
  const info = await poolInfo(virsh, pool);
  const volPath = (name: string) => virsh.run(['vol-path', '--pool', pool, name]).then((s) => s.trim(), () => undefined);
  const pending: Array<PoolVolume & { existing: string | undefined; allocated: number }> = [];
  const paths = new Map<string, string>();
  for (const v of volumes) {
    const existing = await volPath(v.name);
    const s = await stat(v.file).catch(() => undefined);
    if (!s) {
      if (!existing) throw new Error(`neither ${v.file} nor volume ${v.name} of pool ${pool} holds the restored disk`);
      paths.set(v.file, existing); // imported by an earlier attempt
      continue;
    }
    pending.push({ ...v, existing, allocated: s.blocks * 512 });
  }
  const refusal = poolRefusal(pool, info, pending.filter((p) => !p.existing).reduce((n, p) => n + p.allocated, 0));
  if (refusal) throw refusal;
  for (const v of pending) {
    if (!v.existing) await virsh.run(['vol-create-as', pool, v.name, String(v.capacityBytes), '--allocation', '0', '--format', v.format]);
    await virsh.run(['vol-upload', '--pool', pool, '--sparse', v.name, v.file], 3_600_000);
    const path = await volPath(v.name);
    if (!path) throw new Error(`volume ${v.name} of pool ${pool} has no path after its upload`);
    await rm(v.file, { force: true });
    paths.set(v.file, path);
  }
  await virsh.run(['pool-refresh', pool]).catch(() => undefined);
  return paths;
}
