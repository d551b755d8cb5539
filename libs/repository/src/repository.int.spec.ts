// Round trips on the real backends: full and incremental restore points read back byte-identical
// through the random-access reader and a full restore; only changed chunks are stored; the
// same data from another VM is stored once.
import { execFile } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { useHarness } from '@cairn/testing';
import type { Backend } from './backend/backend.ts';
import { ZERO_ID } from './format/manifest.ts';
import type { Repository } from './repository.ts';
import { makeBackend, makeRepository, TEST_CHUNK, TEST_PAGE_ENTRIES, type BackendKind } from './testing/fixtures.ts';
import { asAsync, changedExtents, fullExtents, makeImage, prng, scatterChanges } from './testing/test-image.ts';

const run = promisify(execFile);
const h = useHarness();
const SIZE = 4 * 1024 * 1024 + 12_345; // a tail shorter than a chunk
const chunksOf = (n: number) => Math.ceil(n / TEST_CHUNK);

async function countObjects(b: Backend, prefix: string): Promise<number> {
  let n = 0;
  for await (const _ of b.list(prefix)) n++;
  return n;
}

describe.each<BackendKind>(['directory', 's3'])('repository on %s', (kind) => {
  let backend: Backend;
  let repo: Repository;
  const base = makeImage(SIZE, 7);
  const changed = Uint8Array.from(base);
  const changedAt = scatterChanges(changed, 6, 4096, 99);
  let fullId = '';
  let incId = '';

  beforeAll(async () => {
    backend = await makeBackend(h, kind);
    repo = await makeRepository(h, backend);
  });

  it('writes a full restore point that reads back byte-identical, through the reader and a full restore', async () => {
    const r = await repo.writeRestorePoint({
      vm: { id: 'vm-1', name: 'alpha', config: { cpus: 2 } },
      disks: [{ name: 'sda', sizeBytes: SIZE, extents: asAsync(fullExtents(base, TEST_CHUNK)) }],
      labels: { policy: 'gold' },
    });
    fullId = r.restorePointId;
    const s = r.disks[0]!;
    expect(s.chunksNew + s.chunksReused + s.chunksZero).toBe(chunksOf(SIZE));
    expect(s.chunksZero).toBeGreaterThan(0);
    expect(s.bytesRead).toBe(SIZE);
    expect(s.bytesStored).toBeLessThan(SIZE);
    expect(await countObjects(backend, 'chunks/')).toBe(s.chunksNew);

    const disk = await repo.openDisk(fullId, 'sda');
    expect(disk.sizeBytes).toBe(SIZE);
    expect(Buffer.from(await disk.read(0, SIZE)).equals(Buffer.from(base))).toBe(true);

    const dir = await h.tmpDir();
    const target = join(dir, 'sda.raw');
    const res = await repo.restoreDisk(fullId, 'sda', target, { format: 'raw' });
    expect(res.chunksRead + res.chunksZero).toBe(chunksOf(SIZE));
    expect((await stat(target)).size).toBe(SIZE);
    expect(Buffer.from(await readFile(target)).equals(Buffer.from(base))).toBe(true);
    await expect(repo.restoreDisk(fullId, 'sda', target)).rejects.toThrow(/exists/);

    const list = await repo.listRestorePoints();
    expect(list.map((x) => x.id)).toEqual([fullId]);
    const m = await repo.getManifest(fullId);
    expect(m.vm).toEqual({ id: 'vm-1', name: 'alpha', config: { cpus: 2 } });
    expect(m.labels).toEqual({ policy: 'gold' });
  });

  it('stores only the changed chunks for an incremental with scattered changes', async () => {
    const before = await countObjects(backend, 'chunks/');
    const dirtyChunks = new Set(changedAt.map((o) => Math.floor(o / TEST_CHUNK))).size;
    const r = await repo.writeRestorePoint({
      vm: { id: 'vm-1', name: 'alpha' },
      parentId: fullId,
      disks: [{ name: 'sda', sizeBytes: SIZE, extents: asAsync(changedExtents(changed, TEST_CHUNK, changedAt, 4096)) }],
    });
    incId = r.restorePointId;
    const s = r.disks[0]!;
    expect(s.chunksNew).toBe(dirtyChunks);
    expect(s.bytesRead).toBe(dirtyChunks * TEST_CHUNK);
    expect(await countObjects(backend, 'chunks/')).toBe(before + dirtyChunks);
    // Pages with no change are the parent's, not rewritten.
    const parent = await repo.getManifest(fullId);
    const inc = await repo.getManifest(incId);
    const dirtyPages = new Set(changedAt.map((o) => Math.floor(o / TEST_CHUNK / TEST_PAGE_ENTRIES)));
    inc.disks[0]!.pages.forEach((p, i) => {
      if (!dirtyPages.has(i)) expect(p).toBe(parent.disks[0]!.pages[i]);
      else expect(p).not.toBe(parent.disks[0]!.pages[i]);
    });
    expect(inc.parentId).toBe(fullId);

    const now = await repo.openDisk(incId, 'sda');
    expect(Buffer.from(await now.read(0, SIZE)).equals(Buffer.from(changed))).toBe(true);
    const then = await repo.openDisk(fullId, 'sda');
    expect(Buffer.from(await then.read(0, SIZE)).equals(Buffer.from(base))).toBe(true);
  });

  it('stores the same data from a second VM once', async () => {
    const before = await countObjects(backend, 'chunks/');
    const r = await repo.writeRestorePoint({
      vm: { id: 'vm-2', name: 'beta' },
      disks: [{ name: 'vda', sizeBytes: SIZE, extents: asAsync(fullExtents(changed, TEST_CHUNK, 3 * TEST_CHUNK)) }],
    });
    expect(r.disks[0]!.chunksNew).toBe(0);
    expect(r.disks[0]!.bytesStored).toBe(0);
    expect(await countObjects(backend, 'chunks/')).toBe(before);
    expect(r.manifest.disks[0]!.pages).toEqual((await repo.getManifest(incId)).disks[0]!.pages);
  });

  it('reads random ranges across chunk and page boundaries, zero regions and the disk end', async () => {
    const disk = await repo.openDisk(incId, 'sda');
    const rnd = prng(42);
    const page = TEST_CHUNK * TEST_PAGE_ENTRIES;
    const ranges: Array<[number, number]> = [
      [0, 0], [0, 1], [SIZE - 1, 1], [SIZE - 12_345, 12_345], [SIZE - 100_000, 100_000],
      [TEST_CHUNK - 7, 14], [page - 3, 6], [page - TEST_CHUNK - 1, 2 * TEST_CHUNK + 2], [2 * page, page],
    ];
    const manifest = await repo.getManifest(incId);
    expect(manifest.disks[0]!.pages.length).toBe(Math.ceil(chunksOf(SIZE) / TEST_PAGE_ENTRIES));
    // A run of zero chunks, found from the image.
    for (let c = 0; c < chunksOf(SIZE); c++) {
      const slice = changed.subarray(c * TEST_CHUNK, (c + 1) * TEST_CHUNK);
      if (slice.every((b) => b === 0)) { ranges.push([c * TEST_CHUNK + 5, TEST_CHUNK]); break; }
    }
    for (let i = 0; i < 60; i++) {
      const off = rnd() % SIZE;
      ranges.push([off, rnd() % Math.min(SIZE - off, 3 * TEST_CHUNK) + 1]);
    }
    for (const [off, len] of ranges) {
      const got = await disk.read(off, len);
      expect(got.length).toBe(len);
      expect(Buffer.from(got).equals(Buffer.from(changed.subarray(off, off + len))), `range ${off}+${len}`).toBe(true);
    }
    await expect(disk.read(SIZE - 1, 2)).rejects.toThrow(RangeError);
    await expect(disk.read(-1, 1)).rejects.toThrow(RangeError);
    expect(await disk.chunkIdAt(chunksOf(SIZE) - 1)).not.toBe(ZERO_ID);
  });

  it.runIf(kind === 'directory')('restores to qcow2 through qemu-img', async () => {
    const dir = await h.tmpDir();
    const target = join(dir, 'sda.qcow2');
    await repo.restoreDisk(incId, 'sda', target, { format: 'qcow2' });
    const raw = join(dir, 'expected.raw');
    await repo.restoreDisk(incId, 'sda', raw);
    const { stdout } = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', raw, target]);
    expect(stdout).toMatch(/identical/);
    const info = JSON.parse((await run('qemu-img', ['info', '--output=json', target])).stdout) as { format: string; 'virtual-size': number };
    expect(info.format).toBe('qcow2');
    // qcow2 sizes are whole 512-byte sectors (real disks always are); the padding reads as zero.
    expect(info['virtual-size']).toBe(Math.ceil(SIZE / 512) * 512);
  });

  it('rejects misaligned or out-of-order extents and commits nothing', async () => {
    const before = (await repo.listRestorePoints()).length;
    const bad = async (extents: Array<{ offset: number; data: Uint8Array }>, re: RegExp) => {
      await expect(repo.writeRestorePoint({ vm: { id: 'v', name: 'v' }, disks: [{ name: 'd', sizeBytes: SIZE, extents }] })).rejects.toThrow(re);
    };
    await bad([{ offset: 4096, data: new Uint8Array(TEST_CHUNK) }], /not aligned/);
    await bad([{ offset: 0, data: new Uint8Array(TEST_CHUNK + 512) }], /whole number/);
    await bad([{ offset: TEST_CHUNK, data: new Uint8Array(TEST_CHUNK) }, { offset: 0, data: new Uint8Array(TEST_CHUNK) }], /out of order/);
    await bad([{ offset: SIZE - 12_345, data: new Uint8Array(TEST_CHUNK) }], /past the disk/);
    expect((await repo.listRestorePoints()).length).toBe(before);
    expect(await countObjects(backend, 'pending/')).toBe(0);
  });
});
