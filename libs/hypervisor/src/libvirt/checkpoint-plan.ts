// Pure decision for a libvirt backup: per disk full or incremental and why, against which
// checkpoint, and the name of the checkpoint this backup creates. Cairn remembers, per domain
// and chain, the checkpoint of the last successful backup, the domain's UUID and each disk's
// image; any mismatch with what libvirt shows now (checkpoint gone, domain redefined, disk
// replaced, bitmap broken) makes that disk's next backup full, with the reason.

export interface ChainRecord {
  /** Checkpoint created by the last successful backup of this chain. */
  readonly checkpoint: string;
  readonly domainUuid: string;
  /** Disk target -> image (source) at that backup. */
  readonly disks: Readonly<Record<string, string>>;
}

export interface PlanDisk {
  readonly target: string;
  readonly source: string | undefined;
  readonly format: string;
}

export interface LibvirtDiskPlan {
  readonly target: string;
  readonly mode: 'full' | 'incremental';
  readonly reason: string;
  /** Checkpoint to read changes since (incremental only). */
  readonly since?: string;
  /** Whether the new checkpoint gets a bitmap on this disk (qcow2 only). */
  readonly bitmap: boolean;
}

export interface LibvirtBackupPlan {
  readonly checkpoint: string;
  readonly disks: readonly LibvirtDiskPlan[];
}

const CHAIN = /^[A-Za-z0-9_-]{1,64}$/;

/** `cairn.<chain>.<viewId>`: the checkpoint (and the qcow2 bitmap libvirt names after it). */
export function checkpointName(chain: string, viewId: string): string {
  if (!CHAIN.test(chain)) throw new Error(`chain ${JSON.stringify(chain)} must match ${CHAIN.source}`);
  return `cairn.${chain}.${viewId}`;
}

export function parseCheckpointName(name: string): { chain: string; viewId: string } | undefined {
  const m = /^cairn\.([A-Za-z0-9_-]{1,64})\.(v[a-z0-9]{11})$/.exec(name);
  return m ? { chain: m[1]!, viewId: m[2]! } : undefined;
}

export function planLibvirtBackup(input: {
  readonly chain: string;
  readonly viewId: string;
  readonly requested: 'auto' | 'full';
  readonly domainUuid: string;
  readonly disks: readonly PlanDisk[];
  readonly record: ChainRecord | undefined;
  /** Checkpoints libvirt has for the domain now: name -> disks with a bitmap. */
  readonly checkpoints: ReadonlyMap<string, readonly string[]>;
  /** libvirt refused an incremental against the recorded checkpoint (its message). */
  readonly broken?: string;
}): LibvirtBackupPlan {
  const checkpoint = checkpointName(input.chain, input.viewId);
  const r = input.record;
  const chainWide = ((): string | undefined => {
    if (!r) return `no Cairn checkpoint of chain ${input.chain} on this domain yet (first backup)`;
    if (r.domainUuid !== input.domainUuid) {
      return `the domain was redefined (UUID ${r.domainUuid} is now ${input.domainUuid}): checkpoint ${r.checkpoint} no longer applies`;
    }
    if (!input.checkpoints.has(r.checkpoint)) {
      return `checkpoint ${r.checkpoint} of the last backup is gone (deleted outside Cairn, the domain redefined without its checkpoints, or moved to another host)`;
    }
    if (input.broken) return `checkpoint ${r.checkpoint} is broken (${input.broken}); the domain probably stopped uncleanly`;
    return undefined;
  })();
  const disks = input.disks.map((d): LibvirtDiskPlan => {
    const bitmap = d.format === 'qcow2';
    const full = (reason: string): LibvirtDiskPlan => ({ target: d.target, mode: 'full', reason, bitmap });
    if (!bitmap) return full(`${d.format} disk: no checkpoint bitmap possible, every backup is full`);
    if (chainWide) return full(chainWide);
    const rec = r!;
    if (!(d.target in rec.disks) || !input.checkpoints.get(rec.checkpoint)!.includes(d.target)) {
      return full(`disk ${d.target} is not in checkpoint ${rec.checkpoint} (attached since the last backup)`);
    }
    if (rec.disks[d.target] !== d.source) {
      return full(`disk ${d.target} was replaced (${rec.disks[d.target] ?? 'none'} is now ${d.source ?? 'none'})`);
    }
    if (input.requested === 'full') return full('full backup requested');
    return { target: d.target, mode: 'incremental', reason: `changes since checkpoint ${rec.checkpoint} (chain ${input.chain})`, since: rec.checkpoint, bitmap };
  });
  return { checkpoint, disks };
}

/** libvirt's refusal of an incremental because a checkpoint's bitmap is missing or broken. */
export function isBrokenCheckpointError(message: string): boolean {
  return /checkpoint inconsistent|missing or broken bitmap|bitmap .* (is )?inconsistent/i.test(message);
}
