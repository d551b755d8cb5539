// Test restores against real parts: the test guest (host kernel, busybox init printing its
// marker) written into a real repository, served over NBD with a throw-away overlay, booted by
// QEMU with no network. It passes; the same restore point with its root file system's first
// chunk flipped inside the repository fails, naming the check, with the console tail and a PNG
// screenshot kept; afterwards no QEMU, export, overlay or run directory is left.
import { execFile } from 'node:child_process';
import { open, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildGuestImage, useHarness, type GuestImage } from '@cairn/testing';
import { InMemoryEventLog } from '@cairn/eventlog';
import { chunkKey, DirectoryBackend, initRepository, type Repository } from '@cairn/repository';
import { RestoreExports } from './restore-exports.ts';
import { runTestRestore, type TestRestoreDeps } from './test-restore.ts';

const run = promisify(execFile);
const MiB = 1024 * 1024;

describe('test restore (real guest, QEMU, NBD export, no network)', () => {
  const h = useHarness();
  let image: GuestImage;
  let repo: Repository;
  let dir: string;
  let restorePointId: string;
  let deps: TestRestoreDeps;
  let log: InMemoryEventLog;

  beforeAll(async () => {
    dir = await h.tmpDir('cairn-tr-');
    image = await buildGuestImage({ dir: join(dir, 'guest'), hostname: 'tr-guest', format: 'raw', sizeMiB: 64 });
    repo = await initRepository(new DirectoryBackend(join(dir, 'repo'), { createRoot: true }), { passphrase: 'pw', kdf: { N: 1024 } });
    h.onClose(() => repo.close());
    const fh = await open(image.disk, 'r');
    const size = (await fh.stat()).size;
    async function* extents() {
      for (let offset = 0; offset < size; offset += 4 * MiB) {
        const buf = Buffer.alloc(Math.min(4 * MiB, size - offset));
        await fh.read(buf, 0, buf.length, offset);
        yield { offset, data: buf };
      }
    }
    restorePointId = (await repo.writeRestorePoint({ vm: { id: 'vm-tr', name: 'tr-guest' }, disks: [{ name: 'vda', sizeBytes: size, extents: extents() }] })).restorePointId;
    await fh.close();
    const exports = new RestoreExports(join(dir, 'run'));
    h.onClose(() => exports.close());
    log = new InMemoryEventLog('site-tr');
    deps = { log, site: 'site-tr', actor: { kind: 'service', id: 'data-mover@site-tr' }, repository: repo, exports, workDir: join(dir, 'work') };
  }, 300_000);

  // Root on the restored disk, the host's kernel; a panic stops (is not rebooted) so its screen can be kept.
  const boot = () => ({ kernel: image.kernel, initrd: image.initrd, append: 'console=ttyS0 root=/dev/vda rw' });

  const leftovers = async (testRestoreId: string) => {
    const ps = await run('ps', ['-eo', 'args']).then((r) => r.stdout);
    return {
      qemu: ps.split('\n').filter((l) => l.includes(`testrestore-${testRestoreId}`)),
      exports: deps.exports.names(),
      overlays: await readdir(join(dir, 'run', 'overlays')).catch(() => []),
      runDirs: (await readdir(deps.workDir)).filter((n) => n.startsWith('tr-')),
    };
  };
  const nothingLeft = { qemu: [], exports: [], overlays: [], runDirs: [] };

  it('a booted test guest\'s restore point passes; a PNG of its console is kept; nothing is left', async () => {
    const r = await runTestRestore(deps, { restorePointId, serialPattern: image.marker, boot: boot(), timeoutMs: 180_000, testRestoreId: 'tr-pass' });
    expect(r.passed, JSON.stringify(r.event)).toBe(true);
    expect(r.event.results).toEqual([{ check: `serial:${image.marker}`, ok: true, detail: expect.stringContaining('appeared after') }]);
    const png = await readFile(r.event.screenshot!.file);
    expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    expect(await leftovers('tr-pass')).toEqual(nothingLeft);
    const types: string[] = [];
    for await (const e of log.readStream('testrestore-tr-pass')) types.push(e.event.type);
    expect(types).toEqual(['TestRestoreStarted', 'TestRestorePassed']);
  }, 300_000);

  it('a restore point whose boot disk was damaged inside the repository fails, naming the check, with console tail and screenshot', async () => {
    // The root file system's first chunk (its superblock) overwritten in the repository.
    const reader = await repo.openDisk(restorePointId, 'vda');
    const first = (await reader.chunkIdAt(0))!;
    const file = join(dir, 'repo', chunkKey(first));
    const sealed = await readFile(file);
    sealed.fill(0x5a, 64, sealed.length - 64);
    await writeFile(file, sealed);

    const r = await runTestRestore(deps, { restorePointId, serialPattern: image.marker, boot: boot(), timeoutMs: 180_000, testRestoreId: 'tr-fail' });
    expect(r.passed).toBe(false);
    if (r.passed) return;
    expect(r.event.check).toBe(`serial:${image.marker}`);
    // The initramfs cannot read the root device (the repository refuses the damaged chunk) and gives up.
    expect(r.event.reason).toMatch(/Dropping to a shell|Gave up waiting for root|Kernel panic/);
    expect(r.event.consoleTail).toMatch(/I\/O error, dev vda/);
    expect(r.event.screenshot).toMatchObject({ sha256: expect.stringMatching(/^[0-9a-f]{64}$/), bytes: expect.any(Number) });
    expect((await readFile(r.event.screenshot!.file)).subarray(1, 4).toString()).toBe('PNG');
    expect(await leftovers('tr-fail')).toEqual(nothingLeft);
    const types: string[] = [];
    for await (const e of log.readStream('testrestore-tr-fail')) types.push(e.event.type);
    expect(types).toEqual(['TestRestoreStarted', 'TestRestoreFailed']);
  }, 300_000);
});
