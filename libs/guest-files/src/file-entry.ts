// What Cairn says about a file inside a restore point, and how it is read from guestfish's
// `lstatns` output (one `key: value` per line, one block per file).

export type FileType = 'file' | 'directory' | 'symlink' | 'other';

export interface FileEntry {
  /** Path inside the restore point's disk: `/<filesystem>/…`. */
  readonly path: string;
  readonly name: string;
  readonly type: FileType;
  readonly size: number;
  /** Bytes the file occupies on its file system (less than size for a sparse file). */
  readonly allocated: number;
  /** Permission bits (including setuid, setgid, sticky). */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  /** Modification time, ISO 8601 with nanoseconds dropped to milliseconds. */
  readonly mtime: string;
  readonly mtimeNs: string;
  /** Target of a symbolic link. */
  readonly target?: string;
}

export interface RawStat {
  readonly st_mode: number;
  readonly st_size: number;
  readonly st_blocks: number;
  readonly st_uid: number;
  readonly st_gid: number;
  readonly st_mtime_sec: number;
  readonly st_mtime_nsec: number;
}

/** Splits guestfish's printout of one or more stat structs into records. */
export function parseStats(text: string): RawStat[] {
  const out: RawStat[] = [];
  let cur: Record<string, number> | undefined;
  for (const line of text.split('\n')) {
    const m = /^\s*(st_\w+): (-?\d+)$/.exec(line);
    if (!m) continue;
    if (m[1] === 'st_dev') {
      cur = {};
      out.push(cur as unknown as RawStat);
    }
    if (cur) cur[m[1]!] = Number(m[2]);
  }
  return out;
}

export function fileType(mode: number): FileType {
  switch (mode & 0o170000) {
    case 0o100000: return 'file';
    case 0o040000: return 'directory';
    case 0o120000: return 'symlink';
    default: return 'other';
  }
}

export function toEntry(path: string, s: RawStat, target?: string): FileEntry {
  const name = path === '/' ? '/' : path.slice(path.lastIndexOf('/') + 1);
  const ms = s.st_mtime_sec * 1000 + Math.floor(s.st_mtime_nsec / 1e6);
  return {
    path, name, type: fileType(s.st_mode), size: s.st_size, allocated: s.st_blocks * 512,
    mode: s.st_mode & 0o7777, uid: s.st_uid, gid: s.st_gid,
    mtime: new Date(ms).toISOString(), mtimeNs: `${s.st_mtime_sec}${String(s.st_mtime_nsec).padStart(9, '0')}`,
    ...(target !== undefined ? { target } : {}),
  };
}

/** `ls -l`'s first column for an entry. */
export function modeString(e: Pick<FileEntry, 'type' | 'mode'>): string {
  const t = { file: '-', directory: 'd', symlink: 'l', other: '?' }[e.type];
  const bits = 'rwxrwxrwx';
  let s = '';
  for (let i = 0; i < 9; i++) s += e.mode & (1 << (8 - i)) ? bits[i] : '-';
  return t + s;
}

/**
 * A path a caller gives: absolute, no NUL, no `.` or `..` components, no empty components
 * (a trailing slash is dropped). Returns the normalised path or throws with the reason.
 */
export function checkGuestPath(path: string): string {
  if (typeof path !== 'string' || path.length === 0) throw new InvalidPathError(path, 'is empty');
  if (path.includes('\0')) throw new InvalidPathError(path, 'contains a NUL byte');
  if (!path.startsWith('/')) throw new InvalidPathError(path, 'must start with /');
  if (path.length > 4096) throw new InvalidPathError(path, 'is longer than 4096 bytes');
  const parts = path.split('/').filter((p, i, a) => !(p === '' && (i === 0 || i === a.length - 1)));
  for (const p of parts) {
    if (p === '' || p === '.' || p === '..') throw new InvalidPathError(path, 'has an empty, "." or ".." component');
  }
  return '/' + parts.join('/');
}

export class InvalidPathError extends Error {
  constructor(readonly path: string, reason: string) {
    super(`path ${JSON.stringify(path)} ${reason}`);
    this.name = 'InvalidPathError';
  }
}
