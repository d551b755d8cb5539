// What replication moves: sealed objects (chunks, index pages, manifests) named by kind and
// id, never by backend key, so the layout behind them (loose objects today, maybe packs
// later) stays the repository's business. A keyless check of a sealed object: its envelope
// shape and the SHA-256 of its bytes as the source read them.
import { createHash } from 'node:crypto';
import { ENVELOPE_OVERHEAD, ENVELOPE_VERSION, HEADER_BYTES } from '../format/envelope.ts';
import { chunkKey, isContentId, isRestorePointId, pageKey, restorePointKey } from '../format/layout.ts';

export type SealedKind = 'chunk' | 'index-page' | 'manifest';

export interface SealedRef {
  readonly kind: SealedKind;
  readonly id: string;
}

const KIND_BYTE: Record<SealedKind, number> = { chunk: 0x43, 'index-page': 0x50, manifest: 0x4d };

/** Backend key of a sealed object; throws on an id that does not fit its kind. */
export function sealedKey(ref: SealedRef): string {
  if (ref.kind === 'manifest') {
    if (!isRestorePointId(ref.id)) throw new RangeError(`not a restore point id: ${JSON.stringify(ref.id)}`);
    return restorePointKey(ref.id);
  }
  if (!isContentId(ref.id)) throw new RangeError(`not a content id: ${JSON.stringify(ref.id)}`);
  return ref.kind === 'chunk' ? chunkKey(ref.id) : pageKey(ref.id);
}

export const sha256Hex = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** Why a sealed object's bytes cannot be the object they claim to be (undefined: plausible). */
export function sealedShapeProblem(kind: SealedKind, bytes: Uint8Array): string | undefined {
  if (bytes.length < ENVELOPE_OVERHEAD) return `only ${bytes.length} bytes, shorter than an envelope`;
  if (bytes[0] !== 0x43 || bytes[1] !== 0x52 || bytes[2] !== 0x4e) return 'bad magic';
  if (bytes[3] !== KIND_BYTE[kind]) return `object kind ${String.fromCharCode(bytes[3] ?? 0)}, expected ${kind}`;
  if (bytes[4] !== ENVELOPE_VERSION) return `envelope version ${bytes[4]} unsupported`;
  const payload = Buffer.from(bytes.buffer, bytes.byteOffset, HEADER_BYTES).readUInt32BE(8);
  if (bytes.length !== ENVELOPE_OVERHEAD + payload) return `${bytes.length} bytes, header says ${ENVELOPE_OVERHEAD + payload}`;
  return undefined;
}
