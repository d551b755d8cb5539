// Replication's repository pieces on real directories: a restore point copied to a keyless
// copy repository, only missing chunks sent for an incremental, restored from the copy
// byte-identical with the source's passphrase, resumed without re-sending, damage found by
// the keyless verify and repaired from the source.
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { useHarness } from '@cairn/testing';
import { DirectoryBackend } from '../backend/directory.adapter.ts';
import { chunkKey } from '../format/layout.ts';
import { openRepository, type Repository } from '../repository.ts';
import { CHEAP_KDF, makeRepository, TEST_CHUNK, TEST_PASSPHRASE } from '../testing/fixtures.ts';
import { asAsync, changedExtents, fullExtents, makeImage, scatterChanges } from '../testing/test-image.ts';
import { copyRestorePoint, type ReplicaSink } from './copy-restore-point.ts';
import { ReplicaIntegrityError, ReplicaTarget } from './replica-target.ts';
import { ReplicationSource } from './replication-source.ts';

const h = useHarness();
const SIZE = 3 * 1024 * 1024 + 777;

async function chunkFiles(dir: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const sub of await readdir(join(dir, 'chunks')).catch(() => [] as string[])) {
    for (const f of await readdir(join(dir, 'chunks', sub))) out.set(f, (await readFile(join(dir, 'chunks', sub, f))).length);
  }
  return out;
}

describe('replication of restore points between repositories', () => {
  let srcDir = '';
  let repo: Repository;
  let source: ReplicationSource;
  const base = makeImage(SIZE, 11);
  const changed = Uint8Array.from(base);
  const changedAt = scatterChanges(changed, 5, 4096, 5);
  let fullId = '';
  let incId = '';
  let newChunkBytes = 0;

  beforeAll(async () => {
    srcDir = await h.tmpDir('cairn-src-');
    repo = await makeRepository(h, new DirectoryBackend(srcDir, { createRoot: true, fsync: false }));
    h.onClose(() => repo.close());
    source = new ReplicationSource(repo);
    fullId = (await repo.writeRestorePoint({
      vm: { id: 'vm-1', name: 'alpha' },
      disks: [{ name: 'sda', sizeBytes: SIZE, extents: asAsync(fullExtents(base, TEST_CHUNK)) }],
    })).restorePointId;
    const before = await chunkFiles(srcDir);
    incId = (await repo.writeRestorePoint({
      vm: { id: 'vm-1', name: 'alpha' }, parentId: fullId,
      disks: [{ name: 'sda', sizeBytes: SIZE, extents: asAsync(changedExtents(changed, TEST_CHUNK, changedAt, 4096)) }],
    })).restorePointId;
    for (const [id, size] of await chunkFiles(srcDir)) if (!before.has(id)) newChunkBytes += size;
  });

  it('copies a full, then only the new chunks of an incremental; the copy restores byte-identical with the source key', async () => {
    const dir = await h.tmpDir('cairn-replica-');
    const target = new ReplicaTarget(new DirectoryBackend(dir, { createRoot: true, fsync: false }));
    const full = await copyRestorePoint(source, target, fullId);
    expect(full.committed).toBe(true);
    expect(full.chunksSent).toBe((await repo.getManifest(fullId)).disks[0]!.stats.chunksNew);
    const again = await copyRestorePoint(source, target, fullId);
    expect(again).toMatchObject({ committed: false, chunksSent: 0, pagesSent: 0 });

    const inc = await copyRestorePoint(source, target, incId, { base: fullId });
    const dirty = new Set(changedAt.map((o) => Math.floor(o / TEST_CHUNK))).size;
    expect(inc.chunksSent).toBe(dirty);
    expect(inc.chunkBytesSent).toBe(newChunkBytes);
    expect(inc.chunksAsked).toBe(dirty); // only chunks that differ from the base were asked about

    // Same repository, same sealed bytes: the copy opens with the source's passphrase only.
    const copy = await openRepository(new DirectoryBackend(dir), { passphrase: TEST_PASSPHRASE });
    h.onClose(() => copy.close());
    expect(copy.repositoryId).toBe(repo.repositoryId);
    await expect(openRepository(new DirectoryBackend(dir), { passphrase: 'another', kdf: CHEAP_KDF })).rejects.toThrow(/wrong passphrase/);
    const out = join(await h.tmpDir(), 'sda.raw');
    await copy.restoreDisk(incId, 'sda', out);
    expect(Buffer.from(await readFile(out)).equals(Buffer.from(changed))).toBe(true);
    expect((await copy.verify()).ok).toBe(true);
    expect((await target.verify()).ok).toBe(true);
  });

  it('resumes a copy cut short without sending any object twice', async () => {
    const dir = await h.tmpDir('cairn-replica-');
    const target = new ReplicaTarget(new DirectoryBackend(dir, { createRoot: true, fsync: false }));
    const puts = new Map<string, number>();
    let cut = 5;
    const sink: ReplicaSink = {
      adopt: (i) => target.adopt(i),
      missing: (r) => target.missing(r),
      commit: (m, p) => target.commit(m, p),
      async put(obj) {
        if (cut-- <= 0) throw new Error('killed');
        await target.put(obj);
        puts.set(obj.id, (puts.get(obj.id) ?? 0) + 1);
      },
    };
    await expect(copyRestorePoint(source, sink, fullId, { concurrency: 1 })).rejects.toThrow('killed');
    expect(await target.hasRestorePoint(fullId)).toBe(false);
    cut = Infinity;
    expect((await copyRestorePoint(source, sink, fullId)).committed).toBe(true);
    expect([...puts.values()].every((n) => n === 1)).toBe(true);
    expect(puts.size).toBe((await repo.getManifest(fullId)).disks[0]!.stats.chunksNew + (await source.pages(fullId)).length);
  });

  it('finds a damaged chunk without the key and repairs it from the source', async () => {
    const dir = await h.tmpDir('cairn-replica-');
    const target = new ReplicaTarget(new DirectoryBackend(dir, { createRoot: true, fsync: false }));
    await copyRestorePoint(source, target, fullId);
    const [page] = await source.pages(fullId);
    const victim = (await source.pageChunks(page!))[1]!;
    const file = join(dir, chunkKey(victim));
    const bytes = await readFile(file);
    bytes[bytes.length - 20]! ^= 0xff;
    await writeFile(file, bytes);

    const report = await target.verify();
    expect(report.ok).toBe(false);
    expect(report.damaged).toEqual([expect.objectContaining({ kind: 'chunk', id: victim, damage: 'digest-mismatch' })]);
    // Sent again: a flipped byte on the way is refused, the real object repairs the copy.
    const good = await source.sealed('chunk', victim);
    const bad = Uint8Array.from(good.bytes);
    bad[30]! ^= 1;
    await expect(target.put({ ...good, bytes: bad })).rejects.toThrow(ReplicaIntegrityError);
    await target.put(good);
    expect((await target.verify()).ok).toBe(true);
  });

  it('refuses to mix two repositories in one copy', async () => {
    const dir = await h.tmpDir('cairn-replica-');
    const target = new ReplicaTarget(new DirectoryBackend(dir, { createRoot: true, fsync: false }));
    await target.adopt(await source.identity());
    const other = await makeRepository(h, new DirectoryBackend(await h.tmpDir(), { createRoot: true, fsync: false }));
    h.onClose(() => other.close());
    await expect(target.adopt(await new ReplicationSource(other).identity())).rejects.toThrow(/holds a copy of repository/);
  });
});
