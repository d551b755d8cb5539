// DirectoryBackend on a file system without hard links (some FUSE/SMB mounts): link() fails
// with EPERM, and ifNotExists falls back to check-then-rename instead of reporting a
// permission problem.
import { describe, expect, it, vi } from 'vitest';
import { useHarness } from '@cairn/testing';
import { DirectoryBackend } from './directory.adapter.ts';

vi.mock('node:fs/promises', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs/promises')>();
  return {
    ...fs,
    link: async () => {
      throw Object.assign(new Error('EPERM: operation not permitted, link'), { code: 'EPERM' });
    },
  };
});

const h = useHarness();

describe('DirectoryBackend without hard links', () => {
  it('still honours ifNotExists', async () => {
    const { link } = await import('node:fs/promises');
    await expect(link('/nonexistent-a', '/nonexistent-b')).rejects.toThrow(/EPERM/); // the mock is live
    const b = new DirectoryBackend(await h.tmpDir());
    expect(await b.put('k/1', new Uint8Array([1]), { ifNotExists: true })).toBe(true);
    expect(await b.put('k/1', new Uint8Array([2]), { ifNotExists: true })).toBe(false);
    expect([...(await b.get('k/1'))]).toEqual([1]);
  });
});
