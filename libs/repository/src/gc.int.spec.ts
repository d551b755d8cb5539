// Garbage collection against a backup committing while it runs: nothing referenced goes,
// unreferenced chunks older than the grace period do, younger ones stay.
import { mkdir, readdir, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useHarness, waitFor } from '@cairn/testing';
import type { Backend } from './backend/backend.ts';
import { DirectoryBackend } from './backend/directory.adapter.ts';
import { CHUNKS_PREFIX, idFromContentKey } from './format/layout.ts';
import type { Repository } from './repository.ts';
import { makeBackend, makeRepository, TEST_CHUNK, type BackendKind } from './testing/fixtures.ts';
import { asAsync, fullExtents, makeImage } from './testing/test-image.ts';

const h = useHarness();
const SIZE = 2 * 1024 * 1024;

async function chunkIds(b: Backend): Promise<Set<string>> {
  const s = new Set<string>();
  for await (const o of b.list(CHUNKS_PREFIX)) s.add(idFromContentKey(o.key)!);
  return s;
}

async function idsOf(repo: Repository, rp: string, disk: string, size: number): Promise<Set<string>> {
  const d = await repo.openDisk(rp, disk);
  const s = new Set<string>();
  for (let c = 0; c < Math.ceil(size / TEST_CHUNK); c++) {
    const id = await d.chunkIdAt(c);
    if (id) s.add(id);
  }
  return s;
}

const full = (name: string, img: Uint8Array) => ({ name, sizeBytes: img.length, extents: asAsync(fullExtents(img, TEST_CHUNK)) });

describe.each<BackendKind>(['directory', 's3'])('gc on %s', (kind) => {
  it('keeps everything a concurrently committing backup uses and sweeps old garbage', async () => {
    const backend = await makeBackend(h, kind);
    const repo = await makeRepository(h, backend);
    const a = makeImage(SIZE, 21);
    const b = makeImage(SIZE, 22);
    const rpA = (await repo.writeRestorePoint({ vm: { id: 'a', name: 'a' }, disks: [full('sda', a)] })).restorePointId;
    const rpB = (await repo.writeRestorePoint({ vm: { id: 'b', name: 'b' }, disks: [full('sda', b)] })).restorePointId;
    const idsA = await idsOf(repo, rpA, 'sda', SIZE);
    const idsB = await idsOf(repo, rpB, 'sda', SIZE);
    await repo.deleteRestorePoint(rpB); // B's chunks are now garbage

    // Writer C reuses B's first half (garbage chunks!) and pauses before finishing.
    const c = makeImage(SIZE, 23);
    c.set(b.subarray(0, SIZE / 2));
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    let paused = false;
    async function* slowExtents() {
      for (const e of fullExtents(c, TEST_CHUNK)) {
        if (e.offset === SIZE / 2) { paused = true; await gate; }
        yield e;
      }
    }
    const writing = repo.writeRestorePoint({ vm: { id: 'c', name: 'c' }, disks: [{ name: 'sda', sizeBytes: SIZE, extents: slowExtents() }] });
    await waitFor(() => paused, { timeoutMs: 20_000 });

    const gc = repo.gc({ graceMs: 0 });
    // The sweep announces itself, then waits for writer C to finish.
    await waitFor(() => backend.exists('gc/sweep'), { timeoutMs: 20_000 });
    release();
    const committed = await writing;
    const report = await gc;
    expect(report.deferred).toBe(false);

    const idsC = await idsOf(repo, committed.restorePointId, 'sda', SIZE);
    const referenced = new Set([...idsA, ...idsC]);
    const expectedGone = [...idsB].filter((id) => !referenced.has(id));
    expect(expectedGone.length).toBeGreaterThan(0);
    expect([...idsB].some((id) => idsC.has(id))).toBe(true); // the race actually exercised reuse
    expect(report.chunksDeleted).toBe(expectedGone.length);
    const left = await chunkIds(backend);
    for (const id of referenced) expect(left.has(id)).toBe(true);
    for (const id of expectedGone) expect(left.has(id)).toBe(false);
    expect(await backend.exists('gc/sweep')).toBe(false);

    const v = await repo.verify();
    expect(v.ok).toBe(true);
    expect(Buffer.from(await (await repo.openDisk(committed.restorePointId, 'sda')).read(0, SIZE)).equals(Buffer.from(c))).toBe(true);

    // The writer cache is refreshed after a sweep: a new backup of B re-uploads what was swept.
    const again = await repo.writeRestorePoint({ vm: { id: 'b', name: 'b' }, disks: [full('sda', b)] });
    expect(again.disks[0]!.chunksNew).toBe(expectedGone.length);
    expect((await repo.verify()).ok).toBe(true);
  });

  it('keeps unreferenced chunks younger than the grace period', async () => {
    const backend = await makeBackend(h, kind);
    const repo = await makeRepository(h, backend);
    const img = makeImage(SIZE, 31);
    const rp = (await repo.writeRestorePoint({ vm: { id: 'x', name: 'x' }, disks: [full('sda', img)] })).restorePointId;
    const before = await chunkIds(backend);
    await repo.deleteRestorePoint(rp);
    const young = await repo.gc({ graceMs: 3_600_000 });
    expect(young.chunksDeleted).toBe(0);
    expect(young.keptYoung).toBe(before.size + (await repo.stats()).indexPages);
    expect(await chunkIds(backend)).toEqual(before);
    const dry = await repo.gc({ graceMs: 0, dryRun: true });
    expect(dry.chunksDeleted).toBe(before.size);
    expect(await chunkIds(backend)).toEqual(before);
    const old = await repo.gc({ graceMs: 0 });
    expect(old.chunksDeleted).toBe(before.size);
    expect((await chunkIds(backend)).size).toBe(0);
    expect((await repo.stats()).indexPages).toBe(0);
  });

  it('defers the sweep while a writer holds its lease past the wait limit, deleting nothing', async () => {
    const backend = await makeBackend(h, kind);
    const repo = await makeRepository(h, backend);
    const img = makeImage(SIZE, 41);
    const rp = (await repo.writeRestorePoint({ vm: { id: 'x', name: 'x' }, disks: [full('sda', img)] })).restorePointId;
    await repo.deleteRestorePoint(rp);
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    async function* stuck() { await gate; yield* fullExtents(img, TEST_CHUNK); }
    const writing = repo.writeRestorePoint({ vm: { id: 'y', name: 'y' }, disks: [{ name: 'sda', sizeBytes: SIZE, extents: stuck() }] });
    await waitFor(async () => { for await (const _ of backend.list('pending/')) return true; return false; }, { timeoutMs: 20_000 });
    const before = await chunkIds(backend);
    const report = await repo.gc({ graceMs: 0, waitForWritersMs: 200 });
    expect(report.deferred).toBe(true);
    expect(await chunkIds(backend)).toEqual(before);
    release();
    await writing;
    expect((await repo.verify()).ok).toBe(true);
  });
});

describe('gc on the directory backend', () => {
  it('removes the temp files of crashed puts older than the grace period, and nothing else', async () => {
    const root = await h.tmpDir();
    const backend = new DirectoryBackend(root);
    const repo = await makeRepository(h, backend);
    const img = makeImage(SIZE, 51);
    const rp = (await repo.writeRestorePoint({ vm: { id: 'x', name: 'x' }, disks: [full('sda', img)] })).restorePointId;
    const keep = (await repo.writeRestorePoint({ vm: { id: 'y', name: 'y' }, disks: [full('sda', makeImage(SIZE, 52))] })).restorePointId;
    await repo.deleteRestorePoint(rp); // something to sweep, written an hour ago
    const hourAgo = new Date(Date.now() - 3_600_000);
    for (const top of ['chunks', 'index']) {
      for (const sub of await readdir(join(root, top))) {
        for (const f of await readdir(join(root, top, sub))) await utimes(join(root, top, sub, f), hourAgo, hourAgo);
      }
    }
    // What a writer killed between writing a chunk and naming it leaves: temp files.
    const dir = join(root, 'chunks', 'ab');
    await mkdir(dir, { recursive: true });
    const old = join(dir, '.tmp~00000000deadbeef');
    await writeFile(old, 'partial chunk');
    await utimes(old, hourAgo, hourAgo);
    const fresh = join(dir, '.tmp~00000000feedface');
    await writeFile(fresh, 'a put under way');
    const report = await repo.gc({ graceMs: 600_000 });
    expect(report.chunksDeleted).toBeGreaterThan(0);
    expect(report.debrisFiles).toBe(1);
    // Only the temp files: a chunk of `keep` may live in chunks/ab/ too (its id is keyed per repository).
    expect((await readdir(dir)).filter((f) => f.startsWith('.tmp~'))).toEqual(['.tmp~00000000feedface']);
    expect((await repo.verify()).ok).toBe(true);
    expect(Buffer.from(await (await repo.openDisk(keep, 'sda')).read(0, SIZE)).equals(Buffer.from(makeImage(SIZE, 52)))).toBe(true);
  });
});
