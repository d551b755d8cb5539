// Pure decision for one disk of a new view: full or incremental, why, and which bitmap steps
// go before and into the point-in-time transaction. Kept apart from QMP I/O so every case
// (raw disk, first backup, bitmap lost to a crash, full requested) is unit-tested.
import { liveBitmapName, viewBitmapName } from './naming.ts';

/** A dirty bitmap as QEMU reports it in `query-named-block-nodes`. */
export interface BitmapState {
  name: string;
  recording: boolean;
  persistent: boolean;
  busy: boolean;
  granularity: number;
  count: number;
  inconsistent?: boolean;
}

export interface QmpCommand { command: string; args: Record<string, unknown> }
export interface TransactionAction { type: string; data: Record<string, unknown> }

export interface DiskPlan {
  mode: 'full' | 'incremental';
  reason: string;
  /** Commands run before the transaction (removing an unusable bitmap). */
  pre: QmpCommand[];
  /** Bitmap actions that go into the same transaction as the fleecing backup job. */
  actions: TransactionAction[];
  /** The frozen bitmap to export with the view (incremental only). */
  exportBitmap?: string;
}

export const BITMAP_GRANULARITY = 64 * 1024;

/** Only qcow2 (v3) images can store a persistent dirty bitmap. */
export const canHoldPersistentBitmap = (format: string) => format === 'qcow2';

export function planDisk(input: {
  node: string;
  format: string;
  bitmaps: readonly BitmapState[];
  requested: 'auto' | 'full';
  chain: string;
  viewId: string;
}): DiskPlan {
  const { node, format, requested, viewId } = input;
  const live = liveBitmapName(input.chain);
  if (!canHoldPersistentBitmap(format)) {
    return { mode: 'full', reason: `${format} disk: no persistent dirty bitmap possible, every backup is full`, pre: [], actions: [] };
  }
  const current = input.bitmaps.find((b) => b.name === live);
  const addLive: TransactionAction = { type: 'block-dirty-bitmap-add', data: { node, name: live, persistent: true, granularity: BITMAP_GRANULARITY } };
  // The marker says "this view created the live bitmap": if the view fails, the bitmap goes too.
  const addFresh: TransactionAction = { type: 'block-dirty-bitmap-add', data: { node, name: viewBitmapName('fresh', viewId, live), persistent: true, disabled: true, granularity: BITMAP_GRANULARITY } };
  const unusable = current === undefined ? `no dirty bitmap ${live} yet (first backup of chain ${input.chain} on this disk)`
    : current.inconsistent ? `dirty bitmap ${live} was inconsistent (QEMU stopped uncleanly): recreated`
      : !current.recording ? `dirty bitmap ${live} was not recording: recreated`
        : !current.persistent ? `dirty bitmap ${live} was not persistent: recreated`
          : undefined;
  if (current === undefined || unusable !== undefined) {
    const pre = current === undefined ? [] : [{ command: 'block-dirty-bitmap-remove', args: { node, name: live } }];
    return { mode: 'full', reason: unusable ?? `no dirty bitmap ${live}`, pre, actions: [addLive, addFresh] };
  }
  if (current.busy) throw new Error(`dirty bitmap ${live} on ${node} is busy (another view or job uses it)`);
  // Hand the changes over to a frozen copy and restart the live bitmap, atomically with the
  // point in time; the frozen copy is merged back if the view fails.
  const frozen = viewBitmapName('frozen', viewId, live);
  const actions: TransactionAction[] = [
    { type: 'block-dirty-bitmap-add', data: { node, name: frozen, persistent: true, disabled: true, granularity: current.granularity } },
    { type: 'block-dirty-bitmap-merge', data: { node, target: frozen, bitmaps: [live] } },
    { type: 'block-dirty-bitmap-clear', data: { node, name: live } },
  ];
  if (requested === 'full') return { mode: 'full', reason: 'full backup requested', pre: [], actions };
  return { mode: 'incremental', reason: `changes since the last backup of chain ${input.chain} (bitmap ${live})`, pre: [], actions, exportBitmap: frozen };
}
