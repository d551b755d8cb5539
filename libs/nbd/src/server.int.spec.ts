// NbdServer with our own client: read-only and copy-on-write exports, base:allocation,
// several clients and a pool at once, TLS, TCP, handshake limits.
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { useScratch } from './test-support/scratch.ts';
import { NbdClient } from './client.ts';
import { NbdPool } from './pool.ts';
import { NbdServer } from './server.ts';
import { copyOnWrite } from './copy-on-write.ts';
import { fromRepositoryDisk, type BlockSource } from './block-source.ts';
import { allocatedExtents } from './extents.ts';
import { BASE_ALLOCATION, NbdOptionError, NbdRequestError, NBD_ENOSPC, NBD_EPERM, type Extent } from './protocol.ts';
import { makeTestPki } from './test-support/processes.ts';

const h = useScratch();
const MiB = 1024 * 1024;

/** 8 MiB: random data in [1 MiB, 3 MiB) and [5 MiB + 4 KiB, 6 MiB), zeroes elsewhere. */
function makeDisk(): Buffer {
  const d = Buffer.alloc(8 * MiB);
  randomBytes(2 * MiB).copy(d, MiB);
  randomBytes(MiB - 4096).copy(d, 5 * MiB + 4096);
  return d;
}

function memorySource(bytes: Buffer, extras: Partial<BlockSource> = {}): BlockSource {
  return { size: bytes.length, read: async (o, l) => bytes.subarray(o, o + l), ...extras };
}

async function serve(exports: ConstructorParameters<typeof NbdServer>[0]) {
  const server = new NbdServer(exports);
  const path = join(await h.tmpDir('cairn-nbd-srv-'), 'nbd.sock');
  await server.listen({ path });
  h.onClose(() => server.close());
  return { server, address: { path } };
}

const collect = async (it: AsyncIterable<Extent>) => {
  const out: Extent[] = [];
  for await (const e of it) out.push(e);
  return out;
};

describe('NbdServer with NbdClient', () => {
  it('serves a read-only export to several clients and a pool at once, byte for byte', async () => {
    const disk = makeDisk();
    const { address } = await serve({ exports: { disk: { source: memorySource(disk) } } });
    const clients = await Promise.all([1, 2, 3].map(() => NbdClient.connect(address, { exportName: 'disk' })));
    const pool = await NbdPool.connect(address, { exportName: 'disk', connections: 3, pieceBytes: 256 * 1024 });
    expect(clients[0]!.readOnly).toBe(true);
    const ranges = Array.from({ length: 60 }, (_, i) => {
      const length = 1 + ((i * 7919) % (300 * 1024));
      return { offset: (i * 104_729) % (disk.length - length), length };
    });
    const reads = ranges.map((r, i) => clients[i % 3]!.read(r.offset, r.length));
    const whole = pool.read(0, disk.length);
    const got = await Promise.all(reads);
    got.forEach((g, i) => expect(Buffer.from(g).equals(disk.subarray(ranges[i]!.offset, ranges[i]!.offset + ranges[i]!.length))).toBe(true));
    expect(Buffer.from(await whole).equals(disk)).toBe(true);
    await expect(clients[0]!.write(0, Buffer.alloc(10))).rejects.toThrow(/read-only/);
    await Promise.all([...clients.map((c) => c.close()), pool.close()]);
  });

  it('gives each read buffer back to its source once the reply is written, and only once', async () => {
    const disk = makeDisk();
    // A source that reuses what it is given back and spoils it first: a buffer released while
    // its reply was still being written would reach the client as 0xee bytes.
    const free: Buffer[] = [];
    const lent = new Set<Uint8Array>();
    let reads = 0;
    let released = 0;
    let strays = 0;
    const source: BlockSource = {
      size: disk.length,
      read: async (o, l) => {
        const buf = free.find((b) => b.length === l) ?? Buffer.allocUnsafe(l);
        free.splice(free.indexOf(buf), free.includes(buf) ? 1 : 0);
        disk.copy(buf, 0, o, o + l);
        lent.add(buf);
        reads++;
        return buf;
      },
      release: (data) => {
        released++;
        if (!lent.delete(data)) strays++;
        Buffer.from(data.buffer, data.byteOffset, data.length).fill(0xee);
        free.push(data as Buffer);
      },
    };
    const { address } = await serve({ exports: { disk: { source } } });
    const pool = await NbdPool.connect(address, { exportName: 'disk', connections: 2, pieceBytes: 128 * 1024 });
    for (let round = 0; round < 3; round++) expect(Buffer.from(await pool.read(0, disk.length)).equals(disk), `round ${round}`).toBe(true);
    const ranges = Array.from({ length: 40 }, (_, i) => ({ offset: (i * 104_729) % (disk.length - 200_000), length: 200_000 }));
    const got = await Promise.all(ranges.map((r) => pool.read(r.offset, r.length)));
    got.forEach((g, i) => expect(Buffer.from(g).equals(disk.subarray(ranges[i]!.offset, ranges[i]!.offset + ranges[i]!.length))).toBe(true));
    await pool.close();
    // Every buffer handed out came back once (the last ones as their replies left).
    await vi.waitFor(() => expect(lent.size).toBe(0));
    expect(reads).toBe(3 * 64 + 40 * 2);
    expect({ released, strays }).toEqual({ released: reads, strays: 0 });
  });

  it('reports base:allocation by zero detection and from the source, and walks it merged', async () => {
    const disk = makeDisk();
    const { address } = await serve({
      exports: {
        scan: { source: memorySource(disk) },
        told: {
          source: memorySource(disk, {
            // A sloppy source: its last extent overruns the request; the server clamps it.
            blockStatus: async (offset, length) => [
              { offset, length: Math.min(length, MiB - (offset % MiB) || MiB), flags: 0 },
              { offset: offset + (MiB - (offset % MiB) || MiB), length: 64 * MiB, flags: 3 },
            ],
          }),
        },
      },
    });
    const scan = await NbdClient.connect(address, { exportName: 'scan', metaContexts: [BASE_ALLOCATION] });
    expect(await scan.blockStatus(0, 8 * MiB, BASE_ALLOCATION)).toEqual([
      { offset: 0, length: MiB, flags: 3 },
      { offset: MiB, length: 2 * MiB, flags: 0 },
      { offset: 3 * MiB, length: 2 * MiB + 4096, flags: 3 },
      { offset: 5 * MiB + 4096, length: MiB - 4096, flags: 0 },
      { offset: 6 * MiB, length: 2 * MiB, flags: 3 },
    ]);
    expect(await collect(allocatedExtents(scan, { windowBytes: 3 * MiB }))).toEqual([
      { offset: MiB, length: 2 * MiB, flags: 0 },
      { offset: 5 * MiB + 4096, length: MiB - 4096, flags: 0 },
    ]);
    const told = await NbdClient.connect(address, { exportName: 'told', metaContexts: [BASE_ALLOCATION] });
    expect(await told.blockStatus(512, 4 * MiB, BASE_ALLOCATION)).toEqual([
      { offset: 512, length: MiB - 512, flags: 0 },
      { offset: MiB, length: 3 * MiB + 512, flags: 3 },
    ]);
    await Promise.all([scan.close(), told.close()]);
  });

  it('takes writes into a memory overlay, merges reads, and leaves the base untouched', async () => {
    const disk = makeDisk();
    const base = Buffer.from(disk);
    const cow = await copyOnWrite(memorySource(disk), { blockSize: 4096, maxOverlayBytes: 64 * 4096 });
    const { address } = await serve({ exports: { rw: { source: cow } } });
    const a = await NbdClient.connect(address, { exportName: 'rw' });
    const b = await NbdClient.connect(address, { exportName: 'rw' });
    expect(a.readOnly).toBe(false);
    const model = Buffer.from(disk);
    const writes = [[100, 5000], [4096 * 10, 4096], [MiB - 3, 10], [8 * MiB - 700, 700]] as const;
    for (const [offset, length] of writes) {
      const data = randomBytes(length);
      data.copy(model, offset);
      await a.write(offset, data);
    }
    await a.flush();
    expect(Buffer.from(await b.read(0, 8 * MiB)).equals(model)).toBe(true);
    expect(disk.equals(base)).toBe(true);
    expect(cow.overlayBytes).toBe(6 * 4096); // blocks 0, 1, 10, 255, 256, 2047
    const full = await a.write(0, Buffer.alloc(100 * 4096, 1)).catch((e: unknown) => e);
    expect(full).toBeInstanceOf(NbdRequestError);
    expect((full as NbdRequestError).errno).toBe(NBD_ENOSPC);
    await Promise.all([a.close(), b.close()]);
    await cow.close();
  });

  it('keeps a temp-file overlay and deletes it on close', async () => {
    const dir = await h.tmpDir('cairn-nbd-overlay-');
    const disk = makeDisk();
    const cow = await copyOnWrite(fromRepositoryDisk({ sizeBytes: disk.length, read: async (o, l) => disk.subarray(o, o + l) }), { overlay: { dir } });
    const { address } = await serve({ exports: { rw: { source: cow } } });
    const c = await NbdClient.connect(address, { exportName: 'rw' });
    const data = randomBytes(3 * MiB + 17);
    await c.write(2 * MiB + 5, data);
    await c.flush();
    expect(Buffer.from(await c.read(2 * MiB + 5, data.length)).equals(data)).toBe(true);
    expect(Buffer.from(await c.read(0, 2 * MiB + 5)).equals(disk.subarray(0, 2 * MiB + 5))).toBe(true);
    expect((await readdir(dir)).length).toBe(1);
    await c.close();
    await cow.close();
    expect(await readdir(dir)).toEqual([]);
  });

  it('refuses writes to a read-only export with EPERM', async () => {
    const { address } = await serve({ exports: { ro: { source: memorySource(Buffer.alloc(MiB)) } } });
    // Our client refuses locally; a raw request shows the server's own answer.
    const c = await NbdClient.connect(address, { exportName: 'ro' });
    (c as unknown as { transmissionFlags: number }).transmissionFlags &= ~2;
    const e = await c.write(0, Buffer.alloc(512)).catch((x: unknown) => x);
    expect((e as NbdRequestError).errno).toBe(NBD_EPERM);
    await c.close();
  });

  it('answers NBD_OPT_INFO and refuses unknown exports', async () => {
    const { address } = await serve({ exports: { disk: { source: memorySource(Buffer.alloc(3 * MiB)), description: 'three' } } });
    const info = await NbdClient.info(address, { exportName: 'disk' });
    expect(info).toMatchObject({ size: 3 * MiB, readOnly: true, canMultiConn: true });
    expect(info.blockSizes.maximum).toBe(32 * MiB);
    await expect(NbdClient.connect(address, { exportName: 'nope' })).rejects.toBeInstanceOf(NbdOptionError);
  });

  it('works over TCP', async () => {
    const disk = makeDisk();
    const server = new NbdServer({ exports: { '': { source: memorySource(disk) } } });
    const address = await server.listen({ host: '127.0.0.1', port: 0 });
    h.onClose(() => server.close());
    const c = await NbdClient.connect(address, { exportName: '' });
    expect(Buffer.from(await c.read(MiB - 10, 100)).equals(disk.subarray(MiB - 10, MiB + 90))).toBe(true);
    await c.close();
  });

  it('speaks TLS after STARTTLS, and refuses clients that will not or cannot verify', async () => {
    const pki = await makeTestPki(await h.tmpDir('cairn-nbd-pki-'));
    const disk = makeDisk();
    const { address } = await serve({ exports: { disk: { source: memorySource(disk) } }, tls: { key: pki.key, cert: pki.cert } });
    const c = await NbdClient.connect(address, { exportName: 'disk', tls: { ca: pki.ca }, metaContexts: [BASE_ALLOCATION] });
    expect(Buffer.from(await c.read(0, 8 * MiB)).equals(disk)).toBe(true);
    expect((await c.blockStatus(0, MiB, BASE_ALLOCATION))[0]).toEqual({ offset: 0, length: MiB, flags: 3 });
    await c.close();
    await expect(NbdClient.connect(address, { exportName: 'disk' })).rejects.toThrow(/TLS required/);
    const otherCa = await makeTestPki(await h.tmpDir('cairn-nbd-pki2-'));
    await expect(NbdClient.connect(address, { exportName: 'disk', tls: { ca: otherCa.ca } })).rejects.toThrow(/TLS|certificate/);
  });

  it('drops a client that does not finish the handshake in time', async () => {
    const { address } = await serve({ exports: { disk: { source: memorySource(Buffer.alloc(MiB)) } }, handshakeTimeoutMs: 200 });
    const socket = net.connect(address.path);
    socket.on('data', () => undefined);
    await new Promise<void>((resolve) => socket.on('close', () => resolve()));
  });
});
