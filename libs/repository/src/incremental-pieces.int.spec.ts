// Index format 2 on a real directory repository: incrementals that send only their changed
// 64 KiB blocks store them in chunks shared by consecutive slots (packs) and refer to the
// parent's chunks for the rest of each 256 KiB slot (no parent chunk is read), restore and read
// byte-identical, verify, keep a shared chunk through GC while any slot refers to it, keep
// the parent's referenced chunks through GC after the parent is deleted (freeing the rest),
// and replicate to another repository that restores them identical.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { useHarness } from '@cairn/testing';
import type { Backend } from './backend/backend.ts';
import { DirectoryBackend } from './backend/directory.adapter.ts';
import { CHUNKS_PREFIX, idFromContentKey } from './format/layout.ts';
import type { Piece } from './format/index-page.ts';
import type { IndexedDisk } from './read/disk-reader.ts';
import { openRepository, type Repository } from './repository.ts';
import { copyRestorePoint } from './replicate/copy-restore-point.ts';
import { ReplicaTarget } from './replicate/replica-target.ts';
import { makeRepository, TEST_PASSPHRASE } from './testing/fixtures.ts';
import { asAsync, fullExtents, makeImage, prng } from './testing/test-image.ts';

const h = useHarness();
const CS = 256 * 1024;
const BLOCK = 64 * 1024;
// 40 slots and a short last one (3 blocks and a bit), 8 slots per index page.
const SIZE = 40 * CS + 3 * BLOCK + 777;
const VM = { id: 'vm-p', name: 'pieces' };

/** Writes random bytes over the given blocks; the changed blocks as partial extents (merged where they touch). */
function change(image: Uint8Array, blocks: readonly number[], seed: number): Array<{ offset: number; data: Uint8Array }> {
  const next = prng(seed);
  const sorted = [...new Set(blocks)].sort((a, b) => a - b);
  const out: Array<{ offset: number; length: number }> = [];
  for (const b of sorted) {
    const o = b * BLOCK;
    const end = Math.min(image.length, o + BLOCK);
    for (let i = o; i < end; i++) image[i] = next() & 0xff;
    const last = out.at(-1);
    if (last && last.offset + last.length === o) last.length += end - o;
    else out.push({ offset: o, length: end - o });
  }
  return out.map((r) => ({ offset: r.offset, data: image.slice(r.offset, r.offset + r.length) }));
}

async function chunkIds(b: Backend): Promise<Set<string>> {
  const s = new Set<string>();
  for await (const o of b.list(CHUNKS_PREFIX)) s.add(idFromContentKey(o.key)!);
  return s;
}

async function restored(repo: Repository, rp: string): Promise<Buffer> {
  const out = join(await h.tmpDir(), 'disk.raw');
  await repo.restoreDisk(rp, 'sda', out);
  return readFile(out);
}

describe('incrementals stored as pieces of slots (index format 2)', () => {
  let dir = '';
  let backend: DirectoryBackend;
  let repo: Repository;
  const base = makeImage(SIZE, 31);
  // Slots 2 and 9 of the full hold data (the image has zero runs elsewhere).
  const fill = prng(5);
  for (const s of [2, 9]) for (let i = s * CS; i < (s + 1) * CS; i++) base[i] = fill() & 0xff;
  const inc1Image = Uint8Array.from(base);
  const inc2Image = Uint8Array.from(base);
  const inc3Image = Uint8Array.from(base);
  let fullId = '';
  let inc1 = '';
  let inc2 = '';
  let inc3 = '';
  let fullChunks = new Set<string>();

  const write = (parentId: string, extents: Array<{ offset: number; data: Uint8Array }>) => repo.writeRestorePoint({
    vm: VM, parentId, disks: [{ name: 'sda', sizeBytes: SIZE, partial: true, extents: asAsync(extents) }],
  });

  /** The pieces of slot `i` of `rp` that are not the full's chunks. */
  const newPieces = async (rp: string, i: number): Promise<Piece[]> => {
    const s = await (await repo.openDisk(rp, 'sda') as IndexedDisk).slotAt(i);
    return s && 'pieces' in s ? s.pieces.filter((p) => !fullChunks.has(p.id)) : [];
  };

  beforeAll(async () => {
    dir = await h.tmpDir('cairn-pieces-');
    backend = new DirectoryBackend(dir, { createRoot: true, fsync: false });
    repo = await makeRepository(h, backend, { chunkSize: CS });
    fullId = (await repo.writeRestorePoint({ vm: VM, disks: [{ name: 'sda', sizeBytes: SIZE, extents: asAsync(fullExtents(base, CS)) }] })).restorePointId;
    fullChunks = await chunkIds(backend);

    // inc1: block 1 of slot 2; blocks 0 and 2 of slot 5; all of slot 9; blocks 3 of slot 12 and 0 of
    // slot 13 (one run across a slot boundary); block 1 of the short last slot; 6 scattered others.
    const scattered = [17 * 4 + 2, 21 * 4 + 3, 26 * 4, 30 * 4 + 1, 33 * 4 + 2, 37 * 4 + 3];
    const blocks1 = [2 * 4 + 1, 5 * 4, 5 * 4 + 2, 36, 37, 38, 39, 12 * 4 + 3, 13 * 4, 40 * 4 + 1, ...scattered];
    const ext1 = change(inc1Image, blocks1, 1);
    inc2Image.set(inc1Image);
    const r1 = await write(fullId, ext1);
    inc1 = r1.restorePointId;
    // inc2 on inc1: block 3 of slot 2 (pieces of pieces: 4 pieces of 3 chunks, the bound).
    const ext2 = change(inc2Image, [2 * 4 + 3], 2);
    inc3Image.set(inc2Image);
    inc2 = (await write(inc1, ext2)).restorePointId;
    // inc3 on inc2: block 0 of slot 2 would make a fourth chunk: the slot is stored whole again.
    const ext3 = change(inc3Image, [2 * 4], 3);
    inc3 = (await write(inc2, ext3)).restorePointId;
  });

  it('stores only the changed blocks, refers to the parent for the rest and writes a version 2 manifest', async () => {
    const m1 = await repo.getManifest(inc1);
    const d = m1.disks[0]!;
    expect(m1.version).toBe(2);
    expect(d.indexFormat).toBe(2);
    // Pieced: slots 2, 5, 12, 13, the last one and the 6 scattered; slot 9 changed whole.
    expect(d.stats.slotsPieced).toBe(11);
    // The changed blocks of consecutive pieced slots share a chunk (a pack of up to 256 KiB): 13
    // blocks in 3 packs of at most 4, and slot 9 whole.
    expect(d.stats.chunksNew).toBe(4);
    expect(d.stats.bytesRead).toBe(16 * BLOCK);
    // The new chunks hold the changed blocks only (random bytes: stored at about their size).
    expect(d.stats.bytesStored).toBeLessThan(17 * BLOCK);
    expect(d.stats.bytesStored).toBeGreaterThan(16 * BLOCK);
    const disk = await repo.openDisk(inc1, 'sda') as IndexedDisk;
    const s2 = await disk.slotAt(2);
    const parentChunk = await (await repo.openDisk(fullId, 'sda')).chunkIdAt(2);
    expect(s2 && 'pieces' in s2 ? s2.pieces.map((p) => [p.id === parentChunk ? 'parent' : 'new', p.offset, p.length]) : s2)
      .toEqual([['parent', 0, BLOCK], ['new', 0, BLOCK], ['parent', 2 * BLOCK, 2 * BLOCK]]);
    expect(await disk.slotAt(9)).toHaveProperty('chunk');
    // Slots 2, 5 (two blocks) and 12 fill the first pack, each at its own offset; 13 starts the next.
    const shared = await newPieces(inc1, 2);
    const inFirst = (ps: Piece[]) => ps.map((p) => [p.id === shared[0]!.id, p.offset, p.length]);
    expect(inFirst(await newPieces(inc1, 5))).toEqual([[true, BLOCK, BLOCK], [true, 2 * BLOCK, BLOCK]]);
    expect(inFirst(await newPieces(inc1, 12))).toEqual([[true, 3 * BLOCK, BLOCK]]);
    expect(inFirst(await newPieces(inc1, 13))).toEqual([[false, 0, BLOCK]]);
    // A full stays version 1 (older readers read it).
    expect((await repo.getManifest(fullId)).version).toBe(1);
    expect((await repo.getManifest(fullId)).disks[0]!.indexFormat).toBeUndefined();
  });

  it('bounds a slot at four pieces of three chunks and stores it whole past that', async () => {
    const s2of2 = await (await repo.openDisk(inc2, 'sda') as IndexedDisk).slotAt(2);
    expect(s2of2 && 'pieces' in s2of2 ? s2of2.pieces.length : 0).toBe(4);
    expect((await repo.getManifest(inc2)).disks[0]!.stats.slotsPieced).toBe(1);
    const s2of3 = await (await repo.openDisk(inc3, 'sda') as IndexedDisk).slotAt(2);
    expect(s2of3).toHaveProperty('chunk');
    expect((await repo.getManifest(inc3)).disks[0]!.stats.slotsPieced ?? 0).toBe(0);
    // inc3 took inc2's slots of pieces over: still format 2.
    expect((await repo.getManifest(inc3)).disks[0]!.indexFormat).toBe(2);
  });

  it('restores, reads ranges and verifies byte-identical', async () => {
    for (const [rp, image] of [[inc1, inc1Image], [inc2, inc2Image], [inc3, inc3Image]] as const) {
      expect((await restored(repo, rp)).equals(Buffer.from(image))).toBe(true);
      const disk = await repo.openDisk(rp, 'sda');
      const next = prng(7);
      for (let i = 0; i < 20; i++) {
        const off = next() % SIZE;
        const len = Math.min(SIZE - off, 1 + (next() % (3 * CS)));
        expect(Buffer.from(await disk.read(off, len)).equals(Buffer.from(image.subarray(off, off + len)))).toBe(true);
      }
    }
    const report = await repo.verify();
    expect(report.ok).toBe(true);
    expect(report.damaged).toEqual([]);
  });

  it('replicates an incremental of pieces to another repository, which restores it identical', async () => {
    const target = new ReplicaTarget(new DirectoryBackend(await h.tmpDir('cairn-pieces-replica-'), { createRoot: true, fsync: false }));
    const source = repo.replicationSource();
    // inc2 alone: its pieces name the full's and inc1's chunks, which must travel too.
    const sent = await copyRestorePoint(source, target, inc2);
    expect(sent.committed).toBe(true);
    expect((await target.verify()).ok).toBe(true);
    const copy = await openRepository(target.backend, { passphrase: TEST_PASSPHRASE });
    h.onClose(() => copy.close());
    expect((await restored(copy, inc2)).equals(Buffer.from(inc2Image))).toBe(true);
  });

  it('keeps the parent chunks pieces refer to through GC after the parent is deleted, and frees the rest', async () => {
    const full = await repo.openDisk(fullId, 'sda');
    const kept = (await full.chunkIdAt(2))!; // pieces of inc1 and inc2 refer to it
    const freed = (await full.chunkIdAt(9))!; // inc1 replaced slot 9 whole
    await repo.deleteRestorePoint(fullId);
    const report = await repo.gc({ graceMs: 0 });
    expect(report.chunksDeleted).toBeGreaterThanOrEqual(1);
    const left = await chunkIds(backend);
    expect(left.has(kept)).toBe(true);
    expect(left.has(freed)).toBe(false);
    expect(fullChunks.has(freed)).toBe(true);
    expect((await restored(repo, inc1)).equals(Buffer.from(inc1Image))).toBe(true);
    expect((await restored(repo, inc2)).equals(Buffer.from(inc2Image))).toBe(true);
    expect((await repo.verify()).ok).toBe(true);
  });

  it('keeps a chunk several slots share while any slot refers to it, and frees it after the last', async () => {
    // inc1's slots 2, 5 and 12 share one new chunk. inc4 (on inc1) rewrites slots 2 and 5 whole;
    // its slot 12 still refers to the shared chunk, which must outlive inc1, inc2 and inc3.
    const sharedId = (await newPieces(inc1, 12))[0]!.id;
    expect((await newPieces(inc1, 2))[0]!.id).toBe(sharedId);
    const inc4Image = Uint8Array.from(inc1Image);
    const inc4 = (await write(inc1, change(inc4Image, [8, 9, 10, 11, 20, 21, 22, 23], 4))).restorePointId;
    const inc4Disk = await repo.openDisk(inc4, 'sda') as IndexedDisk;
    expect(await inc4Disk.slotAt(2)).toHaveProperty('chunk');
    expect(await inc4Disk.slotAt(5)).toHaveProperty('chunk');
    for (const rp of [inc1, inc2, inc3]) await repo.deleteRestorePoint(rp);
    await repo.gc({ graceMs: 0 });
    expect((await chunkIds(backend)).has(sharedId)).toBe(true);
    expect((await restored(repo, inc4)).equals(Buffer.from(inc4Image))).toBe(true);
    expect((await repo.verify()).ok).toBe(true);
    // inc5 rewrites slot 12 whole: once inc4 is gone no slot refers to the shared chunk.
    const inc5Image = Uint8Array.from(inc4Image);
    const inc5 = (await write(inc4, change(inc5Image, [48, 49, 50, 51], 5))).restorePointId;
    await repo.deleteRestorePoint(inc4);
    await repo.gc({ graceMs: 0 });
    expect((await chunkIds(backend)).has(sharedId)).toBe(false);
    expect((await restored(repo, inc5)).equals(Buffer.from(inc5Image))).toBe(true);
    expect((await repo.verify()).ok).toBe(true);
  });
});
