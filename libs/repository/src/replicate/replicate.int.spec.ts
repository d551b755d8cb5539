// Replication's repository pieces on real directories: a restore point copied to a keyless
// copy repository, only missing chunks sent for an incremental, restored from the copy
// byte-identical with the source's passphrase, resumed without re-sending, damage found by
// the keyless verify and repaired from the source.
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { useHarness } from '@cairn/testing';
import { DirectoryBackend } from '../backend/directory.adapter.ts';
import { chunkKey, pageKey } from '../format/layout.ts';
import { openRepository, type Repository } from '../repository.ts';
import { CHEAP_KDF, makeRepository, TEST_CHUNK, TEST_PASSPHRASE } from '../testing/fixtures.ts';
import { asAsync, changedExtents, fullExtents, makeImage, scatterChanges } from '../testing/test-image.ts';
import { copyRestorePoint, type ReplicaSink } from './copy-restore-point.ts';
import { ReplicaExpiredError, ReplicaIntegrityError, ReplicaTarget } from './replica-target.ts';
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
    source = repo.replicationSource();
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
    await expect(target.adopt(await other.replicationSource().identity())).rejects.toThrow(/holds a copy of repository/);
  });

  // ---- replica lifecycle: expiry and keyless GC ------------------------------------------

  const later = () => new Date(Date.now() + 60_000); // every object counts as past the grace period

  it('expires a replica and frees, without the key, only what no other replica references', async () => {
    const dir = await h.tmpDir('cairn-replica-');
    const target = new ReplicaTarget(new DirectoryBackend(dir, { createRoot: true, fsync: false }));
    await copyRestorePoint(source, target, fullId);
    await copyRestorePoint(source, target, incId, { base: fullId });
    expect(await target.readRefs(fullId)).toMatchObject({ pages: expect.any(Array), chunks: expect.any(Array) });
    // Nothing is unreferenced yet.
    expect(await target.gc({ graceMs: 0, now: later() })).toMatchObject({ deferred: false, liveReplicas: 2, withoutRefs: 0, objectsDeleted: 0 });
    const fullRefs = (await target.readRefs(fullId))!;
    const incRefs = (await target.readRefs(incId))!;
    const onlyFull = [...fullRefs.chunks.filter((c) => !incRefs.chunks.includes(c)).map((id) => chunkKey(id)),
      ...fullRefs.pages.filter((p) => !incRefs.pages.includes(p)).map((id) => pageKey(id))];
    expect(onlyFull.length).toBeGreaterThan(0);
    const before = await chunkFiles(dir);

    expect(await target.expire(fullId)).toBe(true);
    expect(await target.hasRestorePoint(fullId)).toBe(false);
    expect(await target.expire(fullId)).toBe(false); // again: nothing held any more
    // A late commit of the expired restore point (a copy that was under way) is refused.
    await expect(copyRestorePoint(source, target, fullId)).rejects.toThrow(ReplicaExpiredError);

    // Young objects stay through the grace period.
    expect(await target.gc({ graceMs: 3600_000 })).toMatchObject({ objectsDeleted: 0, objectsKeptYoung: onlyFull.length });
    const report = await target.gc({ graceMs: 0, now: later() });
    expect(report).toMatchObject({ deferred: false, liveReplicas: 1, objectsDeleted: onlyFull.length });
    const after = await chunkFiles(dir);
    let freed = 0;
    for (const [id, size] of before) if (!after.has(id)) freed += size;
    expect(freed).toBeGreaterThan(0);
    expect(report.bytesFreed).toBeGreaterThanOrEqual(freed);
    for (const key of onlyFull) await expect(readFile(join(dir, key))).rejects.toThrow(/ENOENT/);
    for (const id of incRefs.chunks) expect(after.has(id)).toBe(true);
    // The replica that stays is whole and restores byte-identical with the source key.
    expect((await target.verify()).ok).toBe(true);
    const copy = await openRepository(new DirectoryBackend(dir), { passphrase: TEST_PASSPHRASE });
    h.onClose(() => copy.close());
    const out = join(await h.tmpDir(), 'sda.raw');
    await copy.restoreDisk(incId, 'sda', out);
    expect(Buffer.from(await readFile(out)).equals(Buffer.from(changed))).toBe(true);
    expect((await copy.verify()).ok).toBe(true);
  });

  it('sweeps nothing while a replica has no refs list (copied before refs existed)', async () => {
    const dir = await h.tmpDir('cairn-replica-');
    const target = new ReplicaTarget(new DirectoryBackend(dir, { createRoot: true, fsync: false }));
    // A sink without putRefs: the copy an older version made.
    const old: ReplicaSink = { adopt: (i) => target.adopt(i), missing: (r) => target.missing(r), put: (o) => target.put(o), commit: (m, p) => target.commit(m, p) };
    await copyRestorePoint(source, old, fullId);
    await copyRestorePoint(source, target, incId, { base: fullId });
    await target.expire(incId);
    const files = (await chunkFiles(dir)).size;
    expect(await target.gc({ graceMs: 0, now: later() })).toMatchObject({ liveReplicas: 1, withoutRefs: 1, objectsDeleted: 0 });
    expect((await chunkFiles(dir)).size).toBe(files);
  });

  it('a copy running beside a replica GC loses nothing: the sweep waits, or the commit finds what went and the copy sends it again', async () => {
    const dir = await h.tmpDir('cairn-replica-');
    const target = new ReplicaTarget(new DirectoryBackend(dir, { createRoot: true, fsync: false }));
    await copyRestorePoint(source, target, fullId);
    await copyRestorePoint(source, target, incId, { base: fullId });
    await target.expire(fullId);
    // A third restore point with the full's content: its pages and chunks are the full's,
    // unreferenced now (the full expired) and still in the copy.
    const againId = (await repo.writeRestorePoint({
      vm: { id: 'vm-1', name: 'alpha' },
      disks: [{ name: 'sda', sizeBytes: SIZE, extents: asAsync(fullExtents(base, TEST_CHUNK)) }],
    })).restorePointId;
    // 1. In this process: a GC asked for while the copy runs is deferred.
    let gcDuringCopy: unknown;
    const sameProcess: ReplicaSink = {
      adopt: (i) => target.adopt(i), missing: (r) => target.missing(r), put: (o) => target.put(o), commit: (m, p) => target.commit(m, p),
      async putRefs(id, refs) { gcDuringCopy = await target.gc({ graceMs: 0, now: later() }); await target.putRefs(id, refs); },
    };
    expect((await copyRestorePoint(source, sameProcess, againId)).committed).toBe(true);
    expect(gcDuringCopy).toMatchObject({ deferred: true, objectsDeleted: 0 });
    await target.expire(againId);
    // 2. A GC from elsewhere (another receiver on the same store) sweeps after the copy was
    //    told the objects are there: the commit refuses, the copy run again sends them.
    const thirdId = (await repo.writeRestorePoint({
      vm: { id: 'vm-1', name: 'alpha' },
      disks: [{ name: 'sda', sizeBytes: SIZE, extents: asAsync(fullExtents(base, TEST_CHUNK)) }],
    })).restorePointId;
    const elsewhere = new ReplicaTarget(new DirectoryBackend(dir, { fsync: false }));
    let swept: { objectsDeleted: number } | undefined;
    const racing: ReplicaSink = {
      adopt: (i) => target.adopt(i), missing: (r) => target.missing(r), put: (o) => target.put(o), commit: (m, p) => target.commit(m, p),
      async putRefs(id, refs) { swept ??= await elsewhere.gc({ graceMs: 0, now: later() }); await target.putRefs(id, refs); },
    };
    const first = await copyRestorePoint(source, racing, thirdId).then(() => 'committed', (e: Error) => e);
    expect(swept!.objectsDeleted).toBeGreaterThan(0);
    expect(first).toBeInstanceOf(ReplicaIntegrityError);
    const second = await copyRestorePoint(source, racing, thirdId);
    expect(second.committed).toBe(true);
    expect(second.chunksSent).toBeGreaterThan(0);
    expect((await target.verify()).ok).toBe(true);
    const copy = await openRepository(new DirectoryBackend(dir), { passphrase: TEST_PASSPHRASE });
    h.onClose(() => copy.close());
    for (const [id, want] of [[thirdId, base], [incId, changed]] as const) {
      const out = join(await h.tmpDir(), 'sda.raw');
      await copy.restoreDisk(id, 'sda', out);
      expect(Buffer.from(await readFile(out)).equals(Buffer.from(want))).toBe(true);
    }
  });
});
