// NbdServer with other clients: libnbd's nbdinfo and nbdcopy, and QEMU itself
// (qemu-img convert, qemu-io writing into a copy-on-write export).
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { useScratch } from './test-support/scratch.ts';
import { NbdServer } from './server.ts';
import { NbdClient } from './client.ts';
import { copyOnWrite, type CopyOnWriteDisk } from './copy-on-write.ts';
import type { BlockSource } from './block-source.ts';

// Async on purpose: the server runs in this process, a synchronous child would deadlock it.
const exec = promisify(execFile);
const h = useScratch();
const MiB = 1024 * 1024;

const disk = Buffer.alloc(16 * MiB);
let socket: string;
let cow: CopyOnWriteDisk;
const uri = (name: string) => `nbd+unix:///${name}?socket=${socket}`;

beforeAll(async () => {
  randomBytes(3 * MiB).copy(disk, 2 * MiB);
  randomBytes(64 * 1024).copy(disk, 9 * MiB);
  const source: BlockSource = { size: disk.length, read: async (o, l) => disk.subarray(o, o + l) };
  cow = await copyOnWrite(source);
  const server = new NbdServer({ exports: { disk: { source, description: 'restore point 42' }, rw: { source: cow } } });
  socket = join(await h.tmpDir('cairn-nbd-interop-'), 'nbd.sock');
  await server.listen({ path: socket });
  h.onClose(() => server.close());
  h.onClose(() => cow.close());
});

describe('NbdServer with libnbd and QEMU clients', () => {
  it('is described by nbdinfo (size, read-only, base:allocation map, export list)', async () => {
    const { stdout } = await exec('nbdinfo', ['--json', uri('disk')]);
    const info = JSON.parse(stdout) as { protocol: string; exports: Array<Record<string, unknown>> };
    expect(info.protocol).toBe('newstyle-fixed');
    expect(info.exports[0]).toMatchObject({ 'export-size': 16 * MiB, is_read_only: true, description: 'restore point 42', contexts: ['base:allocation'] });
    const map = (await exec('nbdinfo', ['--map', '--totals', uri('disk')])).stdout;
    // 3 MiB + 64 KiB of data, the rest zero.
    expect(map).toMatch(new RegExp(`^\\s*${3 * MiB + 64 * 1024}\\s.*\\s0\\s+data`, 'm'));
    const list = (await exec('nbdinfo', ['--list', '--json', `nbd+unix://?socket=${socket}`])).stdout;
    expect((JSON.parse(list) as { exports: Array<{ 'export-name': string }> }).exports.map((e) => e['export-name']).sort()).toEqual(['disk', 'rw']);
  });

  it('is copied byte for byte by nbdcopy and by qemu-img convert', async () => {
    const dir = await h.tmpDir('cairn-nbd-copies-');
    await exec('nbdcopy', ['--connections=4', uri('disk'), join(dir, 'nbdcopy.raw')]);
    expect((await readFile(join(dir, 'nbdcopy.raw'))).equals(disk)).toBe(true);
    await exec('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri('disk'), join(dir, 'qemu.raw')]);
    expect((await readFile(join(dir, 'qemu.raw'))).equals(disk)).toBe(true);
  });

  it('takes writes from qemu-io into the copy-on-write export and serves them back', async () => {
    await exec('qemu-io', ['-f', 'raw', '-c', 'write -P 0xab 1000 70000', '-c', 'write -P 0xcd 15M 1M', '-c', 'flush', uri('rw')]);
    const { stdout } = await exec('qemu-io', ['-f', 'raw', '-c', 'read -P 0xab 1000 70000', '-c', 'read -P 0xcd 15M 1M', '-r', uri('rw')]);
    expect(stdout).not.toMatch(/Pattern verification failed/);
    const c = await NbdClient.connect({ path: socket }, { exportName: 'rw' });
    const model = Buffer.from(disk);
    model.fill(0xab, 1000, 71000);
    model.fill(0xcd, 15 * MiB, 16 * MiB);
    expect(Buffer.from(await c.read(0, 16 * MiB)).equals(model)).toBe(true);
    await c.close();
    // The read-only export still shows the original.
    const ro = await NbdClient.connect({ path: socket }, { exportName: 'disk' });
    expect(Buffer.from(await ro.read(0, 16 * MiB)).equals(disk)).toBe(true);
    await ro.close();
  });
});
