// Drop-behind (drop-behind.ts): the restore target's written-back pages leave the page cache
// through WASI's fd_advise, on a real file system, and no byte is ever lost by it (dirty pages
// are written back, not dropped). `fincore` (util-linux) reads what of a file is cached.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { useHarness } from '@cairn/testing';
import { DirectoryBackend } from '../backend/directory.adapter.ts';
import { makeRepository, TEST_CHUNK } from '../testing/fixtures.ts';
import { asAsync, fullExtents, makeImage } from '../testing/test-image.ts';
import { openDropBehind } from './drop-behind.ts';

const run = promisify(execFile);
const h = useHarness();
const MiB = 1024 * 1024;
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** Bytes of `path` in the page cache. */
async function cached(path: string): Promise<number> {
  const { stdout } = await run('fincore', ['--bytes', '--noheadings', '--output', 'RES', path]);
  return Number(stdout.trim());
}

describe('drop-behind of a restore target', () => {
  let dir = '';
  /** tmpfs keeps its pages whatever one advises: the cache checks only mean something on a disk's file system. */
  let onDisk = false;

  beforeAll(async () => {
    dir = await h.tmpDir('cairn-drop-');
    const { stdout } = await run('stat', ['-f', '-c', '%T', dir]);
    onDisk = !['tmpfs', 'ramfs'].includes(stdout.trim());
  });

  it('drops a written-back range from the page cache and keeps every byte', async () => {
    const path = join(dir, 'synced.raw');
    const data = randomBytes(16 * MiB);
    const fh = await open(path, 'w', 0o600);
    await fh.write(data, 0, data.length, 0);
    await fh.datasync();
    const d = await openDropBehind(path);
    if (!('drop' in d)) throw new Error(`drop-behind unavailable: ${d.unavailable}`);
    expect(d.drop(0, 8 * MiB)).toBe(true);
    if (onDisk) {
      const left = await cached(path);
      expect(left).toBeLessThanOrEqual(8 * MiB + 64 * 1024); // the second half stays (a folio at the edge may too)
      expect(left).toBeGreaterThan(0);
    }
    expect(d.drop(0, 0)).toBe(true); // length 0: to the end
    if (onDisk) expect(await cached(path)).toBeLessThan(256 * 1024);
    d.close();
    await fh.close();
    expect(sha(await readFile(path))).toBe(sha(data));
  });

  it('never drops what is not yet written back: dirty pages are only started on their way', async () => {
    const path = join(dir, 'dirty.raw');
    const data = randomBytes(8 * MiB);
    await writeFile(path, data, { mode: 0o600 });
    const d = await openDropBehind(path);
    if (!('drop' in d)) throw new Error(`drop-behind unavailable: ${d.unavailable}`);
    expect(d.drop(0, 0)).toBe(true);
    d.close();
    expect(sha(await readFile(path))).toBe(sha(data));
  });

  it('says why when it cannot open the file, and the caller writes as before', async () => {
    const d = await openDropBehind(join(dir, 'no-such-file.raw'));
    expect('unavailable' in d && d.unavailable).toMatch(/errno/);
  });

  it('a restore larger than the write-back step leaves less than its size cached, with the same bytes', async () => {
    const SIZE = 128 * MiB; // 40 % zeros: ~77 MiB written, two 32 MiB write-backs
    const image = makeImage(SIZE, 11);
    const repo = await makeRepository(h, new DirectoryBackend(await h.tmpDir('cairn-drop-repo-'), { createRoot: true, fsync: false }));
    const { restorePointId } = await repo.writeRestorePoint({ vm: { id: 'v', name: 'v' }, disks: [{ name: 'sda', sizeBytes: SIZE, extents: asAsync(fullExtents(image, TEST_CHUNK)) }] });
    const target = join(dir, 'restored.raw');
    const r = await repo.restoreDisk(restorePointId, 'sda', target);
    expect(r.dropBehindUnavailable).toBeUndefined();
    expect(sha(await readFile(target))).toBe(sha(image));
    // Read back above, so measure a second restore's cache before anything reads it.
    const again = join(dir, 'restored-again.raw');
    await repo.restoreDisk(restorePointId, 'sda', again);
    if (onDisk) expect(await cached(again)).toBeLessThan(48 * MiB);
    expect(sha(await readFile(again))).toBe(sha(image));
  }, 120_000);
});
