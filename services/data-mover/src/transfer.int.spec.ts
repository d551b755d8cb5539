// runTransfer against real NBD exports: qemu-nbd serving a qcow2 with a persistent dirty
// bitmap, into a directory repository; what comes back must equal the image.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { useHarness, waitFor } from '@cairn/testing';
import { DirectoryBackend, initRepository } from '@cairn/repository';
import { ReadBufferPool } from './read-buffers.ts';
import { runTransfer } from './transfer.ts';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const KiB = 1024;

async function qemuIo(image: string, cmd: string) {
  await run('qemu-io', ['-f', 'qcow2', '-c', cmd, image]);
}

/**
 * Stops a qemu-nbd and waits for it to exit: until then it holds the image's lock, and a
 * qemu-io write right after the signal could find the image still locked.
 */
async function stopped(server: ChildProcess): Promise<void> {
  if (server.exitCode !== null || server.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => server.once('exit', () => resolve()));
  server.kill('SIGTERM');
  await exited;
}

function serve(image: string, socket: string, bitmap?: string): ChildProcess {
  const args = ['-r', '-f', 'qcow2', '-t', '-e', '8', '-x', 'disk0', '--socket', socket, ...(bitmap ? ['-B', bitmap] : []), image];
  return spawn('qemu-nbd', args, { stdio: 'ignore' });
}

describe('transfer over NBD into the repository (real qemu-nbd)', () => {
  const h = useHarness();

  /**
   * A 16 MiB qcow2 after `writes` (qemu-io commands) with bitmap b0 added, an empty repository
   * beside it, and qemu-nbd serving the image (a test stops it and serves it again with b0).
   */
  async function served(writes: readonly string[]) {
    const dir = await h.tmpDir();
    const image = join(dir, 'disk.qcow2');
    await run('qemu-img', ['create', '-f', 'qcow2', image, String(16 * MiB)]);
    for (const w of writes) await qemuIo(image, w);
    await run('qemu-img', ['bitmap', '--add', image, 'b0']);
    const repo = await initRepository(new DirectoryBackend(join(dir, 'repo'), { createRoot: true }), { passphrase: 'pw', kdf: { N: 1024 } });
    const socket = join(dir, 'nbd.sock');
    const nbd = { server: serve(image, socket) };
    h.onClose(() => nbd.server.kill('SIGKILL'));
    await waitFor(() => run('nbdinfo', [`nbd+unix:///disk0?socket=${socket}`]).then(() => true), { what: 'qemu-nbd' });
    return { dir, image, repo, socket, nbd };
  }

  it('a full then an incremental read only what changed and restore byte-identical', async () => {
    // Data in a few places, a hole elsewhere.
    const { dir, image, repo, socket, nbd } = await served([`write -P 0x11 0 ${2 * MiB}`, `write -P 0x22 ${8 * MiB} ${1 * MiB}`]);
    const vm = { id: 'vm1', name: 'demo' };
    const full = await runTransfer({
      jobId: 'job1', vm, mode: 'auto',
      nbd: { socket, exports: [{ disk: 'disk0', exportName: 'disk0', sizeBytes: 16 * MiB, mode: 'full', reason: 'first backup' }] },
    }, { repository: repo });
    await stopped(nbd.server);
    expect(full.parentId).toBeNull();
    expect(full.disks[0]).toMatchObject({ mode: 'full', bytesRead: 3 * MiB });

    // Scattered 64 KiB writes, recorded by the persistent bitmap.
    const writes = [0, 5 * MiB, 8 * MiB + 64 * KiB, 15 * MiB + 192 * KiB];
    for (const [i, off] of writes.entries()) await qemuIo(image, `write -P ${0x30 + i} ${off} ${64 * KiB}`);

    nbd.server = serve(image, socket, 'b0');
    await waitFor(() => run('nbdinfo', [`nbd+unix:///disk0?socket=${socket}`]).then(() => true), { what: 'qemu-nbd' });
    const inc = await runTransfer({
      jobId: 'job2', vm, mode: 'auto',
      nbd: { socket, exports: [{ disk: 'disk0', exportName: 'disk0', sizeBytes: 16 * MiB, mode: 'incremental', reason: 'bitmap b0', dirtyBitmapContext: 'qemu:dirty-bitmap:b0' }] },
    }, { repository: repo, unchangedFrom: 'source' });
    // unchangedFrom 'parent' (the default): exactly the written 64 KiB blocks come from the
    // hypervisor; the rest of each chunk is the parent's, referred to as pieces (index format 2).
    const fromParent = await runTransfer({
      jobId: 'job2p', vm, mode: 'auto', parent: { restorePointId: full.restorePointId, disks: [{ name: 'disk0', sizeBytes: 16 * MiB }] },
      nbd: { socket, exports: [{ disk: 'disk0', exportName: 'disk0', sizeBytes: 16 * MiB, mode: 'incremental', reason: 'bitmap b0', dirtyBitmapContext: 'qemu:dirty-bitmap:b0' }] },
    }, { repository: repo });
    expect(fromParent.parentId).toBe(full.restorePointId);
    expect(fromParent.disks[0]!.bytesRead).toBe(writes.length * 64 * KiB);
    const pieced = await repo.getManifest(fromParent.restorePointId);
    expect(pieced.version).toBe(2);
    // The four changed 64 KiB blocks share one new chunk (a pack of up to the chunk size,
    // docs/repository.md): each pieced slot names its offset in it.
    expect(pieced.disks[0]).toMatchObject({ indexFormat: 2, stats: { slotsPieced: writes.length, chunksNew: 1 } });
    await stopped(nbd.server);
    expect(inc.parentId).toBe(full.restorePointId);
    expect(inc.disks[0]!.mode).toBe('incremental');
    // unchangedFrom 'source': the chunks holding the written 64 KiB blocks are read whole from
    // the hypervisor (one 256 KiB chunk each), nothing else.
    expect(inc.disks[0]!.bytesRead).toBe(writes.length * repo.chunkSize);

    // The same job delivered again finds its restore point instead of writing a second one.
    const again = await runTransfer({
      jobId: 'job2', vm, mode: 'auto',
      nbd: { socket, exports: [{ disk: 'disk0', exportName: 'disk0', sizeBytes: 16 * MiB, mode: 'incremental', reason: 'bitmap b0', dirtyBitmapContext: 'qemu:dirty-bitmap:b0' }] },
    }, { repository: repo });
    expect(again.restorePointId).toBe(inc.restorePointId);

    // Work whose parent the scheduler ruled out (null: older than its chain's last backup) reads
    // every allocated extent from the incremental view, redelivered too (the repository's
    // newest point is not taken instead).
    nbd.server = serve(image, socket, 'b0');
    await waitFor(() => run('nbdinfo', [`nbd+unix:///disk0?socket=${socket}`]).then(() => true), { what: 'qemu-nbd' });
    const whole = await runTransfer({
      jobId: 'job3', vm, mode: 'auto', parent: null, redelivered: true,
      nbd: { socket, exports: [{ disk: 'disk0', exportName: 'disk0', sizeBytes: 16 * MiB, mode: 'incremental', reason: 'bitmap b0', dirtyBitmapContext: 'qemu:dirty-bitmap:b0' }] },
    }, { repository: repo });
    await stopped(nbd.server);
    expect(whole.parentId).toBeNull();
    expect(whole.disks[0]!.mode).toBe('full');
    expect(whole.disks[0]!.bytesRead).toBeGreaterThanOrEqual(3 * MiB + 2 * 64 * KiB); // every allocated extent, not the 4 changed blocks

    const raw = join(dir, 'now.raw');
    await run('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', image, raw]);
    const restored = join(dir, 'restored.raw');
    for (const rp of [inc.restorePointId, fromParent.restorePointId, whole.restorePointId]) {
      await repo.restoreDisk(rp, 'disk0', restored, { overwrite: true });
      expect(Buffer.compare(await readFile(restored), await readFile(raw)), rp).toBe(0);
    }
    await repo.close();
  });

  it("an incremental's changed blocks read into reused buffers (the full's, through the mover's pool) stay intact when many windows pass through them", async () => {
    const { dir, image, repo, socket, nbd } = await served([`write -P 0x11 0 ${16 * MiB}`]);
    const vm = { id: 'vm1', name: 'demo' };
    // One pool for both transfers, as a mover's: the incremental reads into the full's buffers, full of its data.
    const buffers = new ReadBufferPool();
    const full = await runTransfer({
      jobId: 'job1', vm, mode: 'auto',
      nbd: { socket, exports: [{ disk: 'disk0', exportName: 'disk0', sizeBytes: 16 * MiB, mode: 'full', reason: 'first backup' }] },
    }, { repository: repo, buffers });
    await stopped(nbd.server);
    expect(buffers.heldBytes).toBeGreaterThan(0);

    // 24 windows through a ring of readAhead + 2 = 4 buffers: one 64 KiB block per chunk, two
    // apart in one chunk (two ranges in one window), and a run across two chunks.
    const writes: Array<[number, number]> = Array.from({ length: 20 }, (_, i) => [(i * 3 + 1) * 256 * KiB + 64 * KiB, 64 * KiB] as [number, number]);
    writes.push([15 * MiB, 64 * KiB], [15 * MiB + 192 * KiB, 64 * KiB], [14 * MiB + 192 * KiB, 128 * KiB]);
    for (const [i, [off, len]] of writes.entries()) await qemuIo(image, `write -P ${0x30 + i} ${off} ${len}`);
    nbd.server = serve(image, socket, 'b0');
    await waitFor(() => run('nbdinfo', [`nbd+unix:///disk0?socket=${socket}`]).then(() => true), { what: 'qemu-nbd' });
    const inc = await runTransfer({
      jobId: 'job2', vm, mode: 'auto', parent: { restorePointId: full.restorePointId, disks: [{ name: 'disk0', sizeBytes: 16 * MiB }] },
      nbd: { socket, exports: [{ disk: 'disk0', exportName: 'disk0', sizeBytes: 16 * MiB, mode: 'incremental', reason: 'bitmap b0', dirtyBitmapContext: 'qemu:dirty-bitmap:b0' }] },
    }, { repository: repo, readAhead: 2, buffers });
    await stopped(nbd.server);
    expect(inc.disks[0]!.bytesRead).toBe(writes.reduce((n, [, len]) => n + len, 0));

    const raw = join(dir, 'now.raw');
    await run('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', image, raw]);
    const restored = join(dir, 'restored.raw');
    await repo.restoreDisk(inc.restorePointId, 'disk0', restored);
    expect(Buffer.compare(await readFile(restored), await readFile(raw))).toBe(0);
    await repo.close();
  });

  it("a full reads only a window's allocated parts, zeroes its holes in reused buffers, and restores byte-identical", async () => {
    // 64 KiB blocks inside 256 KiB chunks: two in one chunk with a hole between, one alone, a
    // 32 KiB write inside a cluster, a run across a chunk boundary.
    const blocks: Array<[number, number]> = [[64 * KiB, 64 * KiB], [192 * KiB, 64 * KiB], [MiB + 128 * KiB, 64 * KiB], [3 * MiB + 16 * KiB, 32 * KiB], [5 * MiB + 192 * KiB, 128 * KiB]];
    const { dir, image, repo, socket, nbd } = await served(blocks.map(([off, len], i) => `write -P ${0x41 + i} ${off} ${len}`));
    // Buffers a previous job filled with data: a hole left unzeroed would be stored as that data.
    const buffers = new ReadBufferPool();
    buffers.give([18, 19, 20, 21, 22].flatMap((p) => Array.from({ length: 8 }, () => Buffer.alloc(2 ** p, 0xab))));
    const full = await runTransfer({
      jobId: 'job1', vm: { id: 'vm1', name: 'demo' }, mode: 'auto',
      nbd: { socket, exports: [{ disk: 'disk0', exportName: 'disk0', sizeBytes: 16 * MiB, mode: 'full', reason: 'first backup' }] },
    }, { repository: repo, buffers, readAhead: 2 });
    await stopped(nbd.server);
    // What the block status says may hold data (qemu-nbd reports the rest of the 32 KiB write's
    // cluster as zeros), not the five 256 KiB chunks around it.
    expect(full.disks[0]).toMatchObject({ mode: 'full', bytesRead: 5 * 64 * KiB + 32 * KiB });

    const raw = join(dir, 'now.raw');
    await run('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', image, raw]);
    const restored = join(dir, 'restored.raw');
    await repo.restoreDisk(full.restorePointId, 'disk0', restored);
    expect(Buffer.compare(await readFile(restored), await readFile(raw))).toBe(0);
    await repo.close();
  });

  it('an export that cannot be opened fails the transfer with its own error and commits nothing', async () => {
    const dir = await h.tmpDir();
    const repo = await initRepository(new DirectoryBackend(join(dir, 'repo'), { createRoot: true }), { passphrase: 'pw', kdf: { N: 1024 } });
    // The repository writer starts at once (lease, parent): the export's failure must still be what the caller sees.
    await expect(runTransfer({
      jobId: 'job-x', vm: { id: 'vm1', name: 'demo' }, mode: 'auto',
      nbd: { socket: join(dir, 'nobody-listens.sock'), exports: [{ disk: 'disk0', exportName: 'disk0', sizeBytes: 16 * MiB, mode: 'full', reason: 'first backup' }] },
    }, { repository: repo })).rejects.toThrow(/ENOENT|connect/);
    expect(await repo.listRestorePoints()).toEqual([]);
    await repo.close();
  });
});

