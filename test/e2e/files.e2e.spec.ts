// File-level restore end to end (real NATS, real QEMU, real libguestfs): a VM whose disk is a
// GPT disk with ext4, xfs and FAT partitions is backed up through the pipeline; `cairn files
// ls|stat|get` list and copy every file out of the restore point with equal SHA-256, modes,
// times, links and holes; the REST routes list, download with byte ranges and stream zip and
// tar archives (checked with unzip and tar); files are written back into a second, running
// guest through its real qemu-ga; bad input (a missing path, a disk without a file system, a
// LUKS partition, another site's restore point without its key) is refused clearly with no
// appliance or export left; every act is in the audit trail. One stack, one backup and one
// appliance (kept warm by the data mover) for the whole file.
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { lstat, mkdir, open as openFile, readFile, readlink, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootGuest, buildBlankDisk, buildFilesDisk, buildGuestImage, buildLuksDisk, createHarness, waitFor, type BootedGuest, type FilesDisk } from '@cairn/testing';
import { DirectoryBackend, initRepository, type Repository } from '@cairn/repository';
import { GuestAgentClient } from '@cairn/hypervisor';
import { readFromGuest, writeIntoGuest } from '@cairn/guest-files';
import { Readable } from 'node:stream';
import { CatalogueClient } from '@cairn/catalogue-client';
import { startDemoVm, startStack } from '@cairn/cli';
import { CommandBus } from '@cairn/messaging';
import { cli, waitForJobEnd } from './e2e-helpers.ts';
import { axeSerious, ensureConsoleBuilt, launchChromium, screenshot } from './console-helpers.ts';

// The suite turns background file indexes off (vitest.config.ts); this file is about them.
process.env['CAIRN_FILE_INDEX'] = '1';
const run = promisify(execFile);
const h = createHarness();
let dataDir: string;
let disk: FilesDisk;
let rp: string;
let args: string[];
let bus: CommandBus;
let catalogue: CatalogueClient;
let stack: Awaited<ReturnType<typeof startStack>>;
let guest: BootedGuest;

/** A gateway request with the bootstrap administrator's token (or another). */
async function api(path: string, headers: Record<string, string> = {}, token = stack.gatewayToken): Promise<Response> {
  return fetch(`${stack.gatewayUrl}${path}`, { headers: { Authorization: `Bearer ${token}`, ...headers } });
}

/** Stores a raw image as a disk of a restore point written straight into a repository (chunk-aligned, zero chunks left out). */
async function storeRaw(repo: Repository, vm: string, disks: Array<{ name: string; raw: string }>): Promise<string> {
  const CHUNK = 256 * 1024;
  const input = await Promise.all(disks.map(async (d) => {
    const fh = await openFile(d.raw, 'r');
    const { size } = await fh.stat();
    async function* extents() {
      try {
        for (let offset = 0; offset < size; offset += CHUNK) {
          const data = Buffer.alloc(Math.min(CHUNK, size - offset));
          await fh.read(data, 0, data.length, offset);
          if (data.some((b) => b !== 0)) yield { offset, data };
        }
      } finally { await fh.close(); }
    }
    return { name: d.name, sizeBytes: size, extents: extents() };
  }));
  return (await repo.writeRestorePoint({ vm: { id: vm, name: vm }, disks: input })).restorePointId;
}

async function appliancesOf(text: string): Promise<number[]> {
  const out: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const cmd = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes(text) && (cmd.startsWith('guestfish') || cmd.includes('qemu-system'))) out.push(Number(name));
  }
  return out;
}

beforeAll(async () => {
  // Built before the gateway starts: it reads the console's index.html once.
  await ensureConsoleBuilt();
  dataDir = await h.tmpDir('cairn-files-');
  disk = await buildFilesDisk(join(dataDir, 'img'));
  await mkdir(join(dataDir, 'vm'), { recursive: true });
  await run('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', disk.raw, join(dataDir, 'vm', 'disk0.qcow2')]);
  const vm = await startDemoVm(join(dataDir, 'vm'), 'files-vm', disk.sizeBytes);
  h.onClose(() => vm.stop());
  // A second, running guest with the real qemu-ga: files are written back into it.
  const image = await buildGuestImage({ dir: join(dataDir, 'guest'), hostname: 'files-target', guestAgent: true });
  guest = await bootGuest({ image, dir: join(dataDir, 'guest', 'run'), guestAgent: true, args: ['-name', 'files-target'] });
  h.onClose(() => guest.kill());
  stack = await startStack({ dataDir, qemu: [{ qmpSocket: vm.qmpPath }, { qmpSocket: guest.qmpPath, guestAgentSocket: guest.agentSocket }] });
  h.onClose(() => stack.stop());
  catalogue = new CatalogueClient(stack.nc, { site: stack.site });
  bus = new CommandBus(stack.nc, { site: stack.site, actor: stack.operator?.actor ?? { kind: 'user', id: 'files-e2e' }, ...(stack.operator ? { signer: stack.operator.signer } : {}) });
  await waitFor(async () => (await catalogue.query('vm.list', {})).items.some((v) => v.name === 'files-vm'), { what: 'the VM in the catalogue' });
  args = ['--data', dataDir];
  const b = await cli([...args, '--json', 'backup', 'files-vm']);
  expect(b.code, b.stderr).toBe(0);
  const job = await waitForJobEnd(catalogue, (JSON.parse(b.stdout) as { jobId: string }).jobId, 240_000);
  expect(job.state, JSON.stringify(job.failure)).toBe('completed');
  rp = job.restorePointId!;
}, 400_000);

afterAll(() => h.close(), 120_000);

describe('file-level restore (real QEMU, real libguestfs)', () => {
  it('lists every file of the ext4, xfs and FAT partitions with type, size, mode and time', async () => {
    const root = await cli([...args, '--json', 'files', 'ls', rp, '/'], {}, 400_000);
    expect(root.code, root.stderr).toBe(0);
    const listed = JSON.parse(root.stdout) as { entries: Array<{ name: string }>; filesystems: Array<{ name: string; type: string }> };
    expect(listed.filesystems.map((f) => `${f.name}:${f.type}`)).toEqual(['part1:ext4', 'part2:xfs', 'part3:vfat']);
    expect(listed.entries.map((e) => e.name)).toEqual(['part1', 'part2', 'part3']);
    // Each directory once, in-process (a CLI start costs seconds on a loaded machine).
    const listings = new Map<string, Array<{ path: string; type: string; size: number; mode: number; mtime: string; target?: string }>>();
    for (const f of disk.files) {
      const parent = f.path.slice(0, f.path.lastIndexOf('/'));
      if (!listings.has(parent)) {
        const r = await bus.send('data-mover', 'BrowseFiles', { restorePointId: rp, op: 'list', path: parent }, { timeoutMs: 300_000 });
        expect(r.accepted, JSON.stringify(r)).toBe(true);
        listings.set(parent, (r as { result: { entries: Array<{ path: string; type: string; size: number; mode: number; mtime: string }> } }).result.entries);
      }
      const e = listings.get(parent)!.find((x) => x.path === f.path);
      expect(e, `${f.path} listed`).toBeDefined();
      expect(e!.type).toBe(f.type);
      if (f.size !== undefined) expect(e!.size).toBe(f.size);
      if (f.mode !== undefined) expect(e!.mode, f.path).toBe(f.mode);
      if (f.mtimeSec !== undefined) expect(Date.parse(e!.mtime) / 1000, f.path).toBe(f.mtimeSec);
      if (f.target !== undefined) expect(e!.target).toBe(f.target);
    }
    const human = await cli([...args, 'files', 'ls', rp, '/part1']);
    expect(human.stdout).toMatch(/-rw-r-----\s+0:0\s+52428800\s+2020-01-02T03:04:05Z\s+big\.bin/);
    expect(human.stdout).toMatch(/link to naïve -> dir with spaces\/naïve file\.txt/);
    const st = await cli([...args, 'files', 'stat', rp, '/part1/sparse.bin']);
    expect(st.stdout).toMatch(/size {6}1073741824 \(1\.0 GiB; 4\.0 KiB allocated\)/);
  }, 500_000);

  it('copies every file out with equal SHA-256, modes and times; links and holes kept; a tar of a directory', async () => {
    const to = join(dataDir, 'restores', 'out');
    const r = await cli([...args, '--json', 'files', 'get', rp, '/part1', '/part2', '/part3', '--to', to], {}, 600_000);
    expect(r.code, r.stderr).toBe(0);
    for (const f of disk.files) {
      const local = join(to, f.path);
      const st = await lstat(local);
      if (f.type === 'symlink') { expect(await readlink(local)).toBe(f.target); continue; }
      if (f.type === 'file') expect(createHash('sha256').update(await readFile(local)).digest('hex'), f.path).toBe(f.sha256);
      if (f.mode !== undefined) expect(st.mode & 0o7777, f.path).toBe(f.mode);
      if (f.mtimeSec !== undefined) expect(Math.floor(st.mtimeMs / 1000), f.path).toBe(f.mtimeSec);
      if (f.sparse) expect(st.blocks * 512, `${f.path} stays sparse`).toBeLessThan(1024 * 1024);
    }
    const tar = join(dataDir, 'restores', 'part2.tar');
    const t = await cli([...args, 'files', 'get', rp, '/part2', '--tar', tar]);
    expect(t.code, t.stderr).toBe(0);
    const { stdout } = await run('tar', ['-tvf', tar]);
    expect(stdout).toMatch(/-rw------- 1000\/1000\s+3145745 .* \.\/data\.bin/);
  }, 600_000);

  it('refuses bad input clearly and changes nothing', async () => {
    const missing = await cli([...args, 'files', 'ls', rp, '/part1/no such dir']);
    expect(missing.code).toBe(3);
    expect(missing.stderr).toMatch(/\/part1\/no such dir: no such file or directory in disk0 of restore point/);
    const refused = async (path: string) => bus.send('data-mover', 'BrowseFiles', { restorePointId: rp, op: 'stat', path });
    expect(await refused('/part7/x')).toMatchObject({ accepted: false, error: { code: 'not_found', message: expect.stringMatching(/file systems: part1, part2, part3/) } });
    expect(await refused('/part1/../../etc')).toMatchObject({ accepted: false, error: { code: 'invalid_command' } });
    expect(await bus.send('data-mover', 'BrowseFiles', { restorePointId: 'no-such-point', op: 'list', path: '/' }))
      .toMatchObject({ accepted: false, error: { code: 'not_found', message: expect.stringMatching(/no restore point no-such-point/) } });
    expect(await bus.send('data-mover', 'BrowseFiles', { restorePointId: rp, disk: 'disk9', op: 'list', path: '/' }))
      .toMatchObject({ accepted: false, error: { code: 'not_found', message: expect.stringMatching(/has no disk "disk9"/) } });
    // An existing target is not replaced without --overwrite.
    const keep = join(dataDir, 'restores', 'keep');
    await mkdir(keep, { recursive: true });
    await writeFile(join(keep, 'notes.txt'), 'precious');
    const clobber = await cli([...args, 'files', 'get', rp, '/part2/notes.txt', '--to', keep]);
    expect(clobber.code, clobber.stderr).toBe(4);
    expect(clobber.stderr).toMatch(/exists; nothing was changed/);
    expect(await readFile(join(keep, 'notes.txt'), 'utf8')).toBe('precious');
    const over = await bus.send('data-mover', 'RestoreFiles', { restorePointId: rp, paths: ['/part2/notes.txt'], target: { kind: 'directory', path: keep }, overwrite: true });
    expect(over.accepted, JSON.stringify(over)).toBe(true);
    expect(await readFile(join(keep, 'notes.txt'), 'utf8')).toBe('a note on xfs\n');
    // A target in a forbidden place: refused.
    expect(await bus.send('data-mover', 'RestoreFiles', { restorePointId: rp, paths: ['/part2/notes.txt'], target: { kind: 'directory', path: join(dataDir, 'repository', 'x') } }))
      .toMatchObject({ accepted: false, error: { code: 'forbidden', message: expect.stringMatching(/restore target/) } });
  }, 300_000);

  it('indexes the restore point after the backup; `files search` finds files there by name', async () => {
    const found = await waitFor(async () => {
      const r = await bus.send('data-mover', 'SearchFiles', { pattern: 'Grüße*' });
      return r.accepted && (r.result as { matches: unknown[] }).matches.length > 0 ? r.result : undefined;
    }, { timeoutMs: 300_000, intervalMs: 2000, what: 'the file index of the restore point' });
    const greeting = disk.files.find((f) => f.path === '/part1/café ünïcödé/Grüße ☃.txt')!;
    expect(found).toMatchObject({ matches: [{ restorePointId: rp, disk: 'disk0', path: greeting.path, size: greeting.size }], pointsWithoutIndex: [] });
    const r = await cli([...args, 'files', 'search', '*.bin', '--vm', 'files-vm']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/files-vm:disk0:\/part1\/big\.bin {2}in 1 of 1 restore points searched/);
    expect(r.stdout).toMatch(/files-vm:disk0:\/part2\/data\.bin/);
    const rest = await api(`/v1/files/search?pattern=${encodeURIComponent('Grüße*')}`);
    expect(rest.status).toBe(200);
    expect(await rest.json()).toMatchObject({ matches: [{ restorePointId: rp, path: greeting.path }] });
  }, 400_000);


  it('serves files over REST: a listing, a download resumed with byte ranges and an ETag, folders as zip and tar', async () => {
    const base = `/v1/restore-points/${rp}/files`;
    const q = (p: string) => encodeURIComponent(p);
    const listing = await api(`${base}?path=${q('/part1')}`);
    expect(listing.status).toBe(200);
    expect(((await listing.json()) as { entries: Array<{ name: string }> }).entries.map((e) => e.name)).toEqual(expect.arrayContaining(['big.bin', 'sparse.bin', 'link to naïve', 'empty']));
    const st = await api(`${base}/stat?path=${q('/part1/big.bin')}`);
    expect(await st.json()).toMatchObject({ type: 'file', size: 50 * 1024 * 1024, mode: 0o640 });

    // A 50 MiB file in two halves (a resumed download), each checked against the source.
    const big = disk.files.find((f) => f.path === '/part1/big.bin')!;
    const size = big.size!;
    const url = `${base}/content?path=${q(big.path)}`;
    const first = await api(url, { Range: `bytes=0-${size / 2 - 1}` });
    expect(first.status).toBe(206);
    expect(first.headers.get('content-range')).toBe(`bytes 0-${size / 2 - 1}/${size}`);
    expect(first.headers.get('accept-ranges')).toBe('bytes');
    expect(first.headers.get('content-disposition')).toBe(`attachment; filename="big.bin"; filename*=UTF-8''big.bin`);
    const etag = first.headers.get('etag')!;
    expect(etag).toMatch(/^"[0-9a-f]{32}"$/);
    const head = Buffer.from(await first.arrayBuffer());
    const rest = await api(url, { Range: `bytes=${size / 2}-`, 'If-Range': etag });
    expect(rest.status).toBe(206);
    expect(rest.headers.get('etag')).toBe(etag);
    const tail = Buffer.from(await rest.arrayBuffer());
    expect(createHash('sha256').update(head).update(tail).digest('hex')).toBe(big.sha256);
    const suffix = await api(url, { Range: 'bytes=-100' });
    expect(Buffer.from(await suffix.arrayBuffer()).equals(tail.subarray(tail.length - 100))).toBe(true);
    const past = await api(url, { Range: `bytes=${size}-` });
    expect(past.status).toBe(416);
    expect(past.headers.get('content-range')).toBe(`bytes */${size}`);
    expect(await past.json()).toMatchObject({ status: 416, detail: expect.stringMatching(/has 52428800 bytes/) });
    expect((await api(url, { 'If-None-Match': etag })).status).toBe(304);
    // A whole file, with a name that needs encoding.
    const greeting = disk.files.find((f) => f.path === '/part1/café ünïcödé/Grüße ☃.txt')!;
    const whole = await api(`${base}/content?path=${q(greeting.path)}`);
    expect(whole.status).toBe(200);
    expect(whole.headers.get('content-length')).toBe(String(greeting.size));
    expect(whole.headers.get('content-disposition')).toContain(`filename*=UTF-8''${encodeURIComponent('Grüße ☃.txt')}`);
    expect(createHash('sha256').update(Buffer.from(await whole.arrayBuffer())).digest('hex')).toBe(greeting.sha256);
    const missing = await api(`${base}/content?path=${q('/part1/no such file')}`);
    expect(missing.status).toBe(404);
    expect((await api(`${base}/content?path=${q('/part1/empty')}`)).status).toBe(400);

    // Folders and files as one zip, unpacked by unzip: contents, modes, times and the link kept.
    const zipUrl = `${base}/archive?format=zip&path=${q('/part1/dir with spaces')}&path=${q('/part1/café ünïcödé')}&path=${q('/part1/link to naïve')}&path=${q('/part1/run.sh')}&path=${q('/part3')}`;
    const zip = await api(zipUrl);
    expect(zip.status).toBe(200);
    expect(zip.headers.get('content-type')).toBe('application/zip');
    const zipFile = join(dataDir, 'download.zip');
    await writeFile(zipFile, Buffer.from(await zip.arrayBuffer()));
    const unpacked = join(dataDir, 'unzipped');
    await mkdir(unpacked, { recursive: true });
    await run('unzip', ['-q', '-o', zipFile, '-d', unpacked]);
    for (const f of disk.files.filter((x) => /^\/part1\/(dir with spaces|café ünïcödé|link to naïve|run\.sh)|^\/part3\//.test(x.path))) {
      const local = join(unpacked, f.path.replace(/^\/part1\//, '').replace(/^\/part3\//, 'part3/'));
      const lst = await lstat(local);
      if (f.type === 'symlink') { expect(await readlink(local), f.path).toBe(f.target); continue; }
      if (f.type === 'file') expect(createHash('sha256').update(await readFile(local)).digest('hex'), f.path).toBe(f.sha256);
      if (f.type === 'file' && f.mode !== undefined) expect(lst.mode & 0o777, f.path).toBe(f.mode);
      if (f.type === 'file' && f.mtimeSec !== undefined) expect(Math.floor(lst.mtimeMs / 1000), f.path).toBe(f.mtimeSec);
    }
    // A directory as tar: owners and modes as in the guest.
    const tar = await api(`${base}/archive?format=tar&path=${q('/part2')}`);
    expect(tar.headers.get('content-type')).toBe('application/x-tar');
    await writeFile(join(dataDir, 'download.tar'), Buffer.from(await tar.arrayBuffer()));
    const { stdout } = await run('tar', ['-tvf', join(dataDir, 'download.tar')]);
    expect(stdout).toMatch(/-rw------- 1000\/1000\s+3145745 .* part2\/data\.bin/);
    expect(stdout).toMatch(/drwxr-x--- 0\/0 .* part2\/sub\//);

    // An auditor may see that restore points exist, never what is in them.
    expect((await (await fetch(`${stack.gatewayUrl}/v1/users`, { method: 'POST', headers: { Authorization: `Bearer ${stack.gatewayToken}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ userId: 'aude', roles: ['auditor'] }) })).status)).toBe(201);
    const t = await fetch(`${stack.gatewayUrl}/v1/tokens`, { method: 'POST', headers: { Authorization: `Bearer ${stack.gatewayToken}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ userId: 'aude', name: 'aude' }) });
    const auditor = ((await t.json()) as { token: string }).token;
    for (const path of [`${base}?path=/`, `${base}/content?path=${q(big.path)}`, `${base}/archive?path=/part2`, '/v1/files/search?pattern=*.bin']) {
      expect((await api(path, {}, auditor)).status, path).toBe(403);
    }
  }, 600_000);

  it('`files get --zip` writes files and folders as one zip on the mover\'s host', async () => {
    const out = join(dataDir, 'restores', 'picked.zip');
    const r = await cli([...args, '--json', 'files', 'get', rp, '/part1/empty', '/part2/notes.txt', '/part1/link to naïve', '--zip', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ files: 1, directories: 1, symlinks: 1, written: [out] });
    const { stdout } = await run('unzip', ['-Z', '-l', out]);
    expect(stdout).toMatch(/drwxr-xr-x .* empty\//);
    expect(stdout).toMatch(/-rw-r--r-- .* 14 .* notes\.txt/);
    expect(stdout).toMatch(/lrwxrwxrwx .* link to naïve/);
    expect((await cli([...args, 'files', 'get', rp, '/part2/notes.txt', '--zip', out])).code).toBe(4);
  }, 300_000);

  it('writes files into the running guest through its agent; an existing file is kept without --overwrite', async () => {
    const agent = new GuestAgentClient(guest.agentSocket, { timeoutMs: 20_000 });
    await waitFor(async () => (await agent.execute('guest-ping').then(() => true, () => undefined)), { timeoutMs: 300_000, intervalMs: 1000, what: 'the guest agent' });
    const { items } = await catalogue.query('vm.list', {});
    expect(items.map((v) => v.name)).toContain('files-target');
    const greeting = disk.files.find((f) => f.path === '/part1/café ünïcödé/Grüße ☃.txt')!;
    await writeIntoGuest(agent, '/tmp/Grüße ☃.txt', Readable.from([Buffer.from('precious\n')]));
    const refused = await cli([...args, 'files', 'get', rp, greeting.path, '/part1/run.sh', '--into-vm', 'files-target', '--to', '/tmp']);
    expect(refused.code, refused.stderr).toBe(4);
    expect(refused.stderr).toMatch(/\/tmp\/Grüße ☃\.txt exists in VM .*nothing was written/);
    expect((await readFromGuest(agent, '/tmp/Grüße ☃.txt')).toString()).toBe('precious\n');
    await expect(readFromGuest(agent, '/tmp/run.sh')).rejects.toThrow(/No such file/);
    const over = await cli([...args, '--json', 'files', 'get', rp, greeting.path, '/part1/run.sh', '--into-vm', 'files-target', '--to', '/tmp', '--overwrite']);
    expect(over.code, over.stderr).toBe(0);
    expect(JSON.parse(over.stdout)).toMatchObject({ files: 2, written: ['/tmp/Grüße ☃.txt', '/tmp/run.sh'] });
    expect(createHash('sha256').update(await readFromGuest(agent, '/tmp/Grüße ☃.txt')).digest('hex')).toBe(greeting.sha256);
    // To its own path (the path inside its file system) by default.
    const own = await cli([...args, 'files', 'get', rp, '/part2/notes.txt', '--into-vm', 'files-target']);
    expect(own.code, own.stderr).toBe(0);
    expect((await readFromGuest(agent, '/notes.txt')).toString()).toBe('a note on xfs\n');
    const dir = await cli([...args, 'files', 'get', rp, '/part1/empty', '--into-vm', 'files-target']);
    expect(dir.code).toBe(2);
    expect(dir.stderr).toMatch(/only regular files are written into a VM/);
  }, 600_000);

  it('refuses a disk with no file system, a LUKS partition and another site\'s restore point clearly; nothing is left running', async () => {
    const bad = join(dataDir, 'bad');
    await mkdir(bad, { recursive: true });
    const badRp = await storeRaw(stack.repository, 'bad-vm', [{ name: 'blank', raw: await buildBlankDisk(bad) }, { name: 'luks', raw: await buildLuksDisk(bad) }]);
    const blank = await cli([...args, 'files', 'ls', badRp, '/', '--disk', 'blank']);
    expect(blank.code, blank.stderr).toBe(7);
    expect(blank.stderr).toMatch(/blank of restore point .* holds no partition table and no file system/);
    const luks = await cli([...args, 'files', 'ls', badRp, '/', '--disk', 'luks'], {}, 400_000);
    expect(luks.code, luks.stderr).toBe(7);
    expect(luks.stderr).toMatch(/luks of restore point .* holds only LUKS-encrypted partitions \(part1\)/);
    const noDisk = await cli([...args, 'files', 'ls', badRp, '/']);
    expect(noDisk.code).toBe(2);
    expect(noDisk.stderr).toMatch(/has 2 disks \(blank, luks\); choose one/);
    // A replica of another site is kept here, but not its key.
    const replica = await initRepository(new DirectoryBackend(join(dataDir, 'replicas', 'far-site'), { createRoot: true }), { passphrase: 'far away', kdf: { N: 1024 } });
    const farRp = await storeRaw(replica, 'far-vm', [{ name: 'disk0', raw: join(bad, 'blank.raw') }]);
    await replica.close();
    const far = await cli([...args, 'files', 'ls', farRp, '/']);
    expect(far.code, far.stderr).toBe(7);
    expect(far.stderr).toMatch(/is in the replica of site far-site, but no key for it is here/);
    const farRest = await api(`/v1/restore-points/${farRp}/files/content?path=/part1/x`);
    expect(farRest.status).toBe(403);
    // No appliance and no export of either restore point is left.
    await waitFor(async () => ((await appliancesOf(`browse-${badRp}`)).length === 0 ? true : undefined), { timeoutMs: 60_000, what: 'no appliance of the bad restore point' });
    expect(stack.mover!.exportNames().filter((n) => n.includes(badRp.replace(/[^A-Za-z0-9_-]/g, '_')) || n.includes(farRp.replace(/[^A-Za-z0-9_-]/g, '_')))).toEqual([]);
    expect(stack.mover!.files.pool.keys().filter((k) => k.startsWith(badRp) || k.startsWith(farRp))).toEqual([]);
  }, 500_000);

  it('the console\'s restore wizard browses the files and downloads one file and a zip (Chromium)', async () => {
    const browser = await launchChromium();
    h.onClose(() => browser.close());
    const vmId = (await catalogue.query('vm.list', {})).items.find((v) => v.name === 'files-vm')!.vmId;
    const found: Record<string, unknown> = {};
    for (const theme of ['light', 'dark'] as const) {
      const context = await browser.newContext({ viewport: { width: 1280, height: 720 }, baseURL: stack.gatewayUrl, acceptDownloads: true });
      const page = await context.newPage();
      await page.goto('/');
      await page.getByLabel('API token').fill(stack.gatewayToken);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.locator('[data-user]').first().waitFor({ state: 'attached' });
      await page.evaluate((t) => localStorage.setItem('cairn-theme', t), theme);
      await page.goto(`/restore?vm=${vmId}&point=${rp}`);
      await page.getByRole('radio', { name: /^Files/ }).check();
      await page.locator('tr[data-file="/part1"]').waitFor({ timeout: 300_000 });
      await page.getByRole('button', { name: 'part1/' }).click();
      await page.locator('tr[data-file="/part1/big.bin"]').waitFor({ timeout: 60_000 });
      const v = await axeSerious(page);
      if (v.length) found[theme] = v;
      await screenshot(page, `files-${theme}`);
      if (theme === 'light') {
        // One file, by its link.
        await page.getByRole('button', { name: 'café ünïcödé/' }).click();
        const greeting = disk.files.find((f) => f.path === '/part1/café ünïcödé/Grüße ☃.txt')!;
        const [one] = await Promise.all([page.waitForEvent('download'), page.locator(`a[data-download="${greeting.path}"]`).click()]);
        expect(one.suggestedFilename()).toBe('Grüße ☃.txt');
        const saved = join(dataDir, 'console-one.txt');
        await one.saveAs(saved);
        expect(createHash('sha256').update(await readFile(saved)).digest('hex')).toBe(greeting.sha256);
        // A selection as one zip.
        await page.getByRole('button', { name: 'part1', exact: true }).click();
        await page.getByLabel('Select dir with spaces').check();
        await page.getByLabel('Select run.sh').check();
        const [zip] = await Promise.all([page.waitForEvent('download'), page.locator('[data-action="download-zip"]').click()]);
        const zipFile = join(dataDir, 'console.zip');
        await zip.saveAs(zipFile);
        const { stdout } = await run('unzip', ['-Z', '-1', zipFile]);
        expect(stdout.split('\n').filter(Boolean).sort()).toEqual(['dir with spaces/', 'dir with spaces/naïve file.txt', 'run.sh']);
      }
      await context.close();
    }
    expect(found).toEqual({});
  }, 600_000);

  it('records who browsed and pulled which files of which restore point', async () => {
    const timeline = async (type: string) => (await catalogue.query('audit.timeline', { type, limit: 200 })).items as unknown as Array<{ actor: { kind: string; id: string }; data: { restorePointId: string; paths: string[]; path: string; op?: string } }>;
    const restored = await timeline('FilesRestored');
    expect(restored.some((e) => e.data.restorePointId === rp && e.data.paths.join(',') === '/part1,/part2,/part3' && e.actor.kind === 'user')).toBe(true);
    const browsed = await timeline('RestorePointFilesBrowsed');
    expect(browsed.some((e) => e.data.op === 'list' && e.data.paths[0] === '/part1')).toBe(true);
    expect(browsed.some((e) => e.data.op === 'stat' && e.data.paths[0] === '/part1/sparse.bin' && e.actor.kind === 'user')).toBe(true);
    // Downloads over REST and write-backs into a VM, with the person who asked.
    const all = restored as unknown as Array<{ actor: { id: string }; data: { target: string; path: string; paths: string[]; vmId?: string } }>;
    expect(all.some((e) => e.data.target === 'download' && e.data.path === 'file' && e.data.paths[0] === '/part1/big.bin' && e.actor.id === 'admin')).toBe(true);
    expect(all.some((e) => e.data.target === 'download' && e.data.path === 'zip' && e.data.paths.length === 5)).toBe(true);
    expect(all.some((e) => e.data.target === 'vm' && e.data.vmId !== undefined && e.data.path === '/notes.txt')).toBe(true);
  });

  it('leaves no appliance behind when the stack stops', async () => {
    expect((await appliancesOf(`browse-${rp}`)).length).toBeGreaterThan(0);
    await h.close();
    await waitFor(async () => ((await appliancesOf(`browse-${rp}`)).length === 0 ? true : undefined), { timeoutMs: 60_000, what: 'appliances gone' });
  }, 120_000);
});
