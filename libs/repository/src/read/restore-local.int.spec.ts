// A restore from a local directory repository: the chunk workers read each chunk's file
// themselves (Backend.localPath), so no chunk passes through the main thread; a file they
// cannot read is read through the backend instead, which reports it as every read does.
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { useHarness } from '@cairn/testing';
import { DirectoryBackend } from '../backend/directory.adapter.ts';
import { withConcurrencyLimit } from '../backend/concurrency-limit.wrapper.ts';
import { CHUNKS_DIR_KEY, chunkKey, chunkSubpath } from '../format/layout.ts';
import { ChunkWorkerPool } from '../workers/chunk-worker-pool.ts';
import type { Repository } from '../repository.ts';
import { makeRepository, TEST_CHUNK } from '../testing/fixtures.ts';
import { asAsync, fullExtents, makeImage } from '../testing/test-image.ts';

const h = useHarness();
const SIZE = 2 * 1024 * 1024;

describe('restore from a local directory repository', () => {
  let backend: DirectoryBackend;
  let repo: Repository;
  let rp = '';
  const image = makeImage(SIZE, 7);
  const ids: string[] = [];

  beforeAll(async () => {
    backend = new DirectoryBackend(await h.tmpDir('cairn-repo-'), { createRoot: true, fsync: false });
    repo = await makeRepository(h, backend);
    rp = (await repo.writeRestorePoint({ vm: { id: 'a', name: 'a' }, disks: [{ name: 'sda', sizeBytes: SIZE, extents: asAsync(fullExtents(image, TEST_CHUNK)) }] })).restorePointId;
    const disk = await repo.openDisk(rp, 'sda');
    for (let c = 0; c < SIZE / TEST_CHUNK; c++) {
      const id = await disk.chunkIdAt(c);
      if (id && !ids.includes(id)) ids.push(id);
    }
    expect(ids.length).toBeGreaterThan(2);
  });

  it('the directory backend and its production wrappers name the local file; restores never get a chunk through the backend', async () => {
    expect(backend.localPath(chunkKey(ids[0]!))).toBe(join(backend.root, chunkKey(ids[0]!)));
    expect(withConcurrencyLimit(backend, { limit: 2 }).localPath?.(chunkKey(ids[0]!))).toBe(backend.localPath(chunkKey(ids[0]!)));
    const get = vi.spyOn(backend, 'get');
    try {
      const target = join(await h.tmpDir(), 'out.raw');
      const r = await repo.restoreDisk(rp, 'sda', target);
      expect(Buffer.compare(await readFile(target), Buffer.from(image))).toBe(0);
      expect(r.chunksRead).toBeGreaterThan(2);
      const chunkKeys = new Set(ids.map(chunkKey));
      expect(get.mock.calls.filter(([key]) => chunkKeys.has(key))).toEqual([]);
      expect(r.timings.writeMs).toBeGreaterThanOrEqual(0);
      expect(r.timings.syncMs).toBeGreaterThanOrEqual(0);
    } finally {
      get.mockRestore();
    }
  });

  it('hands the workers batches of 32 chunks (8 when throttled), written byte for byte', async () => {
    // 128 chunks, the zero ones holes (never sent): the others in batches of at most 32.
    const size = 128 * TEST_CHUNK;
    const big = makeImage(size, 11);
    let chunks = 0;
    for (let c = 0; c < size / TEST_CHUNK; c++) if (big.subarray(c * TEST_CHUNK, (c + 1) * TEST_CHUNK).some((b) => b !== 0)) chunks++;
    expect(chunks).toBeGreaterThan(64);
    const batchesOf = (n: number) => [...Array<number>(Math.floor(chunks / n)).fill(n), ...(chunks % n ? [chunks % n] : [])];
    const id = (await repo.writeRestorePoint({ vm: { id: 'b', name: 'b' }, disks: [{ name: 'sda', sizeBytes: size, extents: asAsync(fullExtents(big, TEST_CHUNK)) }] })).restorePointId;
    const batches = vi.spyOn(ChunkWorkerPool.prototype, 'openFilesTo');
    try {
      const target = join(await h.tmpDir(), 'out.raw');
      const r = await repo.restoreDisk(id, 'sda', target);
      expect(Buffer.compare(await readFile(target), Buffer.from(big))).toBe(0);
      expect(r.chunksRead).toBe(chunks);
      expect(batches.mock.calls.map(([items]) => items.length)).toEqual(batchesOf(32));
      batches.mockClear();
      const throttled = join(await h.tmpDir(), 'out.raw');
      await repo.restoreDisk(id, 'sda', throttled, { throttle: async () => undefined });
      expect(Buffer.compare(await readFile(throttled), Buffer.from(big))).toBe(0);
      expect(batches.mock.calls.map(([items]) => items.length)).toEqual(batchesOf(8));
    } finally {
      batches.mockRestore();
    }
  });

  it("the workers' writes to one target take turns on their own lock; one left taken holds a batch up by its wait, never for good", async () => {
    const size = 96 * TEST_CHUNK;
    const big = makeImage(size, 13);
    const id = (await repo.writeRestorePoint({ vm: { id: 'c', name: 'c' }, disks: [{ name: 'sda', sizeBytes: size, extents: asAsync(fullExtents(big, TEST_CHUNK)) }] })).restorePointId;
    const openFilesTo = ChunkWorkerPool.prototype.openFilesTo;
    let locks: Int32Array | undefined;
    let at = -1;
    // Before the first batch: its target's lock taken, as a worker that died holding it would leave it.
    const batches = vi.spyOn(ChunkWorkerPool.prototype, 'openFilesTo').mockImplementation(function (this: ChunkWorkerPool, chunks, fd, dir) {
      if (!locks) {
        locks = new Int32Array(this.writeLocks);
        at = fd % locks.length;
        Atomics.store(locks, at, 1);
      }
      return openFilesTo.call(this, chunks, fd, dir);
    });
    try {
      const target = join(await h.tmpDir(), 'out.raw');
      const t0 = performance.now();
      await repo.restoreDisk(id, 'sda', target);
      expect(performance.now() - t0).toBeGreaterThanOrEqual(50); // the wait before a worker takes the lock over
      expect(Buffer.compare(await readFile(target), Buffer.from(big))).toBe(0);
      expect(batches.mock.calls.length).toBeGreaterThan(1); // two workers' batches at once, taking turns
      expect(at).toBeGreaterThanOrEqual(0);
      expect([...locks!]).toEqual(new Array(locks!.length).fill(0)); // every lock given back
      // And again, nothing left taken: byte for byte.
      const again = join(await h.tmpDir(), 'out.raw');
      await repo.restoreDisk(id, 'sda', again);
      expect(Buffer.compare(await readFile(again), Buffer.from(big))).toBe(0);
    } finally {
      batches.mockRestore();
    }
  });

  it('a batch travels as ids and typed arrays: the worker makes each path from the chunks directory, none for an id that is no content id', async () => {
    const dir = backend.localPath(CHUNKS_DIR_KEY);
    for (const id of ids) expect(`${dir}/${chunkSubpath(id)}`).toBe(backend.localPath(chunkKey(id)));
    const openFilesTo = ChunkWorkerPool.prototype.openFilesTo;
    const seen: Array<{ n: number; bytes: Float64Array; failures: ReadonlyArray<readonly [number, unknown]> }> = [];
    // Each batch with two items more: a path-like id and a content id without a file.
    const batches = vi.spyOn(ChunkWorkerPool.prototype, 'openFilesTo').mockImplementation(async function (this: ChunkWorkerPool, chunks, fd, d) {
      expect(d).toBe(dir);
      const n = chunks.length;
      const r = await openFilesTo.call(this, [...chunks, { id: `../${ids[0]!}`, position: 0 }, { id: 'f'.repeat(64), position: 0 }], fd, d);
      seen.push({ n, bytes: r.bytes, failures: r.failures ?? [] });
      return { bytes: r.bytes.slice(0, n) };
    });
    try {
      const target = join(await h.tmpDir(), 'out.raw');
      await repo.restoreDisk(rp, 'sda', target);
      expect(Buffer.compare(await readFile(target), Buffer.from(image))).toBe(0);
      expect(seen.length).toBeGreaterThan(0);
      for (const { n, bytes, failures } of seen) {
        expect(bytes).toBeInstanceOf(Float64Array);
        expect([...bytes.slice(0, n)].every((b) => b > 0)).toBe(true);
        expect([...bytes.slice(n)]).toEqual([-1, -1]);
        expect(failures.map(([i]) => i)).toEqual([n, n + 1]);
        expect(failures[0]![1]).toEqual({ unreadable: `not a chunk id: ${JSON.stringify(`../${ids[0]!}`)}` });
        expect(failures[1]![1]).toMatchObject({ unreadable: expect.stringContaining('ENOENT') });
      }
    } finally {
      batches.mockRestore();
    }
  });

  it('a chunk file the worker cannot read is read through the backend, whose error fails the restore and leaves no file', async () => {
    // A directory where the chunk's file was: the worker's read fails (EISDIR), so does get().
    const path = backend.localPath(chunkKey(ids[1]!));
    const sealed = await readFile(path);
    await rm(path);
    await mkdir(path);
    const get = vi.spyOn(backend, 'get');
    const target = join(await h.tmpDir(), 'out.raw');
    try {
      await expect(repo.restoreDisk(rp, 'sda', target)).rejects.toThrow();
      expect(get.mock.calls.map(([key]) => key)).toContain(chunkKey(ids[1]!));
      expect(await stat(target).then(() => true, () => false)).toBe(false);
    } finally {
      get.mockRestore();
      await rm(path, { recursive: true });
      await backend.put(chunkKey(ids[1]!), sealed);
    }
    // Readable again: the same restore completes.
    await repo.restoreDisk(rp, 'sda', target);
    expect(Buffer.compare(await readFile(target), Buffer.from(image))).toBe(0);
  });
});
