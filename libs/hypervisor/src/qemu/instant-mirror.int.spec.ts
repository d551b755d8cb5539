// Instant recovery's chain and pivot on a real QEMU (no guest OS: writes through the device's
// block backend): a VM started from qemuCommandLine with a qcow2 overlay over a read-only NBD
// export (qemu-nbd, which exits when its one client goes), guest writes before and during the
// mirror, a mirror left running by a caller that died, taken over by mirrorAndPivot: the local
// image holds the export's data and every write, the device runs on it alone, the NBD
// connection is closed.
import { execFile, spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { useCleanup } from '../testing/cleanup.ts';
import { guestWrite } from '../testing/qemu-vm.ts';
import { QmpClient } from '../qmp/qmp-client.ts';
import { mirrorAndPivot, mirrorJobId, mirrorTargetNode } from './instant-mirror.ts';
import { qemuCommandLine } from './qemu-command-line.ts';
import type { QemuVmConfig } from './vm-config.ts';

const run = promisify(execFile);
const SIZE = 16 << 20;
const K64 = 65536;

describe('instant recovery: overlay over an NBD export, mirror and pivot (real QEMU)', () => {
  const h = useCleanup();
  let dir: string;
  let qmp: QmpClient;
  let nbdExited: Promise<number | null>;
  const model = Buffer.alloc(SIZE);

  beforeAll(async () => {
    dir = await h.tmpDir('cairn-hv-instant-');
    // The "restore point": a raw image with a pattern in every MiB, served read-only.
    for (let i = 0; i < SIZE; i += 1 << 20) model.fill(0x10 + i / (1 << 20), i, i + 4096);
    await writeFile(join(dir, 'base.raw'), model);
    const socket = join(dir, 'export.sock');
    const nbd = spawn('qemu-nbd', ['-r', '-k', socket, '-x', 'disk0', '-f', 'raw', join(dir, 'base.raw')], { stdio: 'ignore' });
    nbdExited = new Promise((r) => nbd.once('exit', (code) => r(code)));
    h.onClose(() => nbd.kill('SIGKILL'));
    for (let i = 0; i < 100 && !(await readFile(socket).then(() => true, (e: NodeJS.ErrnoException) => e.code !== 'ENOENT')); i++) await new Promise((r) => setTimeout(r, 50));
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', join(dir, 'disk0.overlay.qcow2'), String(SIZE)]);
    const config: QemuVmConfig = { kind: 'qemu', name: 'orig', machine: 'q35', vcpus: 1, memoryBytes: 64 << 20, accel: 'tcg', disks: [{ id: 'disk0', format: 'raw', sizeBytes: SIZE, file: '/old' }], nics: [], hostPaths: [] };
    const argv = qemuCommandLine(config, {
      name: 'instant', uuid: '5c0ffee0-0000-4000-8000-000000000001', macs: {}, qmpSocket: join(dir, 'qmp.sock'), serialLog: join(dir, 'serial.log'), pidFile: join(dir, 'qemu.pid'),
      disks: [{ name: 'disk0', file: join(dir, 'disk0.overlay.qcow2'), format: 'qcow2', node: 'instant0', nbd: { socket, exportName: 'disk0' } }],
    });
    await run(argv[0]!, [...argv.slice(1), '-S']);
    const pid = Number((await readFile(join(dir, 'qemu.pid'), 'utf8')).trim());
    h.onClose(() => { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } });
    qmp = await QmpClient.connect(join(dir, 'qmp.sock'));
    h.onClose(() => qmp.close());
  }, 60_000);

  it('reads come from the export, writes stay in the overlay; a mirror taken over after its caller died pivots with every write', async () => {
    const write = async (offset: number, pattern: number) => {
      await guestWrite(qmp, 'disk0', offset, K64, pattern);
      model.fill(pattern, offset, offset + K64);
    };
    await write(3 * K64, 0xab);
    await qmp.execute('human-monitor-command', { 'command-line': 'qemu-io -d /machine/peripheral/disk0/virtio-backend "flush"' });
    expect((await readFile(join(dir, 'base.raw'))).subarray(3 * K64, 4 * K64).every((b) => b === 0), 'the export is never written').toBe(true);
    const { stdout } = await run('qemu-img', ['map', '-U', '--output=json', join(dir, 'disk0.overlay.qcow2')]);
    expect((JSON.parse(stdout) as Array<{ start: number; data: boolean; depth: number }>).some((m) => m.data && m.depth === 0 && m.start <= 3 * K64)).toBe(true);
    // A caller starts the mirror and dies (its steps done by hand here); the guest keeps writing.
    const target = join(dir, 'disk0.raw');
    await run('qemu-img', ['create', '-q', '-f', 'raw', target, String(SIZE)]);
    await qmp.execute('blockdev-add', { driver: 'file', 'node-name': `${mirrorTargetNode('instant0')}-file`, filename: target });
    await qmp.execute('blockdev-add', { driver: 'raw', 'node-name': mirrorTargetNode('instant0'), file: `${mirrorTargetNode('instant0')}-file` });
    await qmp.execute('blockdev-mirror', { 'job-id': mirrorJobId('instant0'), device: 'instant0', target: mirrorTargetNode('instant0'), sync: 'full' });
    await write(5 * (1 << 20), 0xcd);
    const seen: boolean[] = [];
    await mirrorAndPivot(qmp, [{ node: 'instant0', target, format: 'raw', sizeBytes: SIZE }], { onProgress: (p) => seen.push(p.ready), pollMs: 50 });
    expect(seen.at(-1)).toBe(true);
    // After the pivot: the device on the local image alone, the old chain gone, the export's client gone.
    const nodes = (await qmp.execute<Array<{ 'node-name': string }>>('query-named-block-nodes', { flat: true })).map((n) => n['node-name']).sort();
    expect(nodes).toEqual([mirrorTargetNode('instant0'), `${mirrorTargetNode('instant0')}-file`]);
    expect(await nbdExited).toBe(0);
    await write(7 * K64, 0xef); // still writable, on the local image
    await qmp.execute('stop');
    expect((await readFile(target)).equals(model)).toBe(true);
    // Again (a caller that died after the pivot): nothing to do.
    await mirrorAndPivot(qmp, [{ node: 'instant0', target, format: 'raw', sizeBytes: SIZE }]);
  }, 60_000);
});
