// A restore point served over NBD: QEMU's own tools and our client read it exactly; writes
// land in the overlay and never change the restore point.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { useHarness } from '@cairn/testing';
import { InMemoryEventLog } from '@cairn/eventlog';
import { NbdClient } from '@cairn/nbd';
import { DirectoryBackend, initRepository } from '@cairn/repository';
import { DataMover, RestoreRefused } from './data-mover.service.ts';
import { RestoreExports } from './restore-exports.ts';

const run = promisify(execFile);
const MiB = 1024 * 1024;

describe('restore point exported over NBD', () => {
  const h = useHarness();

  it('serves a restore point read-write with an overlay, readable by qemu-img and our client', async () => {
    const dir = await h.tmpDir();
    const repo = await initRepository(new DirectoryBackend(join(dir, 'repo'), { createRoot: true }), { passphrase: 'pw', kdf: { N: 1024 } });
    h.onClose(() => repo.close());
    const image = Buffer.concat([randomBytes(3 * MiB), Buffer.alloc(2 * MiB), randomBytes(3 * MiB)]);
    const { restorePointId } = await repo.writeRestorePoint({
      vm: { id: 'vm1', name: 'vm1' },
      disks: [{ name: 'disk0', sizeBytes: image.length, extents: [{ offset: 0, data: image.subarray(0, 3 * MiB) }, { offset: 5 * MiB, data: image.subarray(5 * MiB) }] }],
    });
    const exports = new RestoreExports(join(dir, 'run'));
    h.onClose(() => exports.close());
    const mover = new DataMover({ site: 't', actor: { kind: 'service', id: 'm' }, restoreRoots: [dir], connections: 1 },
      new InMemoryEventLog('t'), new Map([['default', repo]]), { publish: () => undefined }, undefined, exports);

    const served = await mover.restore({ restorePointId, disk: 'disk0', target: { kind: 'nbd-export', exportName: 'vm1-disk0' } });
    expect('nbd' in served && served.nbd).toEqual({ socket: exports.socket, exportName: 'vm1-disk0' });
    await expect(mover.restore({ restorePointId, disk: 'disk0', target: { kind: 'nbd-export', exportName: 'vm1-disk0' } })).rejects.toBeInstanceOf(RestoreRefused);

    // QEMU as the client: the whole disk, byte for byte.
    const copy = join(dir, 'copy.raw');
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', `nbd+unix:///vm1-disk0?socket=${exports.socket}`, copy]);
    expect(Buffer.compare(await readFile(copy), image)).toBe(0);

    // A guest writing to it: the write is read back, the restore point is unchanged.
    const client = await NbdClient.connect({ path: exports.socket }, { exportName: 'vm1-disk0' });
    await client.write(4 * MiB, Buffer.alloc(4096, 0xee));
    expect(Buffer.from(await client.read(4 * MiB, 4096)).every((b) => b === 0xee)).toBe(true);
    await client.close();
    const reader = await repo.openDisk(restorePointId, 'disk0');
    expect(Buffer.from(await reader.read(4 * MiB, 4096)).every((b) => b === 0)).toBe(true);

    await mover.stopExport('vm1-disk0');
    await expect(mover.stopExport('vm1-disk0')).rejects.toThrow(/no export named/);
    await expect(NbdClient.connect({ path: exports.socket }, { exportName: 'vm1-disk0', timeoutMs: 5000 })).rejects.toThrow();
  });
});
