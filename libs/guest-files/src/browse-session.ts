// A browsing session over one disk: one warm libguestfs appliance with the disk attached
// read-only, every file system it recognises mounted read-only at `/<name>` inside the
// appliance (`part1`, `part2`, … for partitions, `disk` for a file system on the whole disk,
// `lvm-<vg>-<lv>` for logical volumes). Paths callers give are `/<name>/…`; `/` lists the
// file systems. Encrypted (LUKS) partitions are shown and named as such, never opened.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Guestfish, GuestfishError, type ApplianceDrive, type ApplianceOptions } from './guestfish.ts';
import { checkGuestPath, parseStats, toEntry, type FileEntry } from './file-entry.ts';
import { pipeFrom, type PipedOutput } from './fifo-stream.ts';

export interface GuestFilesystem {
  /** Name under `/`: `part1`, `disk`, `lvm-vg-root`. */
  readonly name: string;
  readonly device: string;
  /** What libguestfs found: ext4, xfs, vfat, ntfs, btrfs, crypto_LUKS, swap, unknown. */
  readonly type: string;
  readonly mounted: boolean;
  /** Why it is not browsable, when it is not. */
  readonly reason?: string;
}

export type GuestFilesErrorCode = 'not_found' | 'invalid_path' | 'no_filesystem' | 'encrypted' | 'unreadable';

export class GuestFilesError extends Error {
  constructor(readonly code: GuestFilesErrorCode, message: string) {
    super(message);
    this.name = 'GuestFilesError';
  }
}

function fsName(device: string): string {
  const part = /^\/dev\/[sv]d[a-z]+(\d+)$/.exec(device);
  if (part) return `part${part[1]}`;
  if (/^\/dev\/[sv]d[a-z]+$/.test(device)) return 'disk';
  const lv = /^\/dev\/([^/]+)\/([^/]+)$/.exec(device);
  if (lv) return `lvm-${lv[1]}-${lv[2]}`;
  return device.replace(/^\/dev\//, '').replace(/\//g, '-');
}

const SKIP = new Set(['swap', 'unknown', '']);

export interface BrowseSessionOptions extends ApplianceOptions {
  /** Named in errors: "disk0 of restore point …". */
  readonly label?: string;
}

export class BrowseSession {
  private fifoSeq = 0;

  private constructor(
    private readonly g: Guestfish,
    private readonly tmp: string,
    readonly filesystems: readonly GuestFilesystem[],
    readonly label: string,
  ) {}

  get pid(): number { return this.g.pid; }

  /**
   * Boots an appliance on the drive and mounts what it can. Refuses (and leaves nothing
   * running) a disk with no file system it can read, naming encrypted partitions.
   */
  static async open(drive: ApplianceDrive, o: BrowseSessionOptions = {}): Promise<BrowseSession> {
    const label = o.label ?? drive.uri;
    const g = await Guestfish.launch([drive], o);
    let tmp: string | undefined;
    try {
      const found = (await g.run(['list-filesystems'])).split('\n').filter(Boolean).map((l) => {
        const i = l.lastIndexOf(': ');
        return { device: l.slice(0, i), type: l.slice(i + 2).trim() };
      });
      // libguestfs 1.48 leaves LUKS partitions out of list-filesystems: look at what it skipped.
      for (const part of (await g.run(['list-partitions'])).split('\n').filter(Boolean)) {
        if (found.some((f) => f.device === part)) continue;
        const type = (await g.run(['vfs-type', part]).catch(() => '')).trim();
        if (type === 'crypto_LUKS') found.push({ device: part, type });
      }
      const filesystems: GuestFilesystem[] = [];
      for (const f of found) {
        const name = fsName(f.device);
        if (f.type === 'crypto_LUKS') {
          filesystems.push({ name, device: f.device, type: f.type, mounted: false, reason: 'LUKS-encrypted partition: Cairn does not hold its passphrase, so its files cannot be read' });
          continue;
        }
        if (SKIP.has(f.type)) continue;
        try {
          await g.run(['mkmountpoint', `/${name}`]);
          await g.run(['mount-ro', f.device, `/${name}`]);
          filesystems.push({ name, device: f.device, type: f.type, mounted: true });
        } catch (e) {
          filesystems.push({ name, device: f.device, type: f.type, mounted: false, reason: `cannot be mounted: ${(e as Error).message}` });
        }
      }
      if (!filesystems.some((f) => f.mounted)) {
        const encrypted = filesystems.filter((f) => f.type === 'crypto_LUKS').map((f) => f.name);
        if (encrypted.length > 0) {
          throw new GuestFilesError('encrypted', `${label} holds only LUKS-encrypted partitions (${encrypted.join(', ')}): their files cannot be read without the passphrase, which Cairn does not hold`);
        }
        const other = filesystems.map((f) => `${f.name}: ${f.type} (${f.reason})`);
        throw new GuestFilesError('no_filesystem', `${label} holds no file system that can be read${other.length ? ` (${other.join('; ')})` : ' (no partition or file system was recognised)'}`);
      }
      tmp = await mkdtemp(join(tmpdir(), 'cairn-files-'));
      return new BrowseSession(g, tmp, filesystems, label);
    } catch (e) {
      await g.close();
      if (tmp) await rm(tmp, { recursive: true, force: true });
      throw e;
    }
  }

  private fsOf(path: string): GuestFilesystem {
    const name = path.split('/')[1]!;
    const fs = this.filesystems.find((f) => f.name === name);
    if (!fs) throw new GuestFilesError('not_found', `${path}: no such file or directory in ${this.label} (file systems: ${this.filesystems.map((f) => f.name).join(', ')})`);
    if (!fs.mounted) throw new GuestFilesError(fs.type === 'crypto_LUKS' ? 'encrypted' : 'unreadable', `${path}: ${fs.name} of ${this.label} is not readable: ${fs.reason}`);
    return fs;
  }

  private wrap(path: string, e: unknown): never {
    if (e instanceof GuestfishError && e.notFound) throw new GuestFilesError('not_found', `${path}: no such file or directory in ${this.label}`);
    if (e instanceof GuestfishError) throw new GuestFilesError('unreadable', `${path}: ${e.message}`);
    throw e;
  }

  private rootEntry(f: GuestFilesystem): FileEntry {
    return { path: `/${f.name}`, name: f.name, type: 'directory', size: 0, allocated: 0, mode: 0o555, uid: 0, gid: 0, mtime: new Date(0).toISOString(), mtimeNs: '0' };
  }

  async stat(path: string): Promise<FileEntry> {
    const p = checkGuestPath(path);
    if (p === '/') return { path: '/', name: '/', type: 'directory', size: 0, allocated: 0, mode: 0o555, uid: 0, gid: 0, mtime: new Date(0).toISOString(), mtimeNs: '0' };
    this.fsOf(p);
    try {
      const [s] = parseStats(await this.g.run(['lstatns', p]));
      if (!s) throw new GuestFilesError('unreadable', `${p}: no status returned`);
      const entry = toEntry(p, s);
      if (entry.type === 'symlink') return { ...entry, target: (await this.g.run(['readlink', p])).replace(/\n$/, '') };
      return entry;
    } catch (e) {
      return this.wrap(p, e);
    }
  }

  /** The entries of a directory, sorted by name. */
  async ls(path: string): Promise<FileEntry[]> {
    const p = checkGuestPath(path);
    if (p === '/') return this.filesystems.filter((f) => f.mounted).map((f) => this.rootEntry(f));
    const dir = await this.stat(p);
    if (dir.type !== 'directory') return [dir];
    const names = await this.names(p);
    const out: FileEntry[] = [];
    const base = p.endsWith('/') ? p : `${p}/`;
    for (let i = 0; i < names.length; i += 200) {
      const batch = names.slice(i, i + 200);
      const stats = parseStats(await this.g.batch(batch.map((n) => ['lstatns', base + n]))
        .catch((e: unknown) => this.wrap(p, e)));
      if (stats.length !== batch.length) throw new GuestFilesError('unreadable', `${p}: ${batch.length} names but ${stats.length} status records`);
      batch.forEach((n, j) => out.push(toEntry(base + n, stats[j]!)));
    }
    const links = out.filter((e) => e.type === 'symlink');
    if (links.length > 0) {
      const targets = (await this.g.batch(links.map((l) => ['readlink', l.path]))).split('\n');
      links.forEach((l, j) => { out[out.indexOf(l)] = { ...l, target: targets[j] ?? '' }; });
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** Names in a directory, read NUL-separated (a name may hold a newline). */
  private async names(dir: string): Promise<string[]> {
    const out = await this.pipe(['ls0', dir]);
    const chunks: Buffer[] = [];
    for await (const c of out.stream) chunks.push(c as Buffer);
    await out.done.catch((e: unknown) => this.wrap(dir, e));
    return Buffer.concat(chunks).toString('utf8').split('\0').filter((n) => n !== '');
  }

  private async pipe(command: readonly string[], extra: readonly string[] = []): Promise<PipedOutput> {
    return pipeFrom(join(this.tmp, `pipe-${this.fifoSeq++}`), (fifo) => this.g.run([...command, fifo, ...extra]));
  }

  /** A regular file's bytes (from `offset`, `length` of them when given). */
  async read(path: string, range?: { offset: number; length: number }): Promise<PipedOutput> {
    const p = checkGuestPath(path);
    const e = await this.stat(p);
    if (e.type !== 'file') throw new GuestFilesError('invalid_path', `${p} is a ${e.type}, not a regular file`);
    if (range) {
      const out = await pipeFrom(join(this.tmp, `pipe-${this.fifoSeq++}`), (fifo) => this.g.run(['download-offset', p, fifo, String(range.offset), String(range.length)]));
      return { stream: out.stream, done: out.done.catch((err: unknown) => this.wrap(p, err)) };
    }
    const out = await this.pipe(['download', p]);
    return { stream: out.stream, done: out.done.catch((err: unknown) => this.wrap(p, err)) };
  }

  /** A directory as a tar stream made in the appliance (modes, owners, times, symlinks). */
  async tar(path: string): Promise<PipedOutput> {
    const p = checkGuestPath(path);
    const e = await this.stat(p);
    if (e.type !== 'directory') throw new GuestFilesError('invalid_path', `${p} is a ${e.type}; a tar of the appliance is made of directories`);
    const out = await this.pipe(['tar-out', p], ['numericowner:true']);
    return { stream: out.stream, done: out.done.catch((err: unknown) => this.wrap(p, err)) };
  }

  /** Every path below a directory (NUL-separated from the appliance), without the directory. */
  async find(path: string): Promise<string[]> {
    const p = checkGuestPath(path);
    this.fsOf(p);
    const out = await this.pipe(['find0', p]);
    const chunks: Buffer[] = [];
    for await (const c of out.stream) chunks.push(c as Buffer);
    await out.done.catch((e: unknown) => this.wrap(p, e));
    return Buffer.concat(chunks).toString('utf8').split('\0').filter((n) => n !== '').map((n) => (p === '/' ? '' : p) + (n.startsWith('/') ? n : `/${n}`));
  }

  /** Status of many paths in batches (for the file index). */
  async statMany(paths: readonly string[]): Promise<FileEntry[]> {
    const out: FileEntry[] = [];
    for (let i = 0; i < paths.length; i += 200) {
      const batch = paths.slice(i, i + 200);
      const stats = parseStats(await this.g.batch(batch.map((n) => ['lstatns', n])));
      if (stats.length !== batch.length) throw new GuestFilesError('unreadable', `${batch.length} paths but ${stats.length} status records`);
      batch.forEach((n, j) => out.push(toEntry(n, stats[j]!)));
    }
    return out;
  }

  alive(): boolean { return this.g.alive(); }

  rssBytes(): Promise<number> { return this.g.rssBytes(); }

  async close(): Promise<void> {
    await this.g.close();
    await rm(this.tmp, { recursive: true, force: true });
  }
}
