// The adapter on qemu-storage-daemon (block nodes and NBD without a VM): disks are named in the
// config, the daemon's own NBD server is shared, and a writable export of the live node plays
// the guest.
import { spawn } from 'node:child_process';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { useCleanup } from '../testing/cleanup.ts';
import { createTestDisk } from '../testing/qemu-vm.ts';
import { dirtyBlocks, readExport } from '../testing/nbd-tools.ts';
import { QmpClient } from '../qmp/qmp-client.ts';
import { QemuAdapter } from './qemu.adapter.ts';

const run = promisify(execFile);
const SIZE = 8 << 20;
const K64 = 65536;

describe('QEMU adapter on qemu-storage-daemon', () => {
  const h = useCleanup();
  let dir: string;
  let adapter: QemuAdapter;
  const nbd = () => join(dir, 'nbd.sock');
  const model = Buffer.alloc(SIZE);

  /** A "guest" write through the daemon's writable export of the live node. */
  async function write(block: number, pattern: number) {
    await run('qemu-io', ['-f', 'raw', '-c', `write -P ${pattern} ${block * K64} ${K64}`, `nbd+unix:///live?socket=${nbd()}`]);
    model.fill(pattern, block * K64, (block + 1) * K64);
  }

  beforeAll(async () => {
    dir = await h.tmpDir('cairn-hv-qsd-');
    const disk = join(dir, 'd0.qcow2');
    await createTestDisk(disk, 'qcow2', SIZE);
    const qmp = join(dir, 'qmp.sock');
    const proc = spawn('qemu-storage-daemon', [
      '--blockdev', `driver=file,filename=${disk},node-name=d0-file`,
      '--blockdev', 'driver=qcow2,file=d0-file,node-name=d0',
      '--nbd-server', `addr.type=unix,addr.path=${nbd()}`,
      '--export', 'type=nbd,id=live,node-name=d0,name=live,writable=on',
      '--chardev', `socket,path=${qmp},server=on,wait=off,id=m0`, '--monitor', 'chardev=m0',
    ], { stdio: 'ignore' });
    const exited = new Promise((r) => proc.once('exit', r));
    h.onClose(async () => { proc.kill('SIGKILL'); await exited; });
    for (let i = 0; ; i++) {
      try { await (await QmpClient.connect(qmp, { connectTimeoutMs: 1000 })).close(); break; } catch (e) { if (i > 200) throw e; await new Promise((r) => setTimeout(r, 50)); }
    }
    adapter = await QemuAdapter.connect({ qmpSocket: qmp, overlayDir: join(dir, 'overlays'), nbd: { socketPath: nbd() }, vmName: 'storage', disks: { data: 'd0' } });
    h.onClose(() => adapter.close());
  });

  it('inventory from the config, full then incremental through the shared NBD server', async () => {
    expect(await adapter.inventory()).toEqual([{ id: 'storage', name: 'storage', state: 'running', disks: [{ id: 'data', nodeName: 'd0', file: join(dir, 'd0.qcow2'), format: 'qcow2', sizeBytes: SIZE }] }]);
    await write(1, 0x11);
    const full = await adapter.openView({ vm: 'storage', mode: 'auto', jobId: 'j1', chain: 'c' });
    expect(adapter.sharesNbdServer).toBe(true);
    expect(full.disks[0]).toMatchObject({ disk: 'data', mode: 'full' });
    await write(2, 0x22); // after the point in time: not in the view
    const expected = Buffer.from(model);
    expected.fill(0, 2 * K64, 3 * K64);
    expect((await readExport(nbd(), full.disks[0]!.exportName)).equals(expected)).toBe(true);
    await adapter.releaseView(full.viewId, { success: true });

    await write(5, 0x55);
    const inc = await adapter.openView({ vm: 'storage', mode: 'auto', jobId: 'j2', chain: 'c' });
    const d = inc.disks[0]!;
    expect(d.mode).toBe('incremental');
    expect(d.changedBytes).toBe(2 * K64);
    expect([...await dirtyBlocks(nbd(), d.exportName, d.bitmapContext!)].sort((a, b) => a - b)).toEqual([2, 5]);
    expect((await readExport(nbd(), d.exportName)).equals(model)).toBe(true);
    await adapter.releaseView(inc.viewId, { success: true });
    expect(await adapter.reapOrphans()).toEqual({ exports: [], jobs: [], nodes: [], files: [], bitmaps: [] });
  });
});
