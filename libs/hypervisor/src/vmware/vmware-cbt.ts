// Changed-block tracking for VMware, decided without I/O apart from the one query it is handed:
// full or incremental for one disk, and why, from the chain's last change id and the one the
// snapshot carries; the changed areas from QueryChangedDiskAreas (paged by startOffset).
// vSphere change ids are `<tracking epoch uuid>/<sequence>`: a new epoch means tracking was
// reset (switched off and on, a disk moved), a lower sequence that the VM was reverted.
import { field, list, text, type Node } from './vsphere-xml.ts';
import type { VmwareDisk } from './vmware-inventory.ts';

export interface ChangedArea { readonly start: number; readonly length: number }

export interface ChangedAreasInput {
  readonly mode: 'auto' | 'full';
  readonly chain: string | undefined;
  readonly disk: VmwareDisk;
  /** What the chain's last successful backup of this disk recorded. */
  readonly previous: { readonly changeId: string; readonly capacityBytes: number } | undefined;
  /** One QueryChangedDiskAreas call from `startOffset` (a DiskChangeInfo node). */
  readonly query: (startOffset: number) => Promise<Node | undefined>;
}

export type ChangedAreasPlan =
  | { readonly mode: 'full'; readonly reason: string; readonly changed?: undefined }
  | { readonly mode: 'incremental'; readonly reason: string; readonly changed: ChangedArea[] };

function parseChangeId(id: string): { epoch: string; sequence: number } | undefined {
  const m = /^(.+)\/(\d+)$/.exec(id.trim());
  return m ? { epoch: m[1]!, sequence: Number(m[2]) } : undefined;
}

export async function changedAreasPlan(input: ChangedAreasInput): Promise<ChangedAreasPlan> {
  const { disk, previous } = input;
  if (input.mode === 'full') return { mode: 'full', reason: 'full backup requested' };
  if (!input.chain) return { mode: 'full', reason: 'no backup chain to track changes for' };
  if (!disk.changeId) return { mode: 'full', reason: `vSphere reports no change id for ${disk.id} (change tracking was just switched on, or is off for this disk)` };
  if (!previous) return { mode: 'full', reason: `first backup of ${disk.id} in chain ${input.chain}` };
  if (previous.capacityBytes !== disk.capacityBytes) return { mode: 'full', reason: `${disk.id} was resized from ${previous.capacityBytes} to ${disk.capacityBytes} bytes` };
  const before = parseChangeId(previous.changeId);
  const now = parseChangeId(disk.changeId);
  if (before && now && before.epoch !== now.epoch) return { mode: 'full', reason: `change tracking of ${disk.id} was reset (change id ${previous.changeId} → ${disk.changeId})` };
  if (before && now && now.sequence < before.sequence) return { mode: 'full', reason: `${disk.id} went back to an earlier state (reverted snapshot: change id ${previous.changeId} → ${disk.changeId})` };
  const changed: ChangedArea[] = [];
  let offset = 0;
  while (offset < disk.capacityBytes) {
    let info: Node | undefined;
    try {
      info = await input.query(offset);
    } catch (e) {
      return { mode: 'full', reason: `change id ${previous.changeId} of ${disk.id} is no longer valid (vSphere: ${(e as Error).message})` };
    }
    const start = Number(text(field(info, 'startOffset')) ?? NaN);
    const length = Number(text(field(info, 'length')) ?? NaN);
    if (!Number.isFinite(start) || !Number.isFinite(length) || length <= 0) {
      return { mode: 'full', reason: `QueryChangedDiskAreas for ${disk.id} answered without a usable range` };
    }
    for (const a of list(field(info, 'changedArea'))) {
      const s = Number(text(field(a, 'start')));
      const l = Number(text(field(a, 'length')));
      if (Number.isFinite(s) && Number.isFinite(l) && l > 0) changed.push({ start: s, length: Math.min(l, disk.capacityBytes - s) });
    }
    offset = start + length;
  }
  changed.sort((a, b) => a.start - b.start);
  const bytes = changed.reduce((s, a) => s + a.length, 0);
  return { mode: 'incremental', reason: `changes since change id ${previous.changeId} (${changed.length} areas, ${bytes} bytes)`, changed };
}
