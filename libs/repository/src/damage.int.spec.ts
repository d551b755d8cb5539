// Damaged storage: a flipped bit, a truncated chunk, a missing chunk, a damaged index page.
// Verify names each with the restore points and offsets using it; restore and reads fail
// with that report; nothing wrong is ever returned.
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { useHarness } from '@cairn/testing';
import type { Backend } from './backend/backend.ts';
import { DamagedChunkError } from './errors.ts';
import { chunkKey, pageKey } from './format/layout.ts';
import type { Repository } from './repository.ts';
import { makeBackend, makeRepository, TEST_CHUNK, type BackendKind } from './testing/fixtures.ts';
import { asAsync, fullExtents, makeImage } from './testing/test-image.ts';

const h = useHarness();
const SIZE = 3 * 1024 * 1024;

describe.each<BackendKind>(['directory', 's3'])('damage on %s', (kind) => {
  let backend: Backend;
  let repo: Repository;
  const image = makeImage(SIZE, 3);
  let rp1 = '';
  let rp2 = '';
  const victims: Array<{ id: string; offset: number; damage: string }> = [];

  beforeAll(async () => {
    backend = await makeBackend(h, kind);
    repo = await makeRepository(h, backend);
    rp1 = (await repo.writeRestorePoint({ vm: { id: 'a', name: 'a' }, disks: [{ name: 'sda', sizeBytes: SIZE, extents: asAsync(fullExtents(image, TEST_CHUNK)) }] })).restorePointId;
    // A second VM holding the first MiB of the same data: shares those chunks.
    const mib = 1024 * 1024;
    rp2 = (await repo.writeRestorePoint({ vm: { id: 'b', name: 'b' }, disks: [{ name: 'vdb', sizeBytes: mib, extents: asAsync(fullExtents(image.subarray(0, mib), TEST_CHUNK)) }] })).restorePointId;

    const disk = await repo.openDisk(rp1, 'sda');
    const nonZero: Array<{ id: string; offset: number }> = [];
    const seen = new Set<string>();
    for (let c = 0; c < SIZE / TEST_CHUNK; c++) {
      const id = await disk.chunkIdAt(c);
      if (id && !seen.has(id)) { seen.add(id); nonZero.push({ id, offset: c * TEST_CHUNK }); }
    }
    const inFirstMib = nonZero.filter((x) => x.offset < mib);
    const later = nonZero.filter((x) => x.offset >= 2 * mib);
    expect(inFirstMib.length).toBeGreaterThan(0);
    expect(later.length).toBeGreaterThan(1);
    const flip = inFirstMib[0]!;
    const trunc = later[0]!;
    const gone = later[later.length - 1]!;
    const sealed = Buffer.from(await backend.get(chunkKey(flip.id)));
    sealed[Math.floor(sealed.length / 2)]! ^= 0x10;
    await backend.put(chunkKey(flip.id), sealed);
    const whole = await backend.get(chunkKey(trunc.id));
    await backend.put(chunkKey(trunc.id), whole.subarray(0, whole.length - 100));
    await backend.delete(chunkKey(gone.id));
    victims.push({ ...flip, damage: 'authentication' }, { ...trunc, damage: 'truncated' }, { ...gone, damage: 'missing' });
  });

  it('verify names each damaged chunk with every restore point and offset using it', async () => {
    const report = await repo.verify();
    expect(report.ok).toBe(false);
    expect(report.chunksChecked).toBe(report.chunksTotal);
    expect(report.damaged).toHaveLength(3);
    for (const v of victims) {
      const d = report.damaged.find((x) => x.id === v.id);
      expect(d, v.damage).toBeDefined();
      expect(d!.kind).toBe('chunk');
      expect(d!.damage).toBe(v.damage);
      const use = d!.uses.find((u) => u.restorePointId === rp1);
      expect(use?.disk).toBe('sda');
      expect(use?.offsets).toContain(v.offset);
    }
    const flipped = report.damaged.find((x) => x.id === victims[0]!.id)!;
    expect(flipped.uses.map((u) => u.restorePointId).sort()).toEqual([rp1, rp2].sort());

    // Checking only rp2 finds the shared flipped chunk and still names rp1 as a user.
    const only2 = await repo.verify({ restorePoints: [rp2] });
    expect(only2.damaged.map((d) => d.id)).toEqual([victims[0]!.id]);
    expect(only2.damaged[0]!.uses.map((u) => u.restorePointId).sort()).toEqual([rp1, rp2].sort());
    expect((await repo.verify({ restorePoints: [rp2], sample: 0 })).chunksChecked).toBe(0);
  });

  it('verify waits in its pace before each chunk it reads (a scheduled verify yields to backups there)', async () => {
    let calls = 0;
    let open = (): void => undefined;
    const held = new Promise<void>((r) => { open = r; });
    let reached = (): void => undefined;
    const first = new Promise<void>((r) => { reached = r; });
    let settled = false;
    const pending = repo.verify({ restorePoints: [rp2], pace: async () => { calls++; reached(); await held; } });
    void pending.then(() => { settled = true; }, () => { settled = true; });
    await first;
    await new Promise((r) => setTimeout(r, 100));
    expect(settled).toBe(false);
    open();
    const report = await pending;
    expect(calls).toBe(report.chunksChecked);
    expect(report.damaged.map((d) => d.id)).toEqual([victims[0]!.id]);
  });

  it('a full restore fails with the same report and leaves no file', async () => {
    const dir = await h.tmpDir();
    const target = join(dir, 'sda.raw');
    const err = await repo.restoreDisk(rp1, 'sda', target).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DamagedChunkError);
    const damaged = (err as DamagedChunkError).damaged;
    expect(damaged.map((d) => d.id).sort()).toEqual(victims.map((v) => v.id).sort());
    expect((err as Error).message).toContain(rp1);
    expect(await readdir(dir)).toEqual([]);
  });

  it('the reader refuses ranges touching a damaged chunk and serves the rest', async () => {
    const disk = await repo.openDisk(rp1, 'sda');
    for (const v of victims) {
      const err = await disk.read(v.offset + 10, 100).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DamagedChunkError);
      expect((err as DamagedChunkError).chunkIds).toEqual([v.id]);
      expect((err as DamagedChunkError).damaged[0]!.damage).toBe(v.damage);
    }
    const bad = new Set(victims.map((v) => v.offset / TEST_CHUNK));
    for (let c = 0; c < SIZE / TEST_CHUNK; c++) {
      if (bad.has(c)) continue;
      const got = await disk.read(c * TEST_CHUNK, TEST_CHUNK).catch(() => undefined);
      // Chunks with the same content as a victim are damaged too; the others read exactly.
      if (got) expect(Buffer.from(got).equals(Buffer.from(image.subarray(c * TEST_CHUNK, (c + 1) * TEST_CHUNK)))).toBe(true);
    }
  });

  it('a damaged index page is reported with the restore point and disk region it covers', async () => {
    const m = await repo.getManifest(rp2);
    const pageId = m.disks[0]!.pages.find((p) => !/^0+$/.test(p))!;
    const sealed = Buffer.from(await backend.get(pageKey(pageId)));
    sealed[sealed.length - 1]! ^= 1;
    await backend.put(pageKey(pageId), sealed);
    const report = await repo.verify({ restorePoints: [rp2] });
    const d = report.damaged.find((x) => x.kind === 'index-page');
    expect(d?.id).toBe(pageId);
    expect(d?.uses.some((u) => u.restorePointId === rp2 && u.disk === 'vdb')).toBe(true);
    await expect(repo.restoreDisk(rp2, 'vdb', join(await h.tmpDir(), 'x'))).rejects.toThrow(DamagedChunkError);
  });
});
