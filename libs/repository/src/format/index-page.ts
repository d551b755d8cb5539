// One index page: the slots of `pageEntries` consecutive chunk-size ranges of a disk. Format 1
// (every restore point before format 2): one 32-byte entry per slot, a chunk id or all zeros
// (a zero range). Format 2 adds slots made of pieces: a few ranges of stored chunks laid end to
// end (an incremental stores only the changed 64 KiB blocks of a slot as a new small chunk and
// refers to the parent's chunk for the rest). Such a slot's entry is PIECES_MARK, and its pieces
// follow the entries, slot by slot: u8 count, then per piece the 32-byte chunk id (all zeros for
// zero bytes), u32 offset inside that chunk and u32 length, big-endian. A page without pieces is
// byte for byte a format 1 page (the same id, shared with older restore points).
import { ZERO_ID } from './manifest.ts';

export const ENTRY_BYTES = 32;
/** Pieces a slot may have at most (a restore or file read fetches at most this many chunks for it). */
export const MAX_PIECES = 4;
/** Distinct stored chunks the pieces of one slot may reference at most. */
export const MAX_PIECE_CHUNKS = 3;
const PIECE_BYTES = ENTRY_BYTES + 8;
/** The entry of a slot made of pieces (no chunk id: ids are keyed hashes). */
export const PIECES_MARK = 'f'.repeat(64);
const MARK = Buffer.from(PIECES_MARK, 'hex');

export interface Piece {
  /** The chunk the bytes come from (ZERO_ID: zero bytes, nothing stored). */
  readonly id: string;
  /** Where they start inside that chunk. */
  readonly offset: number;
  readonly length: number;
}

/** A slot: zero (`null`), one whole chunk, or pieces laid end to end from the slot's start. */
export type Slot = null | { readonly chunk: string } | { readonly pieces: readonly Piece[] };

export type IndexFormat = 1 | 2;

/** Largest plaintext of a page of `entries` slots in any format (the bound for opening one). */
export const maxPageBytes = (entries: number): number => entries * (ENTRY_BYTES + 1 + MAX_PIECES * PIECE_BYTES);

export class IndexPageFormatError extends Error {}

/** The decoded slots of one page. */
export class IndexPage {
  constructor(private readonly slots: readonly Slot[]) {}

  get count(): number {
    return this.slots.length;
  }

  slot(i: number): Slot {
    if (i < 0 || i >= this.slots.length) throw new RangeError(`slot ${i} is outside the page's ${this.slots.length}`);
    return this.slots[i] ?? null;
  }

  /** Every stored chunk the page refers to, in slot order, with its slot and where it starts there. */
  *chunkUses(): Generator<{ id: string; slot: number; at: number }> {
    for (let i = 0; i < this.slots.length; i++) {
      const s = this.slots[i] ?? null;
      if (s === null) continue;
      if ('chunk' in s) { yield { id: s.chunk, slot: i, at: 0 }; continue; }
      let at = 0;
      for (const p of s.pieces) {
        if (p.id !== ZERO_ID) yield { id: p.id, slot: i, at };
        at += p.length;
      }
    }
  }

  get hasPieces(): boolean {
    return this.slots.some((s) => s !== null && 'pieces' in s);
  }
}

/** Whether `pieces` stay within the bounds a slot of pieces must keep. */
export function piecesWithinBounds(pieces: readonly Piece[]): boolean {
  if (pieces.length === 0 || pieces.length > MAX_PIECES) return false;
  return new Set(pieces.filter((p) => p.id !== ZERO_ID).map((p) => p.id)).size <= MAX_PIECE_CHUNKS;
}

/** The page's plaintext; format 1 bytes when no slot has pieces. */
export function encodeIndexPage(slots: readonly Slot[]): Uint8Array {
  let tail = 0;
  for (const s of slots) {
    if (s === null || 'chunk' in s) continue;
    if (!piecesWithinBounds(s.pieces)) throw new RangeError(`a slot of ${s.pieces.length} pieces is outside the bounds (at most ${MAX_PIECES} pieces of ${MAX_PIECE_CHUNKS} chunks)`);
    tail += 1 + s.pieces.length * PIECE_BYTES;
  }
  const out = Buffer.alloc(slots.length * ENTRY_BYTES + tail);
  let t = slots.length * ENTRY_BYTES;
  slots.forEach((s, i) => {
    if (s === null) return;
    if ('chunk' in s) { out.write(s.chunk, i * ENTRY_BYTES, 'hex'); return; }
    MARK.copy(out, i * ENTRY_BYTES);
    out[t++] = s.pieces.length;
    for (const p of s.pieces) {
      out.write(p.id, t, 'hex');
      out.writeUInt32BE(p.offset, t + ENTRY_BYTES);
      out.writeUInt32BE(p.length, t + ENTRY_BYTES + 4);
      t += PIECE_BYTES;
    }
  });
  return out;
}

/**
 * Decodes a page of `entries` slots. Format 1 pages are exactly the entries; a format 2 page
 * may carry pieces, each within one chunk of `chunkSize` bytes and within the bounds.
 */
export function decodeIndexPage(plain: Uint8Array, entries: number, format: IndexFormat, chunkSize: number): IndexPage {
  const b = Buffer.from(plain.buffer, plain.byteOffset, plain.byteLength);
  const head = entries * ENTRY_BYTES;
  if (b.length < head || (format === 1 && b.length !== head)) {
    throw new IndexPageFormatError(`${Math.floor(b.length / ENTRY_BYTES)} entries, expected ${entries}`);
  }
  const slots: Slot[] = new Array<Slot>(entries);
  let t = head;
  for (let i = 0; i < entries; i++) {
    const o = i * ENTRY_BYTES;
    if (b[o] === 0 && b.subarray(o, o + ENTRY_BYTES).every((x) => x === 0)) { slots[i] = null; continue; }
    const id = b.toString('hex', o, o + ENTRY_BYTES);
    if (id !== PIECES_MARK || format === 1) { slots[i] = { chunk: id }; continue; }
    const n = b[t] ?? 0;
    if (t + 1 + n * PIECE_BYTES > b.length) throw new IndexPageFormatError(`the pieces of slot ${i} run past the page's end`);
    t++;
    const pieces: Piece[] = [];
    let total = 0;
    for (let k = 0; k < n; k++, t += PIECE_BYTES) {
      const p = { id: b.toString('hex', t, t + ENTRY_BYTES), offset: b.readUInt32BE(t + ENTRY_BYTES), length: b.readUInt32BE(t + ENTRY_BYTES + 4) };
      if (p.length === 0 || p.offset + p.length > chunkSize || (p.id === ZERO_ID && p.offset !== 0)) {
        throw new IndexPageFormatError(`piece ${k} of slot ${i} (${p.offset}+${p.length}) is not within a ${chunkSize}-byte chunk`);
      }
      total += p.length;
      pieces.push(p);
    }
    if (!piecesWithinBounds(pieces)) throw new IndexPageFormatError(`slot ${i} has ${n} pieces, outside the bounds (at most ${MAX_PIECES} of ${MAX_PIECE_CHUNKS} chunks)`);
    if (total > chunkSize) throw new IndexPageFormatError(`the pieces of slot ${i} add up to ${total} bytes, more than a ${chunkSize}-byte slot`);
    slots[i] = { pieces };
  }
  if (t !== b.length) throw new IndexPageFormatError(`${b.length - t} bytes after the last slot's pieces`);
  return new IndexPage(slots);
}

/** A slot as pieces covering its `length` bytes (a zero slot: one zero piece). */
export function asPieces(slot: Slot, length: number): Piece[] {
  if (slot === null) return [{ id: ZERO_ID, offset: 0, length }];
  if ('chunk' in slot) return [{ id: slot.chunk, offset: 0, length }];
  return [...slot.pieces];
}

/** Pieces covering bytes [from, to) of a slot made of `pieces`. */
export function slicePieces(pieces: readonly Piece[], from: number, to: number): Piece[] {
  const out: Piece[] = [];
  let at = 0;
  for (const p of pieces) {
    const s = Math.max(from, at);
    const e = Math.min(to, at + p.length);
    if (e > s) out.push({ id: p.id, offset: p.id === ZERO_ID ? 0 : p.offset + (s - at), length: e - s });
    at += p.length;
    if (at >= to) break;
  }
  return out;
}

/** Joins neighbours that continue each other (the same chunk at the next offset, or zeros after zeros). */
export function mergePieces(pieces: readonly Piece[]): Piece[] {
  const out: Piece[] = [];
  for (const p of pieces) {
    const last = out.at(-1);
    if (last && last.id === p.id && (p.id === ZERO_ID || last.offset + last.length === p.offset)) {
      out[out.length - 1] = { id: last.id, offset: last.offset, length: last.length + p.length };
    } else out.push(p);
  }
  return out;
}

/** The simplest slot for pieces covering a whole slot of `length` bytes: zero, one chunk, or pieces. */
export function slotOf(pieces: readonly Piece[], length: number): Slot {
  const merged = mergePieces(pieces);
  if (merged.every((p) => p.id === ZERO_ID)) return null;
  const only = merged[0];
  if (merged.length === 1 && only && only.offset === 0 && only.length === length) return { chunk: only.id };
  return { pieces: merged };
}
