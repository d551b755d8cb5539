// The libvirt side of instant recovery: a domain whose disks are local qcow2 overlays over a
// read-only NBD export is moved onto local images with libvirt's block copy while it runs
// (`virsh blockcopy --transient-job`: the domain stays persistent; the copy follows the guest's
// writes once ready), pivoted (`virsh blockjob --pivot`: the live and the persistent definition
// then name the local image, and the old chain with its NBD connection goes), or removed
// (destroyed and undefined). Each step looks at the domain's live XML first, so a caller that
// died midway calls it again: a copy running is followed, a disk pivoted is left alone.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { liveDisks, type LiveDisk } from './domain-xml.ts';
import { VirshError, type Virsh } from './virsh.ts';

const run = promisify(execFile);

export interface CopyTarget {
  /** The disk's target device (`vda`). */
  readonly target: string;
  /** The local image the disk ends up in (made here with the disk's size). */
  readonly dest: string;
  readonly format: 'raw' | 'qcow2';
  readonly sizeBytes: number;
}

export interface CopyState { readonly disk: string; readonly bytesDone: number; readonly bytesTotal: number; readonly ready: boolean; readonly pivoted: boolean }

export class BlockCopyError extends Error { override readonly name = 'BlockCopyError'; }

const notFound = (e: unknown) => e instanceof VirshError && /failed to get domain|not found/i.test(e.message);

async function live(virsh: Virsh, domain: string): Promise<Map<string, LiveDisk>> {
  return new Map(liveDisks(await virsh.run(['dumpxml', domain])).map((d) => [d.target, d]));
}

/** `virsh blockjob --info --bytes`: "Block Copy: 123/456 bytes", or a percentage. */
export function parseBlockJobInfo(out: string, sizeBytes: number): { done: number; total: number } | undefined {
  const bytes = /(\d+)\s*\/\s*(\d+)/.exec(out);
  if (bytes) return { done: Number(bytes[1]), total: Number(bytes[2]) };
  const pct = /\[\s*([\d.]+)\s*%\]/.exec(out);
  if (pct) return { done: Math.round((Number(pct[1]) / 100) * sizeBytes), total: sizeBytes };
  return undefined;
}

/**
 * Starts the block copy of every disk not yet copying or pivoted, and answers each disk's
 * state. Refused for a domain that does not run (a copy needs QEMU).
 */
export async function startOrFollowCopies(virsh: Virsh, domain: string, targets: readonly CopyTarget[]): Promise<CopyState[]> {
  if ((await virsh.run(['domstate', domain])).trim() !== 'running') throw new BlockCopyError(`domain ${domain} is not running: nothing to copy`);
  const disks = await live(virsh, domain);
  const out: CopyState[] = [];
  for (const t of targets) {
    const d = disks.get(t.target);
    if (!d) throw new BlockCopyError(`domain ${domain} has no disk ${t.target}`);
    if (!d.mirror && d.source === t.dest && !d.networkBacking) { out.push({ disk: t.target, bytesDone: t.sizeBytes, bytesTotal: t.sizeBytes, ready: true, pivoted: true }); continue; }
    if (d.mirror && d.mirror.file !== t.dest) throw new BlockCopyError(`disk ${t.target} of ${domain} is being copied to ${d.mirror.file}, not ${t.dest}`);
    if (!d.mirror) {
      // The image is made here (any left by a dead attempt is made again: the copy writes it all).
      await run('qemu-img', ['create', '-q', '-f', t.format, t.dest, String(t.sizeBytes)]);
      await virsh.run(['blockcopy', domain, t.target, '--dest', t.dest, '--format', t.format, '--reuse-external', '--transient-job'], 120_000);
    }
    const info = parseBlockJobInfo(await virsh.run(['blockjob', domain, t.target, '--info', '--bytes']).catch(() => ''), t.sizeBytes);
    const ready = d.mirror?.ready ?? false;
    out.push({ disk: t.target, bytesDone: info?.done ?? 0, bytesTotal: info?.total ?? t.sizeBytes, ready, pivoted: false });
  }
  return out;
}

/** Pivots every disk whose copy is ready onto its local image; refused while one is not ready. */
export async function pivotCopies(virsh: Virsh, domain: string, targets: readonly CopyTarget[]): Promise<CopyState[]> {
  const disks = await live(virsh, domain);
  for (const t of targets) {
    const d = disks.get(t.target);
    if (!d) throw new BlockCopyError(`domain ${domain} has no disk ${t.target}`);
    if (!d.mirror && d.source === t.dest) continue;
    if (!d.mirror?.ready) throw new BlockCopyError(`the copy of ${t.target} of ${domain} is not ready: mirror it first`);
  }
  for (const t of targets) {
    const d = disks.get(t.target)!;
    if (d.mirror) await virsh.run(['blockjob', domain, t.target, '--pivot'], 300_000);
  }
  const after = await live(virsh, domain);
  return targets.map((t) => {
    const d = after.get(t.target);
    if (d?.source !== t.dest || d.mirror || d.networkBacking) throw new BlockCopyError(`disk ${t.target} of ${domain} is on ${d?.source ?? 'nothing'} after the pivot, not ${t.dest}`);
    return { disk: t.target, bytesDone: t.sizeBytes, bytesTotal: t.sizeBytes, ready: true, pivoted: true };
  });
}

/** Destroys (when it runs) and undefines a domain; what went. Nothing to do for a domain libvirt does not know. */
export async function removeDomain(virsh: Virsh, domain: string): Promise<string[]> {
  let state: string;
  try { state = (await virsh.run(['domstate', domain])).trim(); } catch (e) {
    if (notFound(e)) return [];
    throw e;
  }
  const removed: string[] = [];
  if (state !== 'shut off' && state !== 'crashed') {
    await virsh.run(['destroy', domain], 120_000);
    removed.push(`libvirt domain ${domain} stopped`);
  }
  await virsh.run(['undefine', domain]);
  removed.push(`libvirt domain ${domain} undefined`);
  return removed;
}
