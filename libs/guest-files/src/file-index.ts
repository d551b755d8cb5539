// The file index of a restore point's disk: path, type, size and modification time of every
// file, built once by walking a browsing session, stored compressed (the repository encrypts
// and deduplicates it like any data) and searched later without an appliance.
import { gunzipSync, gzipSync } from 'node:zlib';
import picomatch from 'picomatch';
import type { BrowseSession } from './browse-session.ts';
import type { FileType } from './file-entry.ts';

export interface IndexedFile {
  /** Disk of the restore point. */
  readonly disk: string;
  readonly path: string;
  readonly type: FileType;
  readonly size: number;
  /** Modification time, ISO 8601. */
  readonly mtime: string;
}

export interface FileIndex {
  readonly version: 1;
  readonly builtAt: string;
  readonly filesystems: ReadonlyArray<{ disk: string; name: string; type: string; indexed: boolean; reason?: string }>;
  readonly files: readonly IndexedFile[];
}

/** The part of a browsing session an index build needs. */
export type IndexSource = Pick<BrowseSession, 'filesystems' | 'find' | 'statMany'>;

/** Walks every readable file system of the session (one disk). */
export async function buildFileIndex(s: IndexSource, disk: string, onProgress?: (files: number) => void): Promise<FileIndex> {
  const files: IndexedFile[] = [];
  for (const fs of s.filesystems) {
    if (!fs.mounted) continue;
    const paths = await s.find(`/${fs.name}`);
    for (let i = 0; i < paths.length; i += 1000) {
      for (const e of await s.statMany(paths.slice(i, i + 1000))) files.push({ disk, path: e.path, type: e.type, size: e.size, mtime: e.mtime });
      onProgress?.(files.length);
    }
  }
  return {
    version: 1, builtAt: new Date().toISOString(),
    filesystems: s.filesystems.map((f) => ({ disk, name: f.name, type: f.type, indexed: f.mounted, ...(f.reason ? { reason: f.reason } : {}) })),
    files,
  };
}

export function encodeFileIndex(index: FileIndex): Buffer {
  return gzipSync(Buffer.from(JSON.stringify(index)));
}

export function decodeFileIndex(bytes: Uint8Array): FileIndex {
  const index = JSON.parse(gunzipSync(bytes).toString('utf8')) as FileIndex;
  if (index.version !== 1 || !Array.isArray(index.files)) throw new Error('not a Cairn file index (version 1)');
  return index;
}

/**
 * A pattern as `cairn files search` takes it: a glob, or a regular expression (`regex`). A glob
 * without a slash matches the file name anywhere (`*.xlsx`); one with a slash matches the whole
 * path (`/part1/home/**` + `/report*.txt`). A regular expression is searched in the whole path.
 */
export function fileMatcher(pattern: string, o: { regex?: boolean } = {}): (path: string) => boolean {
  if (pattern.length === 0) throw new Error('the search pattern is empty');
  if (o.regex) {
    let rx: RegExp;
    try { rx = new RegExp(pattern, 'u'); } catch (e) { throw new Error(`${JSON.stringify(pattern)} is not a valid regular expression: ${(e as Error).message}`, { cause: e }); }
    return (p) => rx.test(p);
  }
  const isMatch = picomatch(pattern, { dot: true, basename: !pattern.includes('/') });
  return (p) => isMatch(p);
}
