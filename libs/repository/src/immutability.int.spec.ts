// Immutability on the directory backend: a locked restore point (its manifest, index pages
// and chunks) cannot be deleted or overwritten by any call before its lock ends — not
// through the repository, not through the backend directly, not through the wrappers —
// and the lock cannot be shortened or removed. After it ends, deletion works again.
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { useHarness } from '@cairn/testing';
import type { Backend } from './backend/backend.ts';
import { DirectoryBackend } from './backend/directory.adapter.ts';
import { encodeLockRecord, lockKeyOf, ObjectLockedError } from './backend/object-lock.ts';
import { wrapBackend } from './backend/stack.ts';
import { RepositoryDeletedError, RepositoryLockedError, RestorePointLockedError } from './errors.ts';
import { CHUNKS_PREFIX, INDEX_PREFIX, restorePointKey } from './format/layout.ts';
import { initRepository, openRepository, openRepositoryWithRecoveryKey, type Repository } from './repository.ts';
import { CHEAP_KDF, makeRepository, TEST_CHUNK, TEST_PASSPHRASE } from './testing/fixtures.ts';
import { asAsync, fullExtents, makeImage } from './testing/test-image.ts';

const h = useHarness();
const SIZE = 512 * 1024;
const HOUR = 3_600_000;

describe('locked restore points on the directory backend', () => {
  let clock = Date.now();
  let raw: DirectoryBackend;
  let backend: Backend;
  let repo: Repository;
  const image = makeImage(SIZE, 21);
  let locked = '';
  let unlocked = '';
  let until: Date;
  let firstReport = 0;

  const write = async (seed: number) => (await repo.writeRestorePoint({
    vm: { id: 'vm', name: 'vm' },
    disks: [{ name: 'd', sizeBytes: SIZE, extents: asAsync(fullExtents(seed === 21 ? image : makeImage(SIZE, seed), TEST_CHUNK)) }],
  })).restorePointId;
  const readBack = async (r: Repository, id: string) => Buffer.from(await (await r.openDisk(id, 'd')).read(0, SIZE));

  beforeAll(async () => {
    raw = new DirectoryBackend(await h.tmpDir('cairn-locked-'), { createRoot: true, fsync: false, now: () => clock });
    // The production wrappers in front, as the services use it.
    backend = wrapBackend(raw, { retry: { attempts: 2, baseDelayMs: 1 } });
    repo = await makeRepository(h, backend);
    locked = await write(21);
    unlocked = await write(22);
    until = new Date(clock + 30 * 24 * HOUR);
  });

  it('locks the manifest, index pages and chunks; an extension is reported, nothing is re-locked needlessly', async () => {
    const report = await repo.lockRestorePoint(locked, until);
    firstReport = report.objectsLocked; // chunks + pages + manifest
    expect(report.objectsAlreadyLocked).toBe(0);
    expect(await repo.restorePointLockedUntil(locked)).toEqual(until);
    expect(await repo.restorePointLockedUntil(unlocked)).toBeUndefined();
    const again = await repo.lockRestorePoint(locked, new Date(until.getTime() - HOUR)); // never shortens
    expect(again.objectsLocked).toBe(0);
    expect(await repo.restorePointLockedUntil(locked)).toEqual(until);
  });

  it('the repository refuses to delete it with RestorePointLockedError naming the restore point and the end of the lock', async () => {
    const err = await repo.deleteRestorePoint(locked).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RestorePointLockedError);
    expect((err as RestorePointLockedError).restorePointId).toBe(locked);
    expect((err as RestorePointLockedError).retainUntil).toEqual(until);
    expect((err as Error).message).toContain(`locked until ${until.toISOString()}`);
    expect((await repo.listRestorePoints()).map((r) => r.id)).toContain(locked);
  });

  it('the backend itself refuses delete and overwrite of every object the restore point needs, and of the lock records', async () => {
    const chunks: string[] = [];
    for await (const o of raw.list(CHUNKS_PREFIX)) chunks.push(o.key);
    const pages: string[] = [];
    for await (const o of raw.list(INDEX_PREFIX)) pages.push(o.key);
    const lockedChunks: string[] = [];
    for (const k of chunks) if (await raw.exists(lockKeyOf(k))) lockedChunks.push(k);
    const lockedPages: string[] = [];
    for (const k of pages) if (await raw.exists(lockKeyOf(k))) lockedPages.push(k);
    expect(lockedChunks.length).toBeGreaterThan(0);
    expect(lockedPages.length).toBeGreaterThan(0);
    expect(lockedChunks.length + lockedPages.length + 1).toBe(firstReport);

    const manifest = restorePointKey(locked);
    const before = await raw.get(manifest);
    for (const b of [raw, backend]) {
      await expect(b.delete(manifest)).rejects.toThrow(ObjectLockedError);
      await expect(b.put(manifest, Buffer.from('overwritten'))).rejects.toThrow(ObjectLockedError);
      await expect(b.delete(lockedChunks[0]!)).rejects.toThrow(/locked until/);
      await expect(b.put(lockedChunks[1]!, Buffer.from('junk'))).rejects.toThrow(ObjectLockedError);
      await expect(b.delete(lockedPages[0]!)).rejects.toThrow(ObjectLockedError);
      // The lock record: not deletable, not shortenable, not replaceable by something else.
      await expect(b.delete(lockKeyOf(manifest))).rejects.toThrow(ObjectLockedError);
      await expect(b.put(lockKeyOf(manifest), encodeLockRecord(manifest, new Date(clock)))).rejects.toThrow(/cannot be shortened/);
      await expect(b.put(lockKeyOf(manifest), Buffer.from('{}'))).rejects.toThrow(/not a lock record/);
      await expect(b.put(lockKeyOf(manifest), encodeLockRecord('restore-points/other', until))).rejects.toThrow(/not a lock record/);
    }
    // put ifNotExists never overwrites, so it stays allowed (dedup writes of the same chunk).
    expect(await backend.put(lockedChunks[0]!, Buffer.from('x'), { ifNotExists: true })).toBe(false);
    expect(Buffer.from(await raw.get(manifest)).equals(Buffer.from(before))).toBe(true);
  });

  it('garbage collection after deleting the other restore point leaves the locked one whole', async () => {
    await repo.deleteRestorePoint(unlocked);
    await repo.gc({ graceMs: 0 });
    const report = await repo.verify();
    expect(report.damaged).toEqual([]);
    expect((await readBack(repo, locked)).equals(Buffer.from(image))).toBe(true);
  });

  it('key rotation still works on a locked repository (keys are not locked)', async () => {
    await repo.rotateKey({ passphrase: TEST_PASSPHRASE, kdf: { N: 1024, r: 8, p: 1 } });
    const again = await openRepository(backend, { passphrase: TEST_PASSPHRASE });
    h.onClose(() => again.close());
    expect((await readBack(again, locked)).equals(Buffer.from(image))).toBe(true);
  });

  it('once the lock has ended, the restore point can be deleted and its lock records removed', async () => {
    clock = until.getTime() + 1;
    expect(await repo.restorePointLockedUntil(locked, new Date(clock))).toBeUndefined();
    await repo.deleteRestorePoint(locked);
    await backend.delete(lockKeyOf(restorePointKey(locked)));
    expect((await repo.listRestorePoints()).map((r) => r.id)).not.toContain(locked);
  });
});

describe('deleting a whole repository', () => {
  it('is refused while a lock is live; afterwards it leaves only a marker that every later open and init reports', async () => {
    const dir = await h.tmpDir('cairn-destroy-');
    const backend = new DirectoryBackend(dir, { createRoot: true, fsync: false });
    const repo = await makeRepository(h, backend);
    const id = (await repo.writeRestorePoint({
      vm: { id: 'vm', name: 'vm' }, disks: [{ name: 'd', sizeBytes: SIZE, extents: asAsync(fullExtents(makeImage(SIZE, 61), TEST_CHUNK)) }],
    })).restorePointId;
    const recoveryKey = repo.exportRecoveryKey();
    const until = new Date(Date.now() + 1500); // real time: the deletion reads the wall clock
    await repo.lockRestorePoint(id, until);
    const refused = await repo.destroy({ requestedBy: 'bob', approvedBy: 'alice' }).then(() => undefined, (e: unknown) => e);
    expect(refused).toBeInstanceOf(RepositoryLockedError);
    expect((refused as Error).message).toContain(until.toISOString());
    expect((await repo.listRestorePoints()).map((p) => p.id)).toEqual([id]);

    await new Promise((r) => setTimeout(r, Math.max(0, until.getTime() - Date.now()) + 50));
    const report = await repo.destroy({ approvalId: 'a-1', requestedBy: 'bob', approvedBy: 'alice' });
    expect(report.restorePointsDeleted).toBe(1);
    const left = (await readdir(dir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name);
    expect(left).toEqual(['deleted']);
    for (const reopen of [
      () => openRepository(backend, { passphrase: TEST_PASSPHRASE }),
      () => openRepositoryWithRecoveryKey(backend, recoveryKey),
      () => initRepository(backend, { passphrase: TEST_PASSPHRASE, kdf: CHEAP_KDF }),
    ]) {
      const e = await reopen().then(() => undefined, (err: unknown) => err);
      expect(e).toBeInstanceOf(RepositoryDeletedError);
      expect((e as Error).message).toMatch(/was deleted at .* \(requested by bob, approved by alice, approval a-1\)/);
    }
    // The operator may reuse the location on purpose, by removing the marker.
    await rm(join(dir, 'deleted'));
    await expect(initRepository(backend, { passphrase: TEST_PASSPHRASE, kdf: CHEAP_KDF })).resolves.toBeDefined();
  });
});
