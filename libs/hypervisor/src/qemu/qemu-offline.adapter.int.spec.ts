// Powered-off VMs: incrementals from the qcow2 file's own persistent bitmap, served by
// qemu-storage-daemon; failure merges back; a crashed caller's daemon and bitmaps are reaped.
import { execFile } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { useCleanup } from '../testing/cleanup.ts';
import { createTestDisk } from '../testing/qemu-vm.ts';
import { dirtyBlocks, readExport } from '../testing/nbd-tools.ts';
import { imageInfo } from './qemu-img.ts';
import { QemuOfflineAdapter } from './qemu-offline.adapter.ts';

const run = promisify(execFile);
const SIZE = 16 << 20;
const K64 = 65536;

describe('QEMU offline adapter (qemu-img + qemu-storage-daemon)', () => {
  const h = useCleanup();
  let dir: string;
  let disk: string;
  let raw: string;
  let adapter: QemuOfflineAdapter;
  const model = Buffer.alloc(SIZE);

  /** A write while the VM is off (as the VM itself would have done before it stopped). */
  async function write(block: number, pattern: number) {
    await run('qemu-io', ['-f', 'qcow2', '-c', `write -P ${pattern} ${block * K64} ${K64}`, disk]);
    model.fill(pattern, block * K64, (block + 1) * K64);
  }

  beforeAll(async () => {
    dir = await h.tmpDir('cairn-hv-off-');
    disk = join(dir, 'd0.qcow2');
    raw = join(dir, 'd1.raw');
    await createTestDisk(disk, 'qcow2', SIZE);
    await createTestDisk(raw, 'raw', 4 << 20);
    const config = { vms: [{ name: 'off-vm', disks: [{ id: 'd0', file: disk }, { id: 'd1', file: raw }] }], runDir: join(dir, 'run') };
    adapter = new QemuOfflineAdapter(config);
    h.onClose(() => adapter.reapOrphans(new Set()));
  });

  it('full, then incrementals from the persistent bitmap; a failed one is merged back; raw is always full', async () => {
    const [inv] = await adapter.inventory();
    expect(inv).toMatchObject({ id: 'off-vm', state: 'stopped', disks: [{ id: 'd0', format: 'qcow2', sizeBytes: SIZE }, { id: 'd1', format: 'raw' }] });
    await write(3, 0x33);
    const full = await adapter.openView({ vm: 'off-vm', mode: 'auto', jobId: 'j1', chain: 'p' });
    expect(full.disks[0]).toMatchObject({ mode: 'full', reason: expect.stringMatching(/no dirty bitmap cairn-p yet/) });
    expect(full.disks[1]).toMatchObject({ mode: 'full', reason: expect.stringMatching(/^raw disk/) });
    const sock = (full.nbd as { socketPath: string }).socketPath;
    expect((await readExport(sock, full.disks[0]!.exportName)).equals(model)).toBe(true);
    await adapter.releaseView(full.viewId, { success: true });

    await write(10, 0x10); await write(11, 0x11);
    const failed = await adapter.openView({ vm: 'off-vm', mode: 'auto', jobId: 'j2', chain: 'p', disks: ['d0'] });
    const fd = failed.disks[0]!;
    expect(fd.mode).toBe('incremental');
    expect([...await dirtyBlocks((failed.nbd as { socketPath: string }).socketPath, fd.exportName, fd.bitmapContext!)]).toEqual([10, 11]);
    await adapter.releaseView(failed.viewId, { success: false });

    await write(20, 0x20);
    const inc = await adapter.openView({ vm: 'off-vm', mode: 'auto', jobId: 'j3', chain: 'p', disks: ['d0'] });
    const d = inc.disks[0]!;
    const s = (inc.nbd as { socketPath: string }).socketPath;
    expect([...await dirtyBlocks(s, d.exportName, d.bitmapContext!)].sort((a, b) => a - b)).toEqual([10, 11, 20]);
    expect((await readExport(s, d.exportName)).equals(model)).toBe(true);
    await adapter.releaseView(inc.viewId, { success: true });
    expect((await imageInfo(disk)).bitmaps.map((b) => b.name)).toEqual(['cairn-p']);
    expect(await readdir(join(dir, 'run'))).toEqual([]);
  });

  it('a crashed caller leaves a daemon and a frozen bitmap: the reaper stops it and keeps the changes', async () => {
    await write(30, 0x30);
    const orphan = await adapter.openView({ vm: 'off-vm', mode: 'auto', jobId: 'j4', chain: 'p', disks: ['d0'] });
    expect(orphan.disks[0]!.mode).toBe('incremental');
    const restarted = new QemuOfflineAdapter(adapter.config);
    const report = await restarted.reapOrphans();
    expect(report.bitmaps).toEqual([`cairn.frozen.${orphan.viewId}.cairn-p`]);
    expect(await readdir(join(dir, 'run'))).toEqual([]);
    await write(31, 0x31);
    const next = await restarted.openView({ vm: 'off-vm', mode: 'auto', jobId: 'j5', chain: 'p', disks: ['d0'] });
    const d = next.disks[0]!;
    expect([...await dirtyBlocks((next.nbd as { socketPath: string }).socketPath, d.exportName, d.bitmapContext!)].sort((a, b) => a - b)).toEqual([30, 31]);
    await restarted.releaseView(next.viewId, { success: true });
  });
});
