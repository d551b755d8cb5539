// File-level restore end to end (real NATS, real QEMU, real libguestfs): a VM whose disk is a
// GPT disk with ext4, xfs and FAT partitions is backed up through the pipeline; `cairn files
// ls|stat|get` list and copy every file out of the restore point with equal SHA-256, modes,
// times, links and holes; bad input is refused clearly; every act is in the audit trail.
// One stack, one backup and one appliance (kept warm by the data mover) for the whole file.
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { lstat, mkdir, readFile, readlink, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildFilesDisk, createHarness, waitFor, type FilesDisk } from '@cairn/testing';
import { CatalogueClient } from '@cairn/catalogue-client';
import { startDemoVm, startStack } from '@cairn/cli';
import { CommandBus } from '@cairn/messaging';
import { cli, waitForJobEnd } from './e2e-helpers.ts';

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
  dataDir = await h.tmpDir('cairn-files-');
  disk = await buildFilesDisk(join(dataDir, 'img'));
  await mkdir(join(dataDir, 'vm'), { recursive: true });
  await run('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', disk.raw, join(dataDir, 'vm', 'disk0.qcow2')]);
  const vm = await startDemoVm(join(dataDir, 'vm'), 'files-vm', disk.sizeBytes);
  h.onClose(() => vm.stop());
  const stack = await startStack({ dataDir, qemu: [{ qmpSocket: vm.qmpPath }] });
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
  }, 400_000);

  it('records who browsed and pulled which files of which restore point', async () => {
    const timeline = async (type: string) => (await catalogue.query('audit.timeline', { type, limit: 200 })).items as unknown as Array<{ actor: { kind: string; id: string }; data: { restorePointId: string; paths: string[]; path: string; op?: string } }>;
    const restored = await timeline('FilesRestored');
    expect(restored.some((e) => e.data.restorePointId === rp && e.data.paths.join(',') === '/part1,/part2,/part3' && e.actor.kind === 'user')).toBe(true);
    const browsed = await timeline('RestorePointFilesBrowsed');
    expect(browsed.some((e) => e.data.op === 'list' && e.data.paths[0] === '/part1')).toBe(true);
    expect(browsed.some((e) => e.data.op === 'stat' && e.data.paths[0] === '/part1/sparse.bin' && e.actor.kind === 'user')).toBe(true);
  });

  it('leaves no appliance behind when the stack stops', async () => {
    expect((await appliancesOf(`browse-${rp}`)).length).toBeGreaterThan(0);
    await h.close();
    await waitFor(async () => ((await appliancesOf(`browse-${rp}`)).length === 0 ? true : undefined), { timeoutMs: 60_000, what: 'appliances gone' });
  }, 120_000);
});
