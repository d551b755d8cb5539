// Copies files and directories out of a browsing session onto this host: regular files
// written with holes where the source is all zeros (a sparse file stays sparse), then modes,
// owners (when running as root) and modification times set as in the guest; symbolic links
// re-created as links. Nothing existing is replaced unless asked.
import { chmod, lchown, lstat, lutimes, mkdir, open, rm, symlink, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { FileEntry } from './file-entry.ts';
import type { PipedOutput } from './fifo-stream.ts';

/** The part of a browsing session a copy needs. */
export interface FileSource {
  stat(path: string): Promise<FileEntry>;
  ls(path: string): Promise<FileEntry[]>;
  read(path: string): Promise<PipedOutput>;
}

export interface CopyReport {
  readonly files: number;
  readonly directories: number;
  readonly symlinks: number;
  /** Devices, sockets and FIFOs are not copied. */
  readonly skipped: string[];
  readonly bytes: number;
  /** Host paths written, top level first. */
  readonly written: string[];
}

export class TargetExistsError extends Error {
  constructor(readonly target: string) {
    super(`${target} exists; nothing was changed (pass --overwrite to replace it)`);
    this.name = 'TargetExistsError';
  }
}

const BLOCK = 64 * 1024;

function allZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i += 8) {
    if (i + 8 <= b.length) { if (b.readBigUInt64LE(i) !== 0n) return false; } else {
      for (let j = i; j < b.length; j++) if (b[j] !== 0) return false;
    }
  }
  return true;
}

/** Writes a stream to `target`, leaving holes for all-zero 64 KiB blocks; returns bytes. */
export async function writeSparse(stream: Readable, target: string, size: number): Promise<number> {
  const fh = await open(target, 'w', 0o600);
  let pos = 0; let pending: Buffer[] = []; let pendingLen = 0;
  const flush = async (buf: Buffer) => {
    if (!allZero(buf)) await fh.write(buf, 0, buf.length, pos);
    pos += buf.length;
  };
  try {
    for await (const chunk of stream) {
      pending.push(chunk as Buffer); pendingLen += (chunk as Buffer).length;
      if (pendingLen >= BLOCK) {
        const all = Buffer.concat(pending);
        const whole = all.length - (all.length % BLOCK);
        for (let o = 0; o < whole; o += BLOCK) await flush(all.subarray(o, o + BLOCK));
        pending = whole < all.length ? [all.subarray(whole)] : []; pendingLen = all.length - whole;
      }
    }
    if (pendingLen > 0) await flush(Buffer.concat(pending));
    if (pos !== size) throw new Error(`${target}: read ${pos} bytes, the file has ${size}`);
    await fh.truncate(size);
  } finally {
    await fh.close();
  }
  return pos;
}

async function setAttributes(target: string, e: FileEntry): Promise<void> {
  const t = new Date(e.mtime);
  if (e.type === 'symlink') {
    if (process.getuid?.() === 0) await lchown(target, e.uid, e.gid).catch(() => undefined);
    await lutimes(target, t, t);
    return;
  }
  if (process.getuid?.() === 0) await lchown(target, e.uid, e.gid).catch(() => undefined);
  await chmod(target, e.mode);
  await utimes(target, t, t);
}

/**
 * Copies `paths` (files, directories, links) of the session into the directory `toDir`, each
 * under its own name. Refuses before writing anything when a target exists and `overwrite` is
 * not set.
 */
export async function copyOut(source: FileSource, paths: readonly string[], toDir: string, o: { overwrite?: boolean; onFile?: (path: string, bytes: number) => void } = {}): Promise<CopyReport> {
  const entries = await Promise.all(paths.map((p) => source.stat(p)));
  await mkdir(toDir, { recursive: true });
  for (const e of entries) {
    const target = join(toDir, e.name);
    const exists = await lstat(target).then(() => true, () => false);
    if (exists && !o.overwrite) throw new TargetExistsError(target);
  }
  const report = { files: 0, directories: 0, symlinks: 0, skipped: [] as string[], bytes: 0, written: [] as string[] };
  const copy = async (e: FileEntry, target: string): Promise<void> => {
    if (o.overwrite) await rm(target, { recursive: true, force: true });
    if (e.type === 'directory') {
      await mkdir(target, { mode: 0o700 });
      for (const child of await source.ls(e.path)) await copy(child, join(target, child.name));
      report.directories++;
    } else if (e.type === 'symlink') {
      await symlink(e.target ?? (await source.stat(e.path)).target ?? '', target);
      report.symlinks++;
    } else if (e.type === 'file') {
      const out = await source.read(e.path);
      const [n] = await Promise.all([writeSparse(out.stream, target, e.size), out.done]);
      report.files++; report.bytes += n;
      o.onFile?.(e.path, n);
    } else {
      report.skipped.push(e.path);
      return;
    }
    await setAttributes(target, e);
  };
  for (const e of entries) {
    const target = join(toDir, e.name);
    await copy(e, target);
    report.written.push(target);
  }
  return report;
}
