import { mkdir, readdir, readlink, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useHarness } from '@cairn/testing';
import { DirectoryBackend } from './directory.adapter.ts';
import { DirectorySyncs } from './directory-syncs.ts';

const h = useHarness();

/** What this process's descriptors name (a removed directory reads "<path> (deleted)"). */
async function openPaths(): Promise<string[]> {
  const out: string[] = [];
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => undefined);
    if (target) out.push(target);
  }
  return out;
}

describe('DirectorySyncs (kept directory descriptors for fsync)', () => {
  it('opens a directory once for many syncs, keeps at most `max`, and closes what it drops and everything at close', async () => {
    const root = await h.tmpDir();
    const dirs = Array.from({ length: 6 }, (_, i) => join(root, `d${i}`));
    for (const d of dirs) await mkdir(d);
    const syncs = new DirectorySyncs(2);
    const kept = async () => (await openPaths()).filter((p) => p.startsWith(root)).length;
    await syncs.sync(dirs[0] as string);
    await syncs.sync(dirs[0] as string);
    expect(syncs.size).toBe(1);
    expect(await kept()).toBe(1);
    // Many at once over more directories than it keeps: every sync completes, none on a closed descriptor.
    await Promise.all(Array.from({ length: 60 }, (_, i) => syncs.sync(dirs[i % dirs.length] as string)));
    expect(syncs.size).toBe(2);
    await new Promise((r) => setTimeout(r, 50)); // closes of dropped descriptors finish
    expect(await kept()).toBe(2);
    await syncs.close();
    expect(syncs.size).toBe(0);
    expect(await kept()).toBe(0);
  });

  it('callers during a running fsync share the next one, which starts after all of them called', async () => {
    const root = await h.tmpDir();
    const starts: number[] = [];
    let seq = 0;
    const syncs = new DirectorySyncs(512, async () => {
      starts.push(++seq);
      await new Promise((r) => setTimeout(r, 30));
    });
    h.onClose(() => syncs.close());
    const first = syncs.sync(root);
    await new Promise((r) => setTimeout(r, 10)); // the first fsync runs
    const calledAt: number[] = [];
    const later = Array.from({ length: 9 }, () => { calledAt.push(seq); return syncs.sync(root); });
    await Promise.all([first, ...later]);
    expect(starts).toEqual([1, 2]); // ten callers, two fsyncs
    // Each later caller called while fsync 1 ran and was answered by fsync 2, begun after it.
    expect(calledAt.every((s) => s === 1)).toBe(true);
    await syncs.sync(root);
    expect(starts).toEqual([1, 2, 3]); // nothing running: a caller gets its own
  });

  it('a missing directory fails the sync and keeps nothing', async () => {
    const root = await h.tmpDir();
    const syncs = new DirectorySyncs();
    await expect(syncs.sync(join(root, 'missing'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(syncs.size).toBe(0);
  });

  it('after `forget`, a directory created again at the same path is synced through a descriptor of the new one', async () => {
    const root = await h.tmpDir();
    const dir = join(root, 'x');
    await mkdir(dir);
    const syncs = new DirectorySyncs();
    h.onClose(() => syncs.close());
    await syncs.sync(dir);
    await rm(dir, { recursive: true });
    await mkdir(dir);
    expect(await openPaths()).toContain(`${dir} (deleted)`); // the kept one names the removed directory
    syncs.forget(dir);
    await syncs.sync(dir);
    await new Promise((r) => setTimeout(r, 50));
    const paths = await openPaths();
    expect(paths).not.toContain(`${dir} (deleted)`);
    expect(paths).toContain(dir);
  });

  it('the directory backend forgets a fan-out directory it creates again, so the new name is synced in the new directory', async () => {
    const root = await h.tmpDir();
    const b = new DirectoryBackend(root);
    h.onClose(() => b.close());
    await b.put('chunks/ab/one', new Uint8Array([1]), { deferSync: true, ifNotExists: true });
    await b.flush();
    // Removed behind the backend's back (nothing in Cairn does this; an operator might).
    await rm(join(root, 'chunks', 'ab'), { recursive: true });
    await b.put('chunks/ab/two', new Uint8Array([2]), { deferSync: true, ifNotExists: true });
    await b.flush();
    await b.put('restore-points/m', new Uint8Array([3]), { ifNotExists: true });
    await new Promise((r) => setTimeout(r, 50));
    const paths = await openPaths();
    expect(paths.filter((p) => p.startsWith(root) && p.endsWith('(deleted)'))).toEqual([]);
    expect(paths).toContain(join(root, 'chunks', 'ab'));
    expect(paths).toContain(join(root, 'restore-points'));
    expect([...(await b.get('chunks/ab/two'))]).toEqual([2]);
    await b.close();
    expect((await openPaths()).filter((p) => p.startsWith(root))).toEqual([]);
  });
});
