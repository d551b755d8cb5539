// The kept shell that runs `sync --file-system` for the directory backend: real /bin/sh, real
// `sync`, and fake ones on PATH for the failures.
import { chmod, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { useHarness } from '@cairn/testing';
import { SyncfsHelper } from './syncfs-helper.ts';

const h = useHarness();
const PATH = process.env['PATH'];
afterEach(() => { process.env['PATH'] = PATH; });

describe('SyncfsHelper', () => {
  it('runs `sync --file-system` once per call, in order, with the PATH of each call, and exits at close', async () => {
    const root = await h.tmpDir();
    const fds = async () => (await readdir('/proc/self/fd')).length;
    const before = await fds();
    const s = new SyncfsHelper(root);
    expect(await s.run()).toEqual({ code: 0, stderr: '' });
    const bin = await h.tmpDir();
    await writeFile(join(bin, 'sync'), '#!/bin/sh\necho "sync: error syncing $2:\n Input/output error" >&2\nexit 1\n');
    await chmod(join(bin, 'sync'), 0o755);
    process.env['PATH'] = `${bin}:${PATH}`;
    const [a, b] = await Promise.all([s.run(), s.run()]);
    expect(a).toEqual({ code: 1, stderr: `sync: error syncing ${root}: Input/output error` });
    expect(b).toEqual(a);
    process.env['PATH'] = '/nonexistent';
    expect((await s.run()).code).toBe(127); // not found
    process.env['PATH'] = PATH;
    expect(await s.run()).toEqual({ code: 0, stderr: '' });
    await s.close();
    expect(await fds()).toBe(before);
    // Used again after close: a new shell.
    expect((await s.run()).code).toBe(0);
    await s.close();
  });
});
