// The last step of instant recovery on QEMU: each disk of a running VM (a local overlay over an
// NBD export) is mirrored into a local image with `blockdev-mirror sync=full` from the top of
// its chain; once the mirror is ready (the copy caught up, guest writes go to both sides)
// `job-complete` pivots the device onto the copy, and the old chain (overlay and NBD backing)
// is deleted, which closes the export's connection. A caller that died midway can call this
// again: a mirror job still running is taken over, a disk already pivoted is skipped.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { QmpClient } from '../qmp/qmp-client.ts';

const run = promisify(execFile);

export interface MirrorDisk {
  /** Block node of the disk's top (its overlay). */
  readonly node: string;
  /** Local image the disk ends up in (made here with the disk's size). */
  readonly target: string;
  readonly format: 'raw' | 'qcow2';
  readonly sizeBytes: number;
}

export interface MirrorProgress { readonly node: string; readonly bytesDone: number; readonly bytesTotal: number; readonly ready: boolean }

interface BlockJob { device: string; len: number; offset: number; ready: boolean; status: string; type: string }
interface NamedNode { 'node-name': string }

export const mirrorJobId = (node: string): string => `cairn-mirror-${node}`;
export const mirrorTargetNode = (node: string): string => `${node}-local`;

/** Mirror jobs of these nodes that QEMU runs now: bytes done, total, ready. */
export async function mirrorProgress(qmp: Pick<QmpClient, 'execute'>, nodes: readonly string[]): Promise<MirrorProgress[]> {
  const jobs = await qmp.execute<BlockJob[]>('query-block-jobs');
  return nodes.flatMap((node) => jobs.filter((j) => j.device === mirrorJobId(node)).map((j) => ({ node, bytesDone: j.offset, bytesTotal: j.len, ready: j.ready })));
}

async function nodeNames(qmp: Pick<QmpClient, 'execute'>): Promise<Set<string>> {
  return new Set((await qmp.execute<NamedNode[]>('query-named-block-nodes', { flat: true })).map((n) => n['node-name']));
}

/** Mirrors every disk to its local image and pivots, one disk after the other. */
export async function mirrorAndPivot(qmp: QmpClient, disks: readonly MirrorDisk[], o: { onProgress?: (p: MirrorProgress) => void; pollMs?: number } = {}): Promise<void> {
  for (const d of disks) {
    const job = mirrorJobId(d.node);
    const tnode = mirrorTargetNode(d.node);
    const nodes = await nodeNames(qmp);
    if (!nodes.has(d.node) && nodes.has(tnode)) continue; // pivoted by an earlier call
    const running = (await qmp.execute<BlockJob[]>('query-block-jobs')).some((j) => j.device === job);
    if (!running) {
      // A target left by a dead attempt is made again: the mirror copies everything anyway.
      if (nodes.has(tnode)) await qmp.execute('blockdev-del', { 'node-name': tnode });
      if (nodes.has(`${tnode}-file`)) await qmp.execute('blockdev-del', { 'node-name': `${tnode}-file` });
      await run('qemu-img', ['create', '-q', '-f', d.format, d.target, String(d.sizeBytes)]);
      await qmp.execute('blockdev-add', { driver: 'file', 'node-name': `${tnode}-file`, filename: d.target });
      await qmp.execute('blockdev-add', { driver: d.format, 'node-name': tnode, file: `${tnode}-file` });
      await qmp.execute('blockdev-mirror', { 'job-id': job, device: d.node, target: tnode, sync: 'full' });
    }
    // Wait until the copy caught up; guest writes from then on go to both sides.
    for (;;) {
      const j = (await qmp.execute<BlockJob[]>('query-block-jobs')).find((x) => x.device === job);
      if (!j) throw new Error(`the mirror of ${d.node} ended before it was ready (see QEMU's BLOCK_JOB_COMPLETED error)`);
      o.onProgress?.({ node: d.node, bytesDone: j.offset, bytesTotal: j.len, ready: j.ready });
      if (j.ready) break;
      await new Promise((r) => setTimeout(r, o.pollMs ?? 500));
    }
    const completed = qmp.waitForEvent('BLOCK_JOB_COMPLETED', (e) => e['device'] === job, 600_000);
    await qmp.execute('job-complete', { id: job });
    const end = await completed;
    if (end.data['error']) throw new Error(`the mirror of ${d.node} failed at the pivot: ${String(end.data['error'])}`);
    // The device runs on the copy now; the old chain (overlay, NBD backing) goes, and with it the export's connection.
    await qmp.execute('blockdev-del', { 'node-name': d.node });
  }
}
