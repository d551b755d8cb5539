// Index pages in formats 1 and 2: a page without pieces is byte for byte a format 1 page,
// slots of pieces round-trip, pieces outside the bounds or a chunk are refused, and the
// helpers an incremental uses to build pieces from its parent's slot.
import { describe, expect, it } from 'vitest';
import { CorruptObjectError, UnsupportedFormatError } from '../errors.ts';
import { MANIFEST_VERSION, parseManifest, rootChecksum, ZERO_ID } from './manifest.ts';
import {
  asPieces, decodeIndexPage, encodeIndexPage, ENTRY_BYTES, IndexPageFormatError, MAX_PIECES, maxPageBytes, mergePieces,
  piecesWithinBounds, PIECES_MARK, slicePieces, slotOf, type Piece, type Slot,
} from './index-page.ts';

const id = (n: number): string => n.toString(16).padStart(2, '0').repeat(32);
const CS = 256 * 1024;
const K64 = 64 * 1024;

describe('index pages', () => {
  it('encodes a page without pieces exactly as format 1 (32-byte ids, zeros for zero slots)', () => {
    const slots: Slot[] = [{ chunk: id(1) }, null, { chunk: id(2) }];
    const plain = Buffer.from(encodeIndexPage(slots));
    expect(plain.length).toBe(3 * ENTRY_BYTES);
    expect(plain.toString('hex')).toBe(id(1) + ZERO_ID + id(2));
    for (const format of [1, 2] as const) {
      const page = decodeIndexPage(plain, 3, format, CS);
      expect([0, 1, 2].map((i) => page.slot(i))).toEqual(slots);
      expect(page.hasPieces).toBe(false);
    }
  });

  it('round-trips slots of pieces in format 2 and lists every chunk they use', () => {
    const pieces: Piece[] = [{ id: id(1), offset: 0, length: K64 }, { id: id(9), offset: 0, length: K64 }, { id: id(1), offset: 2 * K64, length: 2 * K64 }];
    const slots: Slot[] = [{ chunk: id(3) }, { pieces }, null, { pieces: [{ id: ZERO_ID, offset: 0, length: K64 }, { id: id(4), offset: K64, length: 3 * K64 }] }];
    const plain = encodeIndexPage(slots);
    expect(plain.length).toBeGreaterThan(4 * ENTRY_BYTES);
    expect(plain.length).toBeLessThanOrEqual(maxPageBytes(4));
    expect(Buffer.from(plain).toString('hex', ENTRY_BYTES, 2 * ENTRY_BYTES)).toBe(PIECES_MARK);
    const page = decodeIndexPage(plain, 4, 2, CS);
    expect([0, 1, 2, 3].map((i) => page.slot(i))).toEqual(slots);
    expect(page.hasPieces).toBe(true);
    expect([...page.chunkUses()]).toEqual([
      { id: id(3), slot: 0, at: 0 },
      { id: id(1), slot: 1, at: 0 }, { id: id(9), slot: 1, at: K64 }, { id: id(1), slot: 1, at: 2 * K64 },
      { id: id(4), slot: 3, at: K64 },
    ]);
  });

  it('refuses a format 2 page in a format 1 index, pieces past a chunk, trailing bytes and too many pieces', () => {
    const plain = encodeIndexPage([{ pieces: [{ id: id(1), offset: 0, length: K64 }, { id: id(2), offset: 0, length: 3 * K64 }] }]);
    expect(() => decodeIndexPage(plain, 1, 1, CS)).toThrow(IndexPageFormatError);
    expect(() => decodeIndexPage(plain, 1, 2, 2 * K64)).toThrow(/not within a/);
    expect(() => decodeIndexPage(Buffer.concat([plain, Buffer.from([0])]), 1, 2, CS)).toThrow(/after the last slot/);
    expect(() => decodeIndexPage(plain.subarray(0, plain.length - 3), 1, 2, CS)).toThrow(/past the page's end/);
    const five = Array.from({ length: MAX_PIECES + 1 }, (_, i) => ({ id: id(1), offset: i * 4096, length: 4096 }));
    expect(() => encodeIndexPage([{ pieces: five }])).toThrow(RangeError);
    // Hand-made: the same slot with a fifth piece is refused when read.
    const ok = Buffer.from(encodeIndexPage([{ pieces: five.slice(0, 4) }]));
    const forged = Buffer.concat([ok, ok.subarray(ok.length - 40)]);
    forged[ENTRY_BYTES] = 5;
    expect(() => decodeIndexPage(forged, 1, 2, CS)).toThrow(/outside the bounds/);
  });

  it('bounds pieces: at most four, of at most three distinct stored chunks (zeros do not count)', () => {
    const p = (n: number, o: number): Piece => ({ id: id(n), offset: o, length: K64 });
    expect(piecesWithinBounds([p(1, 0), p(2, 0), p(1, 2 * K64), p(3, 0)])).toBe(true);
    expect(piecesWithinBounds([p(1, 0), p(2, 0), p(3, 0), p(4, 0)])).toBe(false);
    expect(piecesWithinBounds([{ id: ZERO_ID, offset: 0, length: K64 }, p(2, 0), p(3, 0), p(4, 0)])).toBe(true);
    expect(piecesWithinBounds([])).toBe(false);
  });

  it('slices and merges pieces the way an incremental lays its changed blocks over the parent slot', () => {
    const parent = asPieces({ chunk: id(1) }, CS);
    expect(slicePieces(parent, K64, 3 * K64)).toEqual([{ id: id(1), offset: K64, length: 2 * K64 }]);
    const layered = [...slicePieces(parent, 0, K64), { id: id(2), offset: 0, length: K64 }, ...slicePieces(parent, 2 * K64, CS)];
    expect(slotOf(layered, CS)).toEqual({ pieces: [{ id: id(1), offset: 0, length: K64 }, { id: id(2), offset: 0, length: K64 }, { id: id(1), offset: 2 * K64, length: 2 * K64 }] });
    // The parent's own bytes again are one chunk, zeros after zeros one zero slot.
    expect(slotOf([...slicePieces(parent, 0, K64), ...slicePieces(parent, K64, CS)], CS)).toEqual({ chunk: id(1) });
    expect(slotOf([...asPieces(null, K64), { id: ZERO_ID, offset: 0, length: 3 * K64 }], CS)).toBeNull();
    expect(mergePieces([{ id: id(1), offset: 0, length: K64 }, { id: id(1), offset: 2 * K64, length: K64 }])).toHaveLength(2);
    // A slice of a slice of pieces keeps the right offsets.
    const pieced = [{ id: id(1), offset: 0, length: K64 }, { id: id(2), offset: 0, length: K64 }, { id: id(1), offset: 2 * K64, length: 2 * K64 }];
    expect(slicePieces(pieced, K64 / 2, 3 * K64)).toEqual([
      { id: id(1), offset: K64 / 2, length: K64 / 2 }, { id: id(2), offset: 0, length: K64 }, { id: id(1), offset: 2 * K64, length: K64 },
    ]);
  });
});

describe('manifest versions', () => {
  const disk = (extra: object) => ({
    name: 'sda', sizeBytes: CS, chunkSize: CS, pageEntries: 8, pages: [id(1)], rootChecksum: rootChecksum([id(1)]),
    stats: { bytesRead: 0, bytesStored: 0, chunksNew: 0, chunksReused: 0, chunksZero: 0, chunksFromParent: 0, pagesNew: 0, pagesReused: 0 }, ...extra,
  });
  const manifest = (version: number, extra: object = {}) => Buffer.from(JSON.stringify({
    version, id: 'rp', vm: { id: 'v', name: 'v' }, createdAt: 'x', committedAt: 'x', disks: [disk(extra)],
  }));

  it('reads versions 1 and 2 (a format 2 index only in version 2) and refuses a later version as unsupported', () => {
    expect(parseManifest('k', 'rp', manifest(1)).disks[0]!.indexFormat).toBeUndefined();
    expect(parseManifest('k', 'rp', manifest(2, { indexFormat: 2 })).disks[0]!.indexFormat).toBe(2);
    expect(() => parseManifest('k', 'rp', manifest(1, { indexFormat: 2 }))).toThrow(CorruptObjectError);
    expect(() => parseManifest('k', 'rp', manifest(MANIFEST_VERSION + 1))).toThrow(UnsupportedFormatError);
  });
});
