// A browsing session with a real libguestfs appliance over a real NBD export (our own server)
// of a GPT disk holding ext4, xfs and FAT partitions: listing, status, copies that keep
// content, modes, times, links and holes, ranges, tar; bad paths. One appliance for the file.
import { createHash } from 'node:crypto';
import { lstat, readFile, readlink, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extract } from 'tar-stream';
import { NbdServer, openFileSource } from '@cairn/nbd';
import { buildFilesDisk, createHarness, type FilesDisk } from '@cairn/testing';
import { BrowseSession, GuestFilesError } from './browse-session.ts';
import { copyOut, TargetExistsError } from './local-copy.ts';
import { runningAppliances } from './guestfish.ts';

const h = createHarness();
let disk: FilesDisk;
let session: BrowseSession;
let server: NbdServer;
let dir: string;

beforeAll(async () => {
  dir = await h.tmpDir('guest-files-');
  disk = await buildFilesDisk(dir);
  const source = await openFileSource(disk.raw);
  h.onClose(() => source.close());
  server = new NbdServer({ exports: { rp: { source, description: 'test disk' } } });
  const socket = join(dir, 'nbd.sock');
  await server.listen({ path: socket });
  h.onClose(() => server.close());
  session = await BrowseSession.open({ uri: `nbd:///rp?socket=${socket}` }, { label: 'disk0 of the test point' });
  h.onClose(() => session.close());
}, 300_000);

afterAll(() => h.close(), 120_000);

describe('browsing a GPT disk with ext4, xfs and FAT through a libguestfs appliance', () => {
  it('lists the file systems and every file with its type, size, mode and time', async () => {
    expect(session.filesystems.map((f) => [f.name, f.type, f.mounted])).toEqual([
      ['part1', 'ext4', true], ['part2', 'xfs', true], ['part3', 'vfat', true],
    ]);
    expect((await session.ls('/')).map((e) => e.name)).toEqual(['part1', 'part2', 'part3']);
    for (const f of disk.files) {
      const parent = f.path.slice(0, f.path.lastIndexOf('/'));
      const listed = (await session.ls(parent)).find((e) => e.path === f.path);
      expect(listed, `${f.path} listed in ${parent}`).toBeDefined();
      expect(listed!.type).toBe(f.type);
      if (f.size !== undefined) expect(listed!.size).toBe(f.size);
      if (f.mode !== undefined) expect(listed!.mode, f.path).toBe(f.mode);
      if (f.mtimeSec !== undefined) expect(Date.parse(listed!.mtime) / 1000, f.path).toBe(f.mtimeSec);
      if (f.target !== undefined) expect(listed!.target).toBe(f.target);
    }
    expect(await session.ls('/part1/empty')).toEqual([]);
    const sparse = await session.stat('/part1/sparse.bin');
    expect(sparse.allocated).toBeLessThan(1024 * 1024);
  });

  it('copies every file out with equal SHA-256, modes and times; links stay links, holes stay holes', async () => {
    const to = join(dir, 'out');
    const report = await copyOut(session, ['/part1', '/part2', '/part3'], to);
    expect(report.skipped).toEqual([]);
    for (const f of disk.files) {
      const local = join(to, f.path);
      const st = await lstat(local);
      if (f.type === 'symlink') {
        expect(st.isSymbolicLink()).toBe(true);
        expect(await readlink(local)).toBe(f.target);
        continue;
      }
      if (f.type === 'directory') { expect(st.isDirectory(), f.path).toBe(true); }
      if (f.type === 'file') {
        expect(createHash('sha256').update(await readFile(local)).digest('hex'), f.path).toBe(f.sha256);
      }
      if (f.mode !== undefined) expect(st.mode & 0o7777, f.path).toBe(f.mode);
      if (f.mtimeSec !== undefined) expect(Math.floor(st.mtimeMs / 1000), f.path).toBe(f.mtimeSec);
      if (f.sparse) expect(st.blocks * 512, `${f.path} on the host`).toBeLessThan(1024 * 1024);
    }
    // Copying again without overwrite is refused and changes nothing.
    const before = (await stat(join(to, 'part1', 'big.bin'))).mtimeMs;
    await expect(copyOut(session, ['/part1/big.bin'], join(to, 'part1'))).rejects.toBeInstanceOf(TargetExistsError);
    expect((await stat(join(to, 'part1', 'big.bin'))).mtimeMs).toBe(before);
  }, 600_000);

  it('reads a byte range of a file and a directory as tar', async () => {
    const big = disk.files.find((f) => f.path === '/part1/big.bin')!;
    const whole = await readFile(join(dir, 'ext-root', 'big.bin'));
    const part = await session.read(big.path, { offset: 1_000_000, length: 70_000 });
    const chunks: Buffer[] = [];
    for await (const c of part.stream) chunks.push(c as Buffer);
    await part.done;
    expect(Buffer.concat(chunks).equals(whole.subarray(1_000_000, 1_070_000))).toBe(true);

    const tar = await session.tar('/part2');
    const names: string[] = [];
    const ex = extract();
    ex.on('entry', (header, stream, next) => { names.push(`${header.name}:${header.mode?.toString(8)}`); stream.resume(); stream.on('end', next); });
    tar.stream.pipe(ex);
    await new Promise((resolve, reject) => { ex.on('finish', resolve); ex.on('error', reject); });
    await tar.done;
    expect(names).toEqual(expect.arrayContaining(['./notes.txt:644', './data.bin:600', './sub/:750']));
  });

  it('names a path that does not exist, and refuses paths that are not plain absolute paths', async () => {
    await expect(session.ls('/part1/no such dir')).rejects.toMatchObject({ code: 'not_found', message: expect.stringMatching(/no such file or directory in disk0 of the test point/) });
    await expect(session.stat('/part9/x')).rejects.toMatchObject({ code: 'not_found' });
    await expect(session.ls('/part1/../etc')).rejects.toThrow(/"\.\." component/);
    await expect(session.ls('relative')).rejects.toThrow(/must start with \//);
    // The appliance is still there after the errors.
    expect((await session.ls('/part3')).map((e) => e.name)).toEqual(['Fat File.txt', 'folder']);
    expect(session.alive()).toBe(true);
    expect(await runningAppliances()).not.toHaveLength(0);
    expect(GuestFilesError).toBeDefined();
    // Memory of a warm session (guestfish server + QEMU with a 384 MiB appliance; TCG's
    // translation cache comes on top): bounded.
    const rss = await session.rssBytes();
    console.log(`warm browsing session RSS: ${(rss / 1024 / 1024).toFixed(0)} MiB`);
    expect(rss).toBeGreaterThan(0);
    expect(rss).toBeLessThan(1536 * 1024 * 1024);
  });
});
