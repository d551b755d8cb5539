// Files of a browsing session as one archive stream, made while it is read (nothing staged on
// disk, one file open at a time): zip through yazl, tar through tar-stream. Each given path
// lands under its own name (`/part1/home/anna` -> `anna/…`), with modes, times and symbolic
// links; devices, sockets and FIFOs are left out and reported.
//
// yazl for zip: a small library with one dependency (buffer-crc32), zip64 written when a file
// needs it, Info-ZIP's UTC timestamps and unix modes (so links survive `unzip`), and
// `addReadStreamLazy`, which opens a file only when the archive reaches it. archiver would do
// too, but takes streams that are already open (one appliance read each) and brings a tree of
// dependencies; zip-stream is archiver's lower half with the same shape.
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ZipFile } from 'yazl';
import { pack as tarPack } from 'tar-stream';
import type { FileEntry } from './file-entry.ts';
import type { PipedOutput } from './fifo-stream.ts';

/** The part of a browsing session an archive needs. */
export interface ArchiveSource {
  stat(path: string): Promise<FileEntry>;
  ls(path: string): Promise<FileEntry[]>;
  find(path: string): Promise<string[]>;
  statMany(paths: readonly string[]): Promise<FileEntry[]>;
  read(path: string): Promise<PipedOutput>;
}

export interface ArchivePlan {
  /** In archive order (a directory before what it holds); `name` is the path inside the archive. */
  readonly entries: ReadonlyArray<{ readonly name: string; readonly entry: FileEntry }>;
  readonly files: number;
  readonly bytes: number;
  /** Devices, sockets and FIFOs: not archived. */
  readonly skipped: string[];
}

/** Walks the given paths (a directory with everything below it) and names each entry. */
export async function planArchive(source: ArchiveSource, paths: readonly string[]): Promise<ArchivePlan> {
  const tops = paths.includes('/') ? (await source.ls('/')).map((e) => e.path) : [...paths];
  const entries: Array<{ name: string; entry: FileEntry }> = [];
  const skipped: string[] = [];
  let files = 0; let bytes = 0;
  const seen = new Set<string>();
  for (const top of tops) {
    const root = await source.stat(top);
    const base = top.slice(0, top.lastIndexOf('/') + 1);
    const below = root.type === 'directory' ? await source.statMany(await source.find(top)) : [];
    for (const e of [root, ...below.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))]) {
      const name = e.path.slice(base.length);
      if (seen.has(name)) continue;
      seen.add(name);
      if (e.type === 'other') { skipped.push(e.path); continue; }
      if (e.type === 'file') { files++; bytes += e.size; }
      entries.push({ name, entry: e });
    }
  }
  return { entries, files, bytes, skipped };
}

const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;

function zipStream(source: ArchiveSource, plan: ArchivePlan): Readable {
  const zip = new ZipFile();
  const out = new PassThrough();
  zip.outputStream.on('error', (e) => out.destroy(e));
  zip.outputStream.pipe(out);
  // Destroyed by its reader (a cancelled download), the archive stops the file being read, so
  // the appliance stops, and reads no further files.
  let current: Readable | undefined;
  out.once('close', () => current?.destroy());
  for (const { name, entry: e } of plan.entries) {
    const mtime = new Date(e.mtime);
    const mode = e.mode & 0o7777;
    if (e.type === 'directory') zip.addEmptyDirectory(name, { mtime, mode: S_IFDIR | mode });
    else if (e.type === 'symlink') zip.addBuffer(Buffer.from(e.target ?? ''), name, { mtime, mode: S_IFLNK | mode, compress: false });
    else {
      zip.addReadStreamLazy(name, { mtime, mode: S_IFREG | mode, size: e.size }, (cb) => {
        if (out.destroyed) { cb(new Error('the archive was closed by its reader'), undefined as never); return; }
        source.read(e.path).then((r) => {
          r.done.catch((err: unknown) => out.destroy(err as Error));
          current = r.stream;
          if (out.destroyed) r.stream.destroy();
          cb(null, r.stream);
        }, (err: unknown) => { out.destroy(err as Error); cb(err as Error, undefined as never); });
      });
    }
  }
  zip.end();
  return out;
}

function tarStream(source: ArchiveSource, plan: ArchivePlan): Readable {
  const tar = tarPack();
  let current: Readable | undefined;
  tar.once('close', () => current?.destroy());
  void (async () => {
    for (const { name, entry: e } of plan.entries) {
      if (tar.destroyed) throw new Error('the archive was closed by its reader');
      const header = { name, mode: e.mode & 0o7777, uid: e.uid, gid: e.gid, mtime: new Date(e.mtime) };
      if (e.type === 'directory') tar.entry({ ...header, name: `${name}/`, type: 'directory' });
      else if (e.type === 'symlink') tar.entry({ ...header, type: 'symlink', linkname: e.target ?? '' });
      else {
        const r = await source.read(e.path);
        r.done.catch(() => undefined); // awaited below unless the entry failed first
        current = r.stream;
        if (tar.destroyed) r.stream.destroy();
        await new Promise<void>((resolve, reject) => {
          const w = tar.entry({ ...header, type: 'file', size: e.size }, (err) => (err ? reject(err) : resolve()));
          pipeline(r.stream, w).catch(reject);
        });
        await r.done;
      }
    }
    tar.finalize();
  })().catch((e: unknown) => tar.destroy(e as Error));
  return tar;
}

/** The archive as a stream; it errors when a file cannot be read. */
export function archiveStream(source: ArchiveSource, plan: ArchivePlan, format: 'zip' | 'tar'): Readable {
  return format === 'zip' ? zipStream(source, plan) : tarStream(source, plan);
}
