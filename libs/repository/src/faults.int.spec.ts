// A backend failing the Nth write or timing out: with retries the restore point commits;
// without, it is not committed, the error says why, and no half restore point is visible.
import { afterEach, describe, expect, it } from 'vitest';
import { useHarness } from '@cairn/testing';
import { DirectoryBackend } from './backend/directory.adapter.ts';
import { withRetry } from './backend/retry.wrapper.ts';
import { Faults, withFaults } from './backend/testing/faults.ts';
import type { Backend } from './backend/backend.ts';
import { RestorePointWriteError } from './errors.ts';
import { openRepository, type Repository } from './repository.ts';
import { makeRepository, TEST_CHUNK, TEST_PASSPHRASE } from './testing/fixtures.ts';
import { asAsync, fullExtents, makeImage } from './testing/test-image.ts';

const h = useHarness();
const SIZE = 2 * 1024 * 1024;
const image = makeImage(SIZE, 51);
const disk = () => ({ name: 'sda', sizeBytes: SIZE, extents: asAsync(fullExtents(image, TEST_CHUNK)) });
const hangs: Faults[] = [];
afterEach(() => { for (const f of hangs.splice(0)) f.releaseHangs(); });

async function setup(retry?: { attempts: number; timeoutMs?: number }): Promise<{ faults: Faults; backend: Backend; repo: Repository; raw: DirectoryBackend }> {
  const raw = new DirectoryBackend(await h.tmpDir('cairn-faults-'), { createRoot: true, fsync: false });
  const faulty = withFaults(raw);
  hangs.push(faulty.faults);
  const backend = retry ? withRetry(faulty, { attempts: retry.attempts, baseDelayMs: 5, timeoutMs: retry.timeoutMs ?? 0 }) : faulty;
  const repo = await makeRepository(h, backend);
  return { faults: faulty.faults, backend, repo, raw };
}

async function keys(b: Backend, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const o of b.list(prefix)) out.push(o.key);
  return out;
}

async function expectNothingCommitted(repo: Repository, raw: Backend): Promise<void> {
  expect(await repo.listRestorePoints()).toEqual([]);
  expect(await keys(raw, 'restore-points/')).toEqual([]);
  expect(await keys(raw, 'pending/')).toEqual([]);
}

describe('backend faults during a write', () => {
  it('a failed flush of the chunks before the manifest leaves no restore point', async () => {
    const { backend, raw } = await setup();
    const failingFlush: Backend = { ...backend, flush: () => Promise.reject(new Error('flush injected')) };
    const repo = await openRepository(failingFlush, { passphrase: TEST_PASSPHRASE });
    h.onClose(() => repo.close());
    const err = await repo.writeRestorePoint({ vm: { id: 'v', name: 'vm-f' }, disks: [disk()] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RestorePointWriteError);
    expect((err as Error).message).toMatch(/not committed \(failed while making the chunks and index pages durable\): flush injected/);
    await expectNothingCommitted(repo, raw);
  });

  it('retries a failed chunk upload and commits', async () => {
    const { faults, repo } = await setup({ attempts: 3 });
    faults.failNthWrite(3, { key: /^chunks\// });
    const r = await repo.writeRestorePoint({ vm: { id: 'v', name: 'v' }, disks: [disk()] });
    const failedKey = faults.calls.filter((c) => c.op === 'put' && c.key.startsWith('chunks/'))[2]!.key;
    expect(faults.calls.filter((c) => c.op === 'put' && c.key === failedKey).length).toBe(2);
    expect(Buffer.from(await (await repo.openDisk(r.restorePointId, 'sda')).read(0, SIZE)).equals(Buffer.from(image))).toBe(true);
  });

  it('without retries a failed upload leaves no restore point, says why, and the next write succeeds', async () => {
    const { faults, repo, raw } = await setup();
    faults.failNthWrite(4, { key: /^chunks\//, transient: false });
    const err = await repo.writeRestorePoint({ vm: { id: 'v', name: 'vm-x' }, disks: [disk()] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RestorePointWriteError);
    expect((err as Error).message).toMatch(/of VM vm-x was not committed \(failed while writing disk sda\): upload of chunk [0-9a-f]{64} \(disk sda, offset \d+\) failed: .*injected/);
    await expectNothingCommitted(repo, raw);
    const r = await repo.writeRestorePoint({ vm: { id: 'v', name: 'vm-x' }, disks: [disk()] });
    expect(Buffer.from(await (await repo.openDisk(r.restorePointId, 'sda')).read(0, SIZE)).equals(Buffer.from(image))).toBe(true);
    expect((await repo.verify()).ok).toBe(true);
  });

  it("a failed upload of the chunk that an incremental's slots share (a pack) commits nothing; the parent stays whole", async () => {
    const { faults, repo, raw } = await setup();
    const full = await repo.writeRestorePoint({ vm: { id: 'v', name: 'vm-p' }, disks: [disk()] });
    // A quarter of each of four slots changed: their bytes go into one shared chunk.
    const changed = Uint8Array.from(image);
    const q = TEST_CHUNK / 4;
    const extents = [1, 5, 9, 13].map((s) => {
      const o = s * TEST_CHUNK + q;
      changed.fill(0xab, o, o + q);
      return { offset: o, data: changed.slice(o, o + q) };
    });
    const write = () => repo.writeRestorePoint({
      vm: { id: 'v', name: 'vm-p' }, parentId: full.restorePointId,
      disks: [{ name: 'sda', sizeBytes: SIZE, partial: true, extents: asAsync(extents) }],
    });
    faults.failNthWrite(1, { key: /^chunks\//, transient: false });
    const err = await write().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RestorePointWriteError);
    expect((err as Error).message).toMatch(/upload of chunk [0-9a-f]{64} \(disk sda, offset \d+\) failed: .*injected/);
    expect((await repo.listRestorePoints()).map((x) => x.id)).toEqual([full.restorePointId]);
    expect(await keys(raw, 'pending/')).toEqual([]);
    expect(Buffer.from(await (await repo.openDisk(full.restorePointId, 'sda')).read(0, SIZE)).equals(Buffer.from(image))).toBe(true);
    const r = await write();
    expect((await repo.getManifest(r.restorePointId)).disks[0]!.stats).toMatchObject({ chunksNew: 1, slotsPieced: 4 });
    expect(Buffer.from(await (await repo.openDisk(r.restorePointId, 'sda')).read(0, SIZE)).equals(Buffer.from(changed))).toBe(true);
    expect((await repo.verify()).ok).toBe(true);
  });

  it('a hung upload times out: retried it commits, out of attempts it does not', async () => {
    const a = await setup({ attempts: 3, timeoutMs: 300 });
    a.faults.add({ ops: ['put'], key: /^chunks\//, nth: 2, times: 1, action: { kind: 'hang' } });
    const ok = await a.repo.writeRestorePoint({ vm: { id: 'v', name: 'v' }, disks: [disk()] });
    expect((await a.repo.listRestorePoints()).map((x) => x.id)).toEqual([ok.restorePointId]);

    const b = await setup({ attempts: 1, timeoutMs: 300 });
    b.faults.add({ ops: ['put'], key: /^chunks\//, nth: 2, times: 1, action: { kind: 'hang' } });
    const err = await b.repo.writeRestorePoint({ vm: { id: 'v', name: 'v' }, disks: [disk()] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RestorePointWriteError);
    expect((err as Error).message).toMatch(/timed out after 300 ms/);
    await expectNothingCommitted(b.repo, b.raw);
  });

  it('a failed manifest write commits nothing; a lost answer to a landed one is not a failure', async () => {
    const a = await setup();
    a.faults.failNthWrite(1, { key: /^restore-points\//, transient: false });
    await expect(a.repo.writeRestorePoint({ vm: { id: 'v', name: 'v' }, disks: [disk()] })).rejects.toThrow(/failed while committing the manifest/);
    await expectNothingCommitted(a.repo, a.raw);

    const b = await setup({ attempts: 3 });
    b.faults.failNthWrite(1, { key: /^restore-points\//, afterCall: true });
    const r = await b.repo.writeRestorePoint({ vm: { id: 'v', name: 'v' }, disks: [disk()] });
    expect((await b.repo.listRestorePoints()).map((x) => x.id)).toEqual([r.restorePointId]);
  });

  it('a writer never commits a chunk whose upload by a concurrent writer failed', async () => {
    const { faults, repo, raw } = await setup();
    faults.failNthWrite(2, { key: /^chunks\//, transient: false });
    const results = await Promise.allSettled([
      repo.writeRestorePoint({ vm: { id: 'a', name: 'a' }, disks: [disk()] }),
      repo.writeRestorePoint({ vm: { id: 'b', name: 'b' }, disks: [disk()] }),
    ]);
    expect(results.filter((r) => r.status === 'rejected')).toHaveLength(1);
    const ok = results.find((r) => r.status === 'fulfilled')!;
    const id = (ok as PromiseFulfilledResult<{ restorePointId: string }>).value.restorePointId;
    expect((await repo.listRestorePoints()).map((x) => x.id)).toEqual([id]);
    expect((await repo.verify()).ok).toBe(true);
    expect(await keys(raw, 'pending/')).toEqual([]);
  });
});
