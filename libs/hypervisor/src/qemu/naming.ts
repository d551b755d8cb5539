// Names of everything Cairn creates inside QEMU and next to it. Every name carries the view id
// so releasing a view and reaping a crashed run's leftovers are the same scan: find the objects
// tagged with a view id, remove them. QEMU node and job ids must be well-formed (letter first;
// letters, digits, '-', '.', '_') and node names shorter than 32 characters.
import { randomBytes } from 'node:crypto';

export const PREFIX = 'cairn';
const VIEW_ID = /^v[a-z0-9]{11}$/;
const CHAIN = /^[A-Za-z0-9_-]{1,64}$/;

/** A fresh view id: `v` + 11 lowercase base-36 characters. */
export function newViewId(): string {
  const bytes = randomBytes(11);
  let s = 'v';
  for (const b of bytes) s += (b % 36).toString(36);
  return s;
}

export function isViewId(s: string): boolean { return VIEW_ID.test(s); }

export function assertChain(chain: string): string {
  if (!CHAIN.test(chain)) throw new Error(`chain ${JSON.stringify(chain)} must match ${CHAIN.source}`);
  return chain;
}

/** The persistent dirty bitmap that tracks changes of one chain on one disk. */
export const liveBitmapName = (chain: string) => `${PREFIX}-${assertChain(chain)}`;

export type ObjectKind = 'export' | 'job' | 'node' | 'file' | 'create';
const KIND_LETTER: Record<ObjectKind, string> = { export: 'x', job: 'j', node: 'f', file: 'p', create: 'c' };

/**
 * Block export id, block job id, fleecing node name, the fleecing node's file (protocol) node
 * name or the id of the job that formats the overlay (`blockdev-create`) of disk `index` of a view.
 */
export function objectId(kind: ObjectKind, viewId: string, index: number): string {
  return `${PREFIX}-${KIND_LETTER[kind]}-${viewId}-${index}`;
}

export function parseObjectId(kind: ObjectKind, id: string): { viewId: string; index: number } | undefined {
  const m = new RegExp(`^${PREFIX}-${KIND_LETTER[kind]}-(v[a-z0-9]{11})-(\\d{1,3})$`).exec(id);
  return m ? { viewId: m[1]!, index: Number(m[2]) } : undefined;
}

/** File name of a fleecing overlay (lives in the adapter's overlay directory). */
export const overlayFileName = (viewId: string, index: number) => `${objectId('node', viewId, index)}.qcow2`;

export function parseOverlayFileName(name: string): { viewId: string; index: number } | undefined {
  return name.endsWith('.qcow2') ? parseObjectId('node', name.slice(0, -'.qcow2'.length)) : undefined;
}

export const exportName = (viewId: string, disk: string) => `${PREFIX}-${viewId}-${disk}`;

/**
 * Per-view bitmaps on a disk node. `frozen`: the changes handed to this view (merged back into
 * the live bitmap if the view fails). `fresh`: an empty marker saying the live bitmap was
 * created by this view (removed again if the view fails, so the next backup is full again).
 */
export type ViewBitmapKind = 'frozen' | 'fresh';

export function viewBitmapName(kind: ViewBitmapKind, viewId: string, live: string): string {
  return `${PREFIX}.${kind}.${viewId}.${live}`;
}

export function parseViewBitmapName(name: string): { kind: ViewBitmapKind; viewId: string; live: string } | undefined {
  const m = /^cairn\.(frozen|fresh)\.(v[a-z0-9]{11})\.(.+)$/.exec(name);
  return m ? { kind: m[1] as ViewBitmapKind, viewId: m[2]!, live: m[3]! } : undefined;
}
