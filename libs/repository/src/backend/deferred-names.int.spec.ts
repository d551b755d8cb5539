// Deferred puts of the directory backend against the real file system and the real
// `sync --file-system`; a failing or missing `sync` is put first on PATH to show what
// happens when the data cannot be made durable, or the tool is too old.
import { openSync } from 'node:fs';
import { access, chmod, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { useHarness } from '@cairn/testing';
import { NotFoundError, type FlushGroup } from './backend.ts';
import { DirectoryBackend } from './directory.adapter.ts';
import { DeferredNames, type DeferredName } from './deferred-names.ts';

const h = useHarness();
const PATH = process.env['PATH'];
afterEach(() => { process.env['PATH'] = PATH; });

/** A `sync` on PATH that prints `stderr` and exits 1. */
async function fakeSync(stderr: string): Promise<void> {
  const bin = await h.tmpDir();
  await writeFile(join(bin, 'sync'), `#!/bin/sh\necho '${stderr}' >&2\nexit 1\n`);
  await chmod(join(bin, 'sync'), 0o755);
  process.env['PATH'] = `${bin}:${PATH}`;
}

/** The backend with every batch, however small, made durable by `sync --file-system`. */
function syncfsAlways(b: DirectoryBackend, root: string): DirectoryBackend {
  (b as unknown as { deferred: DeferredNames }).deferred = new DeferredNames({ root, sync: true, syncfsFrom: 1, mapError: (e) => e as Error });
  return b;
}

describe('deferred puts (directory backend)', () => {
  it('a failed file-system sync fails the flush of every group in the batch and names nothing', async () => {
    const root = await h.tmpDir();
    const b = syncfsAlways(new DirectoryBackend(root), root);
    const a: FlushGroup = {};
    const c: FlushGroup = {};
    await b.put('chunks/aa/1', new Uint8Array([1]), { deferSync: true, ifNotExists: true, flushGroup: a });
    await b.put('chunks/bb/2', new Uint8Array([2]), { deferSync: true, ifNotExists: true, flushGroup: c });
    await fakeSync('sync: error syncing: Input/output error');
    await expect(b.flush(a)).rejects.toThrow(/Input\/output error/);
    await expect(b.flush(c)).rejects.toThrow(/Input\/output error/);
    await expect(b.get('chunks/aa/1')).rejects.toBeInstanceOf(NotFoundError);
    expect(await readdir(join(root, 'chunks', 'aa'))).toEqual([]); // temp removed, no name
    // Later writers are not affected.
    process.env['PATH'] = PATH;
    const d: FlushGroup = {};
    await b.put('chunks/aa/1', new Uint8Array([1]), { deferSync: true, ifNotExists: true, flushGroup: d });
    await b.flush(d);
    expect([...(await b.get('chunks/aa/1'))]).toEqual([1]);
  });

  it('without `sync --file-system` it syncs each file and directory instead', async () => {
    const root = await h.tmpDir();
    const b = syncfsAlways(new DirectoryBackend(root), root);
    await fakeSync("sync: unrecognized option '--file-system'");
    await b.put('p/1', new Uint8Array([5]), { deferSync: true });
    await b.flush();
    expect([...(await b.get('p/1'))]).toEqual([5]);
  });

  it('a small batch is synced file by file: no `sync` process is started for it', async () => {
    const root = await h.tmpDir();
    const b = new DirectoryBackend(root);
    // A `sync` that would fail: the flush of a batch of two files never runs it.
    await fakeSync('sync: error syncing: Input/output error');
    await b.put('chunks/aa/1', new Uint8Array([1]), { deferSync: true, ifNotExists: true });
    await b.put('chunks/bb/2', new Uint8Array([2]), { deferSync: true, ifNotExists: true });
    await b.flush();
    expect([...(await b.get('chunks/aa/1'))]).toEqual([1]);
    expect([...(await b.get('chunks/bb/2'))]).toEqual([2]);
  });

  it('a batch the size of an incremental (700 puts, below a full batch) is synced file by file: no `sync` process', async () => {
    const root = await h.tmpDir();
    const b = new DirectoryBackend(root);
    await fakeSync('sync: error syncing: Input/output error');
    for (let i = 0; i < 700; i++) await b.put(`chunks/${(i % 256).toString(16).padStart(2, '0')}/${i}`, new Uint8Array([i & 255]), { deferSync: true, ifNotExists: true });
    await b.flush();
    for (const i of [0, 255, 699]) expect([...(await b.get(`chunks/${(i % 256).toString(16).padStart(2, '0')}/${i}`))]).toEqual([i & 255]);
    await b.close();
  });

  it('a small batch fsyncs through the descriptors its puts kept open, and closes every one; past syncfsFrom none is kept', async () => {
    const root = await h.tmpDir();
    const b = new DirectoryBackend(root, { syncfsFrom: 64 });
    const fds = async () => (await readdir('/proc/self/fd')).length;
    const before = await fds();
    for (let i = 0; i < 3; i++) await b.put(`chunks/a${i}/x`, new Uint8Array([i]), { deferSync: true, ifNotExists: true });
    expect(await fds()).toBe(before + 3);
    await b.flush();
    // The three files' descriptors are closed; those of their three directories are kept for
    // the next directory fsyncs (directory-syncs.ts) until the backend is closed.
    expect(await fds()).toBe(before + 3);
    await b.close();
    expect(await fds()).toBe(before);
    for (let i = 0; i < 3; i++) expect([...(await b.get(`chunks/a${i}/x`))]).toEqual([i]);
    // A large batch (synced with one `sync --file-system`) holds at most syncfsFrom (64) open.
    for (let i = 0; i < 100; i++) await b.put(`k/${i}`, new Uint8Array([i]), { deferSync: true, ifNotExists: true });
    expect(await fds()).toBe(before + 64);
    await b.flush();
    // The data: one `sync --file-system` through the sync helper's shell (its stdin and stdout
    // pipes stay open until close); the names: the one directory's fsync, its descriptor kept.
    expect(await fds()).toBe(before + 1 + 2);
    expect((await readdir(join(root, 'k'))).length).toBe(100);
    await b.close();
    expect(await fds()).toBe(before);
  });

  it('starts batches by itself, so memory stays bounded, and a flush waits for all of them', async () => {
    const root = await h.tmpDir();
    const names = new DeferredNames({ root, sync: true, batchSize: 4, mapError: (e) => e as Error });
    const b = new DirectoryBackend(root);
    (b as unknown as { deferred: DeferredNames }).deferred = names;
    for (let i = 0; i < 23; i++) await b.put(`k/${i}`, new Uint8Array([i]), { deferSync: true, ifNotExists: true });
    const seen = (await readdir(join(root, 'k'))).filter((n) => !n.includes('~')).length;
    expect(seen).toBeGreaterThan(0); // earlier batches were named without a flush
    await b.flush();
    expect((await readdir(join(root, 'k'))).length).toBe(23);
  });

  it('puts of a syncEarly group are fsynced as they are queued and named once durable, before the flush; an early fsync that fails fails the flush and names nothing', async () => {
    const root = await h.tmpDir();
    const names = new DeferredNames({ root, sync: true, mapError: (e) => e as Error });
    const entry = async (key: string, group: FlushGroup, fdOf?: string): Promise<DeferredName> => {
      const temp = join(root, `${key}.tmp~`);
      await writeFile(temp, key);
      const n: DeferredName = { temp, path: join(root, key), dir: root, key, keepExisting: true, group, fd: openSync(fdOf ?? temp, 'r') };
      await names.add(n);
      return n;
    };
    const early: FlushGroup = { syncEarly: true };
    const queued = [];
    for (let i = 0; i < 6; i++) queued.push(await entry(`k${i}`, early));
    // Started at the put, before any flush (two at a time; the rest when those end or at the flush).
    expect(queued[0]!.synced).toBeDefined();
    // Named as soon as its own fsync ended, without a flush: the name, and no temp file.
    expect(await queued[0]!.named).toBe(root);
    expect(await readFile(queued[0]!.path, 'utf8')).toBe('k0');
    await expect(access(queued[0]!.temp)).rejects.toThrow(/ENOENT/);
    const plain = await entry('plain', {});
    expect(plain.synced).toBeUndefined();
    await names.flush(early);
    for (const n of [...queued, plain]) {
      expect(await readFile(n.path, 'utf8')).toBe(n.key);
      expect(n.fd).toBeUndefined();
    }
    // fsync(2) of /dev/null fails (EINVAL): the put's data counts as not durable.
    const bad: FlushGroup = { syncEarly: true };
    const n = await entry('bad', bad, '/dev/null');
    expect(n.synced).toBeDefined();
    expect(await n.named).toBeUndefined();
    await expect(access(n.path)).rejects.toThrow(/ENOENT/);
    await expect(names.flush(bad)).rejects.toThrow(/EINVAL|invalid argument/i);
    await expect(access(n.path)).rejects.toThrow(/ENOENT/);
    await expect(access(n.temp)).rejects.toThrow(/ENOENT/);
  });

  it('a full\'s stream of puts starts a background `sync --file-system` every 256 puts, through one kept shell, before any batch or flush', async () => {
    const root = await h.tmpDir();
    const bin = await h.tmpDir();
    const log = join(bin, 'calls');
    // A `sync` that records each call and its parent (the kept shell, not this process).
    await writeFile(join(bin, 'sync'), `#!/bin/sh\necho "$PPID $*" >> ${log}\n`);
    await chmod(join(bin, 'sync'), 0o755);
    process.env['PATH'] = `${bin}:${PATH}`;
    const b = new DirectoryBackend(root);
    const key = (i: number) => `chunks/${(i % 256).toString(16).padStart(2, '0')}/${i}`;
    for (let i = 0; i < 600; i++) await b.put(key(i), new Uint8Array([i & 255]), { deferSync: true, ifNotExists: true });
    await new Promise((r) => setTimeout(r, 200));
    const calls = (await readFile(log, 'utf8')).trim().split('\n');
    // Two kicks (at 256 and 512 puts), no batch yet (1024), no name yet.
    expect(calls).toHaveLength(2);
    for (const c of calls) expect(c).toMatch(new RegExp(`^\\d+ --file-system ${root}$`));
    expect(new Set(calls.map((c) => c.split(' ')[0])).size).toBe(1); // one shell ran both
    expect(calls[0]!.split(' ')[0]).not.toBe(String(process.pid));
    await expect(access(join(root, key(0)))).rejects.toThrow(/ENOENT/);
    // The flush's batch (600, below a full batch) is still synced file by file and named.
    await b.flush();
    expect((await readFile(log, 'utf8')).trim().split('\n')).toHaveLength(2);
    for (const i of [0, 255, 599]) expect([...(await b.get(key(i)))]).toEqual([i & 255]);
    await b.close();
  });

  it('a syncEarly group (an incremental) starts no background sync', async () => {
    const root = await h.tmpDir();
    await fakeSync('sync: error syncing: Input/output error');
    const b = new DirectoryBackend(root);
    const g: FlushGroup = { syncEarly: true };
    for (let i = 0; i < 300; i++) await b.put(`k/${i}`, new Uint8Array([i & 255]), { deferSync: true, ifNotExists: true, flushGroup: g });
    await b.flush(g);
    expect((await readdir(join(root, 'k'))).length).toBe(300);
    await b.close();
  });
});
