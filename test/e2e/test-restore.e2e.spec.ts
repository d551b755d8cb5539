// `cairn test-restore` through a running stack: the test guest's disk as a restore point in the
// stack's repository, booted in isolation by the data mover (no network, writes thrown away),
// judged by its serial marker: passes (exit 0, a PNG kept), nothing left served; an unknown
// restore point exits 3. The failing case (a damaged boot disk) is test-restore.int.spec.ts.
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildGuestImage, useHarness } from '@cairn/testing';
import { startStack } from '@cairn/cli';
import { cli } from './e2e-helpers.ts';

describe('cairn test-restore (stack, real guest, QEMU)', () => {
  const h = useHarness();

  it('boots a restore point in isolation and passes it; an unknown one exits 3', async () => {
    const dataDir = await h.tmpDir('cairn-e2e-tr-');
    const image = await buildGuestImage({ dir: join(dataDir, 'guest'), hostname: 'tr-e2e', format: 'raw', sizeMiB: 64 });
    const stack = await startStack({ dataDir });
    h.onClose(() => stack.stop());
    const fh = await open(image.disk, 'r');
    const size = (await fh.stat()).size;
    async function* extents() {
      for (let offset = 0; offset < size; offset += 4 * 1024 * 1024) {
        const buf = Buffer.alloc(Math.min(4 * 1024 * 1024, size - offset));
        await fh.read(buf, 0, buf.length, offset);
        yield { offset, data: buf };
      }
    }
    const { restorePointId } = await stack.repository.writeRestorePoint({ vm: { id: 'vm-tr', name: 'tr-e2e' }, disks: [{ name: 'vda', sizeBytes: size, extents: extents() }] });
    await fh.close();
    const args = ['--data', dataDir];

    const r = await cli([...args, '--json', 'test-restore', restorePointId, '--serial', image.marker, '--kernel', image.kernel, '--initrd', image.initrd, '--append', 'console=ttyS0 root=/dev/vda rw'], {}, 300_000);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const out = JSON.parse(r.stdout) as { outcome: string; restorePointId: string; screenshot: { file: string; sha256: string } };
    expect(out).toMatchObject({ outcome: 'passed', restorePointId, screenshot: { sha256: expect.stringMatching(/^[0-9a-f]{64}$/) } });
    const exports = await cli([...args, '--json', 'restore-export', 'list']);
    expect(JSON.parse(exports.stdout)).toEqual([]); // nothing left served

    const unknown = await cli([...args, 'test-restore', 'no-such-point', '--serial', 'x']);
    expect(unknown.code).toBe(3);
    expect((await cli([...args, 'test-restore', restorePointId, '--serial', 'x', '--kernel', '/etc/passwd'])).code).toBe(2);
  }, 420_000);
});
