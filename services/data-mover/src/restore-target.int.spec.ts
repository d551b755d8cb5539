// Restore targets stay inside the restore roots: as written (`..`, relative, NUL) and as the
// file system resolves them (a symbolic link in a parent directory or as the target itself).
import { mkdir, readFile, readdir, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useHarness } from '@cairn/testing';
import { InMemoryEventLog } from '@cairn/eventlog';
import { DirectoryBackend, initRepository } from '@cairn/repository';
import { DataMover, RestoreRefused } from './data-mover.service.ts';

describe('restore targets', () => {
  const h = useHarness();

  it('refuses every way out of the restore root, writes nothing there, and restores inside it', async () => {
    const dir = await h.tmpDir();
    const root = join(dir, 'restores');
    const outside = join(dir, 'outside');
    await mkdir(root);
    await mkdir(outside);
    await writeFile(join(outside, 'victim.raw'), 'keep');
    await symlink(outside, join(root, 'link-out'));
    await symlink(join(outside, 'victim.raw'), join(root, 'link-file.raw'));
    await symlink(join(outside, 'missing.raw'), join(root, 'dangling.raw'));
    const repo = await initRepository(new DirectoryBackend(join(dir, 'repo'), { createRoot: true }), { passphrase: 'pw', kdf: { N: 1024 } });
    h.onClose(() => repo.close());
    const { restorePointId } = await repo.writeRestorePoint({
      vm: { id: 'vm1', name: 'vm1' }, disks: [{ name: 'vda', sizeBytes: 65536, extents: [{ offset: 0, data: Buffer.alloc(65536, 1) }] }],
    });
    const mover = new DataMover({ site: 't', actor: { kind: 'service', id: 'm' }, restoreRoots: [root], connections: 1 },
      new InMemoryEventLog('t'), new Map([['default', repo]]), { publish: () => undefined });
    const restore = (path: string, overwrite = false) => mover.restore({ restorePointId, disk: 'vda', target: { kind: 'file', path }, overwrite });

    const refused: [string, string][] = [
      [`${root}/../outside/a.raw`, 'forbidden'], [`${root}/a/../../outside/b.raw`, 'forbidden'], ['/etc/cairn.raw', 'forbidden'],
      [`${root}x/c.raw`, 'forbidden'], [root, 'forbidden'], ['relative.raw', 'invalid_command'], [`${root}/nul\0.raw`, 'invalid_command'],
      [`${root}/link-out/d.raw`, 'forbidden'], [`${root}/link-file.raw`, 'forbidden'], [`${root}/dangling.raw`, 'forbidden'],
      [`${root}/link-out/deeper/e.raw`, 'forbidden'],
    ];
    for (const [path, code] of refused) {
      for (const overwrite of [false, true]) {
        const e = await restore(path, overwrite).then(() => undefined, (err: unknown) => err);
        expect(e, path).toBeInstanceOf(RestoreRefused);
        expect((e as RestoreRefused).code, path).toBe(code);
      }
    }
    expect((await readdir(outside)).sort()).toEqual(['victim.raw']);
    expect(await readFile(join(outside, 'victim.raw'), 'utf8')).toBe('keep');

    // Inside the root (a %2e%2e stays a literal name, not a parent): allowed.
    const ok = await restore(`${root}/%2e%2e/../ok.raw`);
    expect('path' in ok && ok.path).toBe(join(root, 'ok.raw'));
    expect((await readFile(join(root, 'ok.raw'))).length).toBe(65536);
    // Not world-readable: 0600 less the umask.
    expect((await stat(join(root, 'ok.raw'))).mode & 0o077).toBe(0);
  });

  it('never writes into the data directory, repository, secrets or state file, for any sender; a person\'s own signed target may lie outside the roots', async () => {
    const dir = await h.tmpDir();
    const data = join(dir, 'data');
    const restores = join(data, 'restores');
    const elsewhere = join(dir, 'home');
    for (const d of [restores, join(data, 'secrets'), join(data, 'nats'), elsewhere]) await mkdir(d, { recursive: true });
    await writeFile(join(data, 'stack.json'), '{}');
    await writeFile(join(data, 'secrets', 'api.token'), 'secret');
    await symlink(join(data, 'secrets'), join(elsewhere, 'to-secrets'));
    await symlink(data, join(restores, 'to-data'));
    const repo = await initRepository(new DirectoryBackend(join(data, 'repository'), { createRoot: true }), { passphrase: 'pw', kdf: { N: 1024 } });
    h.onClose(() => repo.close());
    const { restorePointId } = await repo.writeRestorePoint({
      vm: { id: 'vm1', name: 'vm1' }, disks: [{ name: 'vda', sizeBytes: 65536, extents: [{ offset: 0, data: Buffer.alloc(65536, 2) }] }],
    });
    const mover = new DataMover({
      site: 't', actor: { kind: 'service', id: 'm' }, connections: 1, dataDir: data, restoreRoots: [restores, data],
      forbiddenRestorePaths: ['repository', 'secrets', 'nats', 'stack.json'].map((d) => join(data, d)),
    }, new InMemoryEventLog('t'), new Map([['default', repo]]), { publish: () => undefined });
    const restore = (path: string, ownTarget: boolean) =>
      mover.restore({ restorePointId, disk: 'vda', target: { kind: 'file', path }, overwrite: true }, 'default', { ownTarget });

    const refused = [
      join(data, 'stack.json'), join(data, 'secrets', 'api.token'), join(data, 'repository', 'config'), join(data, 'nats', 'x'),
      join(data, 'x.raw'), data, join(elsewhere, 'to-secrets', 'api.token'), join(restores, 'to-data', 'stack.json'),
      join(restores, 'to-data', 'y.raw'), join('/', 'x'.repeat(4100)),
    ];
    for (const path of refused) {
      for (const own of [false, true]) {
        const e = await restore(path, own).then(() => undefined, (err: unknown) => err);
        expect(e, `${path.slice(0, 80)} own=${own}`).toBeInstanceOf(RestoreRefused);
      }
    }
    expect(await readFile(join(data, 'stack.json'), 'utf8')).toBe('{}');
    expect(await readFile(join(data, 'secrets', 'api.token'), 'utf8')).toBe('secret');
    // Outside every root: only the person's own signed target (the local CLI's --to).
    const mine = join(elsewhere, 'mine.raw');
    expect(await restore(mine, false).then(() => 'written', (e: RestoreRefused) => e.code)).toBe('forbidden');
    expect(await restore(mine, true).then((r) => 'path' in r && r.path)).toBe(mine);
    expect((await stat(mine)).mode & 0o077).toBe(0);
    expect(await restore(join(restores, 'ok.raw'), false).then((r) => 'path' in r && r.path)).toBe(join(restores, 'ok.raw'));
  });
});
