// Our client against QEMU's NBD servers (qemu-nbd and qemu-storage-daemon, QEMU 7.2):
// reads match the image bytes; base:allocation and a persistent dirty bitmap match what
// was written; TLS with x509 credentials.
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { useScratch } from './test-support/scratch.ts';
import { NbdClient } from './client.ts';
import { NbdPool } from './pool.ts';
import { allocatedExtents, changedExtents } from './extents.ts';
import { BASE_ALLOCATION, NbdOptionError, dirtyBitmapContext, type Extent } from './protocol.ts';
import { makeTestPki, run, spawnWithSocket } from './test-support/processes.ts';

const h = useScratch();
const MiB = 1024 * 1024;
const SIZE = 64 * MiB;
const CLUSTER = 64 * 1024;
/** Random data laid down before the bitmap exists. */
const BASE_DATA: Array<[number, number]> = [[2 * MiB, 3 * MiB], [20 * MiB, MiB], [40 * MiB, 512 * 1024]];
/** Guest-like writes after the bitmap was added (offset, length, pattern byte). */
const CHANGES: Array<[number, number, number]> = [
  [2 * MiB + 4096, 8192, 0x11], [10 * MiB, 100_000, 0x22], [10 * MiB + 200_000, 65_536, 0x33],
  [33 * MiB - 512, 1024, 0x44], [SIZE - 4096, 4096, 0x55],
];

let dir: string;
let image: string;
const model = Buffer.alloc(SIZE);

function mergeRuns(runs: Array<[number, number]>): Extent[] {
  const sorted = [...runs].sort((a, b) => a[0] - b[0]);
  const out: Array<{ offset: number; length: number; flags: number }> = [];
  for (const [start, end] of sorted) {
    const last = out[out.length - 1];
    if (last && start <= last.offset + last.length) last.length = Math.max(last.length, end - last.offset);
    else out.push({ offset: start, length: end - start, flags: 0 });
  }
  return out;
}
const roundOut = (offset: number, length: number): [number, number] =>
  [Math.floor(offset / CLUSTER) * CLUSTER, Math.ceil((offset + length) / CLUSTER) * CLUSTER];
const expectedDirty = () => mergeRuns(CHANGES.map(([o, l]) => roundOut(o, l))).map((e) => ({ ...e, flags: 1 }));
const expectedAllocated = () => mergeRuns([...BASE_DATA.map(([o, l]): [number, number] => [o, o + l]), ...CHANGES.map(([o, l]) => roundOut(o, l))]);

async function collect(it: AsyncIterable<Extent>): Promise<Extent[]> {
  const out: Extent[] = [];
  for await (const e of it) out.push(e);
  return out;
}

beforeAll(async () => {
  dir = await h.tmpDir('cairn-nbd-qemu-');
  const raw = join(dir, 'base.raw');
  for (const [o, l] of BASE_DATA) randomBytes(l).copy(model, o);
  await writeFile(raw, model);
  image = join(dir, 'disk.qcow2');
  run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, image]);
  run('qemu-img', ['bitmap', '--add', image, 'bm0']);
  run('qemu-io', ['-f', 'qcow2', ...CHANGES.flatMap(([o, l, p]) => ['-c', `write -P ${p} ${o} ${l}`]), image]);
  for (const [o, l, p] of CHANGES) model.fill(p, o, o + l);
  // A read-only export needs a disabled (frozen) bitmap, as the coordinator exports it.
  run('qemu-img', ['bitmap', '--disable', image, 'bm0']);
});

describe('NbdClient against qemu-nbd', () => {
  it('reads the image byte for byte and reports allocation and the dirty bitmap', async () => {
    const socket = join(dir, 'qemu-nbd.sock');
    await spawnWithSocket('qemu-nbd', ['-f', 'qcow2', '-r', '-B', 'bm0', '-x', 'disk', '--shared=4', '--persistent', '--socket', socket, image], socket, h.onClose);
    const contexts = [BASE_ALLOCATION, dirtyBitmapContext('bm0')];
    const pool = await NbdPool.connect({ path: socket }, { exportName: 'disk', metaContexts: contexts, connections: 2, pieceBytes: MiB });
    expect(pool.size).toBe(SIZE);
    expect(Buffer.from(await pool.read(0, SIZE)).equals(model)).toBe(true);
    const client = pool.clients[0]!;
    const odd = await Promise.all([[1, 1], [2 * MiB + 4095, 3], [10 * MiB - 7, 300_000], [SIZE - 5000, 5000]].map(([o, l]) => client.read(o!, l!)));
    odd.forEach((g, i) => {
      const [o, l] = [[1, 1], [2 * MiB + 4095, 3], [10 * MiB - 7, 300_000], [SIZE - 5000, 5000]][i]!;
      expect(Buffer.from(g).equals(model.subarray(o!, o! + l!))).toBe(true);
    });
    expect(await collect(changedExtents(pool, dirtyBitmapContext('bm0'), { windowBytes: 16 * MiB }))).toEqual(expectedDirty());
    expect(await collect(allocatedExtents(pool))).toEqual(expectedAllocated());
    const info = await NbdClient.info({ path: socket }, { exportName: 'disk' });
    expect(info).toMatchObject({ size: SIZE, readOnly: true });
    await pool.close();
  });

  it('speaks TLS with x509 credentials and is refused without them', async () => {
    const pki = await makeTestPki(await h.tmpDir('cairn-nbd-qemu-pki-'));
    const socket = join(dir, 'qemu-nbd-tls.sock');
    await spawnWithSocket('qemu-nbd', [
      '--object', `tls-creds-x509,id=tls0,endpoint=server,dir=${pki.dir},verify-peer=off`, '--tls-creds', 'tls0',
      '-f', 'qcow2', '-r', '-x', 'disk', '--shared=4', '--persistent', '--socket', socket, image,
    ], socket, h.onClose);
    const client = await NbdClient.connect({ path: socket }, { exportName: 'disk', tls: { ca: pki.ca, servername: 'localhost' }, metaContexts: [BASE_ALLOCATION] });
    expect(Buffer.from(await client.read(0, SIZE)).equals(model)).toBe(true);
    expect(await collect(allocatedExtents(client))).toEqual(expectedAllocated());
    await client.close();
    await expect(NbdClient.connect({ path: socket }, { exportName: 'disk' })).rejects.toBeInstanceOf(NbdOptionError);
  });
});

describe('NbdClient against qemu-storage-daemon', () => {
  it('reads the export and its bitmap context', async () => {
    const socket = join(dir, 'qsd.sock');
    await spawnWithSocket('qemu-storage-daemon', [
      '--blockdev', `driver=file,node-name=file0,filename=${image}`,
      '--blockdev', 'driver=qcow2,node-name=disk0,file=file0,read-only=on',
      '--nbd-server', `addr.type=unix,addr.path=${socket}`,
      '--export', 'type=nbd,id=exp0,node-name=disk0,name=disk0,bitmaps.0=bm0',
    ], socket, h.onClose);
    const client = await NbdClient.connect({ path: socket }, { exportName: 'disk0', metaContexts: [BASE_ALLOCATION, dirtyBitmapContext('bm0')] });
    expect(client.size).toBe(SIZE);
    const reads = await Promise.all(Array.from({ length: 16 }, (_, i) => client.read(i * 4 * MiB, 4 * MiB)));
    expect(Buffer.concat(reads).equals(model)).toBe(true);
    expect(await collect(changedExtents(client, dirtyBitmapContext('bm0')))).toEqual(expectedDirty());
    expect(await collect(allocatedExtents(client, { windowBytes: 7 * MiB }))).toEqual(expectedAllocated());
    await client.close();
  });
});
