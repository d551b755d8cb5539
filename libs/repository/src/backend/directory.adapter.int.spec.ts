import { chmod, mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useHarness } from '@cairn/testing';
import { BackendError, NotFoundError } from './backend.ts';
import { DirectoryBackend } from './directory.adapter.ts';
import { backendContract, listKeys } from './testing/backend.contract.ts';

const h = useHarness();

backendContract('DirectoryBackend', async () => new DirectoryBackend(await h.tmpDir('cairn-dir-backend-')));

describe('DirectoryBackend specifics', () => {
  it('leaves no temp files behind and never lists them', async () => {
    const root = await h.tmpDir();
    const b = new DirectoryBackend(root);
    await b.put('a/b/c', new Uint8Array([1, 2, 3]));
    await b.put('a/b/c', new Uint8Array([4]), { ifNotExists: true });
    await b.put('a/b/c', new Uint8Array([5]));
    expect(await readdir(join(root, 'a', 'b'))).toEqual(['c']);
    // Debris of a crashed put: present on disk, invisible to list.
    await writeFile(join(root, 'a', 'b', '.tmp~deadbeef'), 'partial');
    expect(await listKeys(b, '')).toEqual(['a/b/c']);
  });

  it('a deferSync put is named only at flush(), once its data is durable', async () => {
    const root = await h.tmpDir();
    const b = new DirectoryBackend(root);
    await b.put('d/x/old', new Uint8Array([9]));
    expect(await b.put('d/x/old', new Uint8Array([8]), { deferSync: true, ifNotExists: true })).toBe(false);
    expect(await b.put('d/x/one', new Uint8Array([1]), { deferSync: true, ifNotExists: true })).toBe(true);
    expect(await b.put('d/y/two', new Uint8Array([3]), { deferSync: true })).toBe(true);
    // Written, not yet named: invisible to get and list, as after a crash at this point.
    await expect(b.get('d/x/one')).rejects.toBeInstanceOf(NotFoundError);
    expect(await listKeys(b, 'd/')).toEqual(['d/x/old']);
    await b.flush();
    expect([...(await b.get('d/x/one'))]).toEqual([1]);
    expect([...(await b.get('d/x/old'))]).toEqual([9]);
    expect(await listKeys(b, 'd/')).toEqual(['d/x/old', 'd/x/one', 'd/y/two']);
    await b.flush(); // nothing left
    expect((await readdir(join(root, 'd', 'x'))).sort()).toEqual(['old', 'one']); // no temp files left
  });

  it('refuses to write into a missing root unless asked to create it', async () => {
    const parent = await h.tmpDir();
    const missing = new DirectoryBackend(join(parent, 'not-mounted'));
    const e = await missing.put('k', new Uint8Array([1])).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(BackendError);
    expect((e as BackendError).transient).toBe(false);
    expect((e as Error).message).toMatch(/does not exist: check that the volume is mounted/);
    expect(await listKeys(missing, '')).toEqual([]);

    const created = new DirectoryBackend(join(parent, 'fresh', 'repo'), { createRoot: true });
    await created.put('x/y', new Uint8Array([7]));
    expect([...(await created.get('x/y'))]).toEqual([7]);
  });

  it('reports a key used both as object and as prefix clearly', async () => {
    const b = new DirectoryBackend(await h.tmpDir());
    await b.put('p/q', new Uint8Array([1]));
    for (const put of [() => b.put('p', new Uint8Array([2])), () => b.put('p', new Uint8Array([2]), { ifNotExists: true })]) {
      const e = await put().catch((err: unknown) => err);
      expect((e as Error).message).toMatch(/is a directory/);
    }
    await expect(b.get('p')).rejects.toBeInstanceOf(NotFoundError);
    const e = await b.put('p/q/r', new Uint8Array([3])).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(BackendError);
    expect((e as BackendError).transient).toBe(false);
  });

  it.skipIf(process.getuid?.() === 0)('maps EACCES to a permanent error naming the path and the fix (skipped as root)', async () => {
    const root = await h.tmpDir();
    await mkdir(join(root, 'locked'));
    const b = new DirectoryBackend(root);
    await b.put('locked/k', new Uint8Array([1]));
    await chmod(join(root, 'locked'), 0o500);
    h.onClose(() => chmod(join(root, 'locked'), 0o700));
    const e = await b.put('locked/k2', new Uint8Array([1])).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(BackendError);
    expect((e as BackendError).transient).toBe(false);
    expect((e as Error).message).toContain(join(root, 'locked'));
    expect((e as Error).message).toMatch(/check the owner and mode/);
  });
});
