// A download whose reader goes away stops reading the disk: a real libguestfs appliance reads a
// 120 MiB file from a real NBD restore export over real NATS file streams; the reader takes a
// few chunks and stops (as the gateway does when an HTTP client aborts). Before, the data mover
// drained the appliance to the file's end; now the transfer is cancelled in the appliance, the
// disk reads stop with the download, and the same appliance serves the next download whole.
// A zip that asked for progress publishes bytes so far of its total, to the end. One appliance
// for the file (its start is 20-75 s under TCG).
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { buildFilesDisk, createHarness, waitFor, type FilesDisk } from '@cairn/testing';
import { InMemoryEventLog } from '@cairn/eventlog';
import { FileStreamServer, pullFileStream } from '@cairn/messaging';
import type { DiskReader } from '@cairn/repository';
import { FileBrowser, type BrowsedRepository } from './file-browser.ts';
import { RestoreExports } from './restore-exports.ts';

const SITE = 'site-a';
const MiB = 1024 * 1024;
const RP = '0195c0de-0000-7000-8000-00000000d15c';
const h = createHarness();
let disk: FilesDisk;
let nc: NatsConnection;
let browser: FileBrowser;
/** Bytes the data mover read from the restore point (what the appliance asked for over NBD). */
let diskBytesRead = 0;
const ended: Array<Record<string, unknown>> = [];
const progress: Array<{ id: string; disk: string; bytesDone: number; bytesPlanned: number | null }> = [];
let outDir: string;

beforeAll(async () => {
  const dir = await h.tmpDir('download-cancel-');
  outDir = dir;
  disk = await buildFilesDisk(dir, { bigBytes: 120 * MiB });
  const fh = await open(disk.raw, 'r');
  h.onClose(() => fh.close());
  // The restore point's disk as the repository reader gives it, counting what is read.
  const reader: DiskReader = {
    restorePointId: RP, name: 'disk0', sizeBytes: disk.sizeBytes, chunkSize: 4 * MiB,
    async read(offset, length) {
      const b = Buffer.alloc(length);
      await fh.read(b, 0, length, offset);
      diskBytesRead += length;
      return b;
    },
    async chunkIdAt() { return 'data'; },
  };
  const repository = {
    listRestorePoints: async () => [{ id: RP, disks: [{ name: 'disk0', sizeBytes: disk.sizeBytes }] }],
    openDisk: async () => reader,
  } as unknown as BrowsedRepository;
  const nats = await h.nats();
  nc = await connect({ servers: nats.url });
  h.onClose(() => nc.drain());
  const streams = new FileStreamServer(nc, SITE);
  streams.start();
  h.onClose(() => streams.close());
  await nc.flush();
  const exports = new RestoreExports(join(dir, 'run'));
  h.onClose(() => exports.close());
  browser = new FileBrowser({ site: SITE, index: false, publishProgress: (id, p) => progress.push({ id, ...p }) }, new InMemoryEventLog(SITE), async () => ({ repository, replica: false }), exports,
    async (p) => p, { info: (o, msg) => { if (msg === 'download ended') ended.push(o as Record<string, unknown>); }, warn: () => undefined }, () => [], streams);
  h.onClose(() => browser.close());
}, 300_000);

afterAll(() => h.close(), 120_000);

const actor = { kind: 'user' as const, id: 'anna' };

describe('a download whose reader goes away', () => {
  it('stops the appliance reading the disk, and the appliance serves the next download whole', async () => {
    const big = disk.files.find((f) => f.path === '/part1/big.bin')!;
    const opened = await browser.openDownload({ restorePointId: RP, paths: [big.path], format: 'file' }, actor, 'c1');
    expect(opened.bytes).toBe(120 * MiB);
    const before = diskBytesRead;
    let got = 0;
    for await (const c of pullFileStream(nc, SITE, opened.streamId)) {
      got += c.length;
      if (got >= 2 * MiB) break; // the reader goes away: pullFileStream sends the cancel
    }
    const outcome = await waitFor(() => ended[0], { timeoutMs: 120_000, what: 'the download to end' });
    expect(outcome).toMatchObject({ how: 'cancelled' });
    // The next command of the appliance runs once the cancelled transfer has ended in it.
    expect((await browser.browse({ restorePointId: RP, op: 'stat', path: big.path }, actor, 'c2')).entries[0]).toMatchObject({ size: 120 * MiB });
    const read = diskBytesRead - before;
    console.log(`cancelled after ${got} bytes pulled: ${(read / MiB).toFixed(1)} MiB read from the disk of a ${120} MiB file`);
    // The appliance reads ahead (libguestfs chunks, the pipe, the kernel's readahead), not to the end.
    expect(read).toBeLessThan(40 * MiB);

    // A zip of the same file, cancelled: the archive stops the file being read too.
    const zip = await browser.openDownload({ restorePointId: RP, paths: ['/part1/big.bin', '/part2/data.bin'], format: 'zip' }, actor, 'c3');
    const beforeZip = diskBytesRead;
    got = 0;
    for await (const c of pullFileStream(nc, SITE, zip.streamId)) {
      got += c.length;
      if (got >= 2 * MiB) break;
    }
    expect(await waitFor(() => ended[1], { timeoutMs: 120_000, what: 'the zip download to end' })).toMatchObject({ how: 'cancelled' });
    await browser.browse({ restorePointId: RP, op: 'stat', path: big.path }, actor, 'c4');
    const zipRead = diskBytesRead - beforeZip;
    console.log(`zip cancelled after ${got} bytes pulled: ${(zipRead / MiB).toFixed(1)} MiB read from the disk`);
    expect(zipRead).toBeLessThan(40 * MiB);

    // The same appliance serves the next download whole and right.
    const small = disk.files.find((f) => f.path === '/part2/data.bin')!;
    const next = await browser.openDownload({ restorePointId: RP, paths: [small.path], format: 'file' }, actor, 'c5');
    const parts: Buffer[] = [];
    for await (const c of pullFileStream(nc, SITE, next.streamId)) parts.push(c);
    expect(createHash('sha256').update(Buffer.concat(parts)).digest('hex')).toBe(small.sha256);
    expect(browser.pool.started).toBe(1);

    // A zip on the mover's host that asked for progress tells bytes so far of the total (cairn files get --zip draws it).
    const zipped = await browser.restoreFiles({ restorePointId: RP, paths: ['/part1/big.bin', small.path], target: { kind: 'zip', path: join(outDir, 'out.zip') }, progressId: 'p1' }, actor, 'c6');
    const mine = progress.filter((p) => p.id === 'p1');
    expect(mine.length).toBeGreaterThan(2);
    expect(mine.every((p, i) => p.bytesPlanned === 120 * MiB + small.size! && p.disk === 'disk0' && (i === 0 || p.bytesDone >= mine[i - 1]!.bytesDone))).toBe(true);
    expect(mine.at(-1)!.bytesDone).toBe(zipped.bytes);
  }, 600_000);
});
