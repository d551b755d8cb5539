// The replication transfer between two sites, over NATS request/reply across the leaf
// connection: `cairn.<target>.repl.<source>.<op>`, served by the target's receiver.
//
//   adopt     JSON {repositoryId, config, keys[]} (base64)     -> JSON 'created' | 'same'
//   missing   header kind; body = 32-byte ids                    -> body = the ids the copy lacks
//   has-rp    body = restore point id                            -> JSON boolean
//   put       headers kind, id, sha256, part, parts[, repair]; body = sealed bytes (or one part)
//   commit    headers id, sha256; JSON {manifest, pageIds, meta} -> JSON {created}
//   verify    (empty)                                             -> JSON keyless verify report
//   repaired  JSON {objects}                                      -> JSON null (records ReplicaRepaired)
//   refs      headers id, sha256, part, parts; body = the restore point's refs list (before commit)
//   expire    JSON {restorePointId, reason}                       -> JSON {held} (records ReplicaExpired)
//   escrow-key (empty)                                            -> JSON the target's escrow key statement (signed by the hub CA)
//   escrow    JSON sealed envelope of the source's repository key -> JSON {stored} (records KeyEscrowReceived)
//
// Every reply carries `Cairn-Status: ok` or `error` (body JSON {code, message}).
import { headers as natsHeaders, type MsgHdrs } from '@nats-io/transport-node';

export const H = {
  status: 'Cairn-Status',
  kind: 'Cairn-Kind',
  id: 'Cairn-Id',
  sha256: 'Cairn-Sha256',
  part: 'Cairn-Part',
  parts: 'Cairn-Parts',
  repair: 'Cairn-Repair',
} as const;

export type TransferOp = 'adopt' | 'missing' | 'has-rp' | 'put' | 'commit' | 'verify' | 'repaired' | 'refs' | 'expire' | 'escrow-key' | 'escrow';

export interface CommitMeta {
  readonly vmId: string;
  readonly vmName: string;
  readonly jobId: string | null;
  readonly policyId: string | null;
  readonly sourceCommittedAt: string;
  readonly disks: ReadonlyArray<{ name: string; sizeBytes: number }>;
  readonly chunksSent: number;
  readonly pagesSent: number;
  readonly bytesSent: number;
}

export class TransferError extends Error {
  override readonly name = 'TransferError';
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

export function makeHeaders(values: Record<string, string>): MsgHdrs {
  const h = natsHeaders();
  for (const [k, v] of Object.entries(values)) h.set(k, v);
  return h;
}

/** Bytes a header block takes on the wire (NATS/1.0 line, `key: value` lines, blank line). */
export function headerBytes(values: Record<string, string>): number {
  let n = 12; // "NATS/1.0\r\n" + final "\r\n"
  for (const [k, v] of Object.entries(values)) n += k.length + 2 + v.length + 2;
  return n;
}

const ID_BYTES = 32;

export function packIds(ids: readonly string[]): Uint8Array {
  const out = Buffer.allocUnsafe(ids.length * ID_BYTES);
  ids.forEach((id, i) => out.write(id, i * ID_BYTES, ID_BYTES, 'hex'));
  return out;
}

export function unpackIds(bytes: Uint8Array): string[] {
  if (bytes.length % ID_BYTES !== 0) throw new TransferError('bad_request', `id list of ${bytes.length} bytes is not a multiple of ${ID_BYTES}`);
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: string[] = [];
  for (let o = 0; o < b.length; o += ID_BYTES) out.push(b.toString('hex', o, o + ID_BYTES));
  return out;
}

export const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64');
export const unb64 = (text: string): Uint8Array => Buffer.from(text, 'base64');
