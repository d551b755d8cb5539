// The embedded default backend: objects are files under a root directory, keys are
// relative paths. Puts are atomic (temp file in the same directory, fsync, rename or link)
// so a crash or a concurrent reader never sees half an object.
import { randomBytes } from 'node:crypto';
import { close as closeCb, fsync as fsyncCb, mkdirSync, open as openCb, readFile as readFileCb, statSync, write as writeCb } from 'node:fs';
import { link, open, opendir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { promisify } from 'node:util';
import { join, resolve } from 'node:path';
import { BackendError, NotFoundError, type Backend, type FlushGroup, type ObjectInfo, type PutOptions } from './backend.ts';
import { DeferredNames } from './deferred-names.ts';
import { DirectorySyncs } from './directory-syncs.ts';
import { assertValidKey, assertValidPrefix, assertValidRange, isValidKey, rangePastEnd } from './keys.ts';
import { checkDeleteAllowed, checkPutAllowed, type LockStore } from './object-lock.ts';

export interface DirectoryBackendOptions {
  /** Create the root directory on the first put if it is missing (default false: a missing
   *  root usually means an unmounted volume, and writing beside the mount point loses data). */
  createRoot?: boolean;
  /** fsync files and directories on put (default true). Only tests of other things turn it off. */
  fsync?: boolean;
  /** Clock for object locks (ms since the epoch; tests move it instead of waiting). */
  now?: () => number;
  /** Deferred batches of at least this many files use `sync --file-system` (deferred-names.ts; default: only full batches). */
  syncfsFrom?: number;
}

// Temp names contain "~", which no valid key segment may, so list() never yields them and a
// crash leaves only files that are recognisably debris.
const TEMP_MARK = '.tmp~';

export class DirectoryBackend implements Backend {
  readonly root: string;
  readonly location: string;
  private readonly createRoot: boolean;
  private readonly fsync: boolean;
  private readonly now: () => number;
  private readonly lockStore: LockStore;
  /** Deferred puts waiting to be made durable and named. */
  private readonly deferred: DeferredNames;
  /** Kept descriptors of the directories whose new names are fsynced. */
  private readonly dirs = new DirectorySyncs();
  /** Temp names: this instance's random part and a counter (no random bytes drawn per put). */
  private readonly tempPrefix = `${TEMP_MARK}${randomBytes(6).toString('hex')}-`;
  private tempSeq = 0;

  constructor(root: string, options: DirectoryBackendOptions = {}) {
    this.root = resolve(root);
    this.location = `dir:${this.root}`;
    this.createRoot = options.createRoot ?? false;
    this.fsync = options.fsync ?? true;
    this.now = options.now ?? Date.now;
    this.lockStore = this.makeLockStore();
    this.deferred = new DeferredNames({
      root: this.root,
      sync: this.fsync,
      ...(options.syncfsFrom !== undefined ? { syncfsFrom: options.syncfsFrom } : {}),
      mapError: (e, n) => (e instanceof BackendError ? e : this.mapError(e, n.key, n.path, 'write')),
      syncDir: (d) => this.dirs.sync(d),
    });
  }

  async put(key: string, data: Uint8Array, options: PutOptions = {}): Promise<boolean> {
    assertValidKey(key);
    const path = this.pathOf(key);
    const slash = key.lastIndexOf('/');
    const dirKey = slash < 0 ? '' : key.slice(0, slash);
    const dir = slash < 0 ? this.root : this.pathOf(dirKey);
    await checkPutAllowed(this.lockStore, key, data, options.ifNotExists ?? false);
    if (options.deferSync) return this.putDeferred(key, path, dir, dirKey, data, options);
    const temp = this.tempIn(dir);
    try {
      await this.writeTemp(temp, data, dirKey, this.fsync);
    } catch (e) {
      throw this.mapError(e, key, temp, 'write');
    }
    try {
      if (options.ifNotExists) {
        // link() fails with EEXIST if the key exists: of two concurrent puts exactly one wins,
        // and the object appears complete because the temp file was already synced.
        try {
          await link(temp, path);
        } catch (e) {
          const code = errno(e);
          if (code === 'EPERM' || code === 'ENOTSUP' || code === 'ENOSYS' || code === 'EOPNOTSUPP') {
            // No hard links on this file system (some FUSE/SMB mounts); we could create the temp
            // file, so this is not a permission problem. Fall back to check-then-rename, which
            // is not race-free — the same trade-off as S3 (see docs/repository-backends.md).
            if (await pathExists(path)) return false;
            await rename(temp, path);
            if (this.fsync) await this.dirs.sync(dir);
            return true;
          }
          if (code !== 'EEXIST') throw e;
          if (await isDirectory(path)) throw directoryInTheWay(key, path, this.location, e);
          return false;
        }
      } else {
        await rename(temp, path);
      }
      if (this.fsync) await this.dirs.sync(dir);
      return true;
    } catch (e) {
      if (errno(e) === 'EISDIR' || errno(e) === 'ENOTEMPTY' || errno(e) === 'EEXIST') throw directoryInTheWay(key, path, this.location, e);
      throw this.mapError(e, key, path, 'write');
    } finally {
      // After rename the temp is gone; after link (or on failure) it must be removed.
      await unlink(temp).catch(() => undefined);
    }
  }

  async get(key: string): Promise<Uint8Array> {
    assertValidKey(key);
    const path = this.pathOf(key);
    try {
      return await fsReadFile(path);
    } catch (e) {
      throw this.mapError(e, key, path, 'read');
    }
  }

  localPath(key: string): string {
    assertValidKey(key);
    return this.pathOf(key);
  }

  async getRange(key: string, offset: number, length: number): Promise<Uint8Array> {
    assertValidKey(key);
    assertValidRange(key, offset, length);
    const path = this.pathOf(key);
    let handle;
    try {
      handle = await open(path, 'r');
    } catch (e) {
      throw this.mapError(e, key, path, 'read');
    }
    try {
      const { size } = await handle.stat();
      if (offset + length > size) throw rangePastEnd(key, this.location, offset, length, size);
      const out = Buffer.allocUnsafe(length);
      let done = 0;
      // read() may return fewer bytes than asked; loop until the range is filled.
      while (done < length) {
        const { bytesRead } = await handle.read(out, done, length - done, offset + done);
        if (bytesRead === 0) throw rangePastEnd(key, this.location, offset, length, offset + done);
        done += bytesRead;
      }
      return out;
    } catch (e) {
      throw this.mapError(e, key, path, 'read');
    } finally {
      await handle.close().catch(() => undefined);
    }
  }

  async stat(key: string): Promise<ObjectInfo> {
    assertValidKey(key);
    const path = this.pathOf(key);
    try {
      const s = await stat(path);
      if (!s.isFile()) throw new NotFoundError(key, this.location);
      return { key, size: s.size, mtime: s.mtime };
    } catch (e) {
      throw this.mapError(e, key, path, 'read');
    }
  }

  async exists(key: string): Promise<boolean> {
    try {
      await this.stat(key);
      return true;
    } catch (e) {
      if (e instanceof NotFoundError) return false;
      throw e;
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    assertValidPrefix(prefix);
    // Start at the deepest directory the prefix names fully; filter the rest by string prefix.
    const slash = prefix.lastIndexOf('/');
    const startKey = slash < 0 ? '' : prefix.slice(0, slash);
    yield* this.walk(startKey, prefix);
  }

  async delete(key: string): Promise<void> {
    assertValidKey(key);
    const path = this.pathOf(key);
    await checkDeleteAllowed(this.lockStore, key);
    try {
      await unlink(path);
    } catch (e) {
      const code = errno(e);
      // Missing, or a directory (which is not an object): nothing to delete.
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') return;
      if (code === 'EPERM' && (await isDirectory(path))) return;
      throw this.mapError(e, key, path, 'delete');
    }
  }

  /** Makes every `deferSync` put so far durable and gives it its name (deferred-names.ts). */
  async flush(group?: FlushGroup): Promise<void> {
    await this.deferred.flush(group);
  }

  async close(): Promise<void> {
    await this.deferred.close();
    await this.dirs.close();
  }

  /** Deletes temp files (never valid keys) older than `olderThanMs`: what crashed puts left. */
  async removeDebris(olderThanMs: number): Promise<{ files: number; bytes: number }> {
    const cutoff = this.now() - olderThanMs;
    let files = 0;
    let bytes = 0;
    const visit = async (dirPath: string): Promise<void> => {
      let dir;
      try {
        dir = await opendir(dirPath);
      } catch (e) {
        if (errno(e) === 'ENOENT' || errno(e) === 'ENOTDIR') return;
        throw this.mapError(e, undefined, dirPath, 'list');
      }
      const subdirs: string[] = [];
      for await (const entry of dir) {
        const path = join(dirPath, entry.name);
        if (entry.isDirectory()) subdirs.push(path);
        else if (entry.isFile() && entry.name.startsWith(TEMP_MARK)) {
          const s = await stat(path).catch(() => undefined);
          if (!s || s.mtimeMs >= cutoff) continue;
          await unlink(path).then(() => { files++; bytes += s.size; }, () => undefined);
        }
      }
      for (const d of subdirs) await visit(d);
    };
    await visit(this.root);
    return { files, bytes };
  }

  /**
   * A deferred put writes its temp file now (no fsync) and gets its name in a batch, after one
   * file-system sync: `true` means it will be stored at the flush (or was found there by then).
   */
  private async putDeferred(key: string, path: string, dir: string, dirKey: string, data: Uint8Array, options: PutOptions): Promise<boolean> {
    // The stat is synchronous (microseconds); the temp file is written through the thread pool.
    // Written synchronously, open + write of every 256 KiB chunk ran on the thread that also
    // serves the NBD sockets and every other service of the embedded stack: in the product
    // benchmark (2 GiB full) the main thread used 4.2 CPU-s that way, 2.9 with async writes
    // (docs/benchmarks.md, "The product").
    const temp = this.tempIn(dir);
    let fd: number | undefined;
    try {
      if (options.ifNotExists) {
        const s = statSync(path, { throwIfNoEntry: false });
        if (s?.isDirectory()) throw directoryInTheWay(key, path, this.location, undefined);
        if (s) return false;
      }
      fd = await this.writeTemp(temp, data, dirKey, false, this.fsync);
    } catch (e) {
      if (e instanceof BackendError) throw e;
      throw this.mapError(e, key, temp, 'write');
    }
    await this.deferred.add({
      temp, path, dir, key, keepExisting: options.ifNotExists ?? false, group: options.flushGroup ?? this.deferred.defaultGroup,
      ...(fd !== undefined ? { fd } : {}),
    });
    return true;
  }

  /** Lock checks read the files directly (object-lock.ts). */
  private makeLockStore(): LockStore {
    return {
    location: this.location,
    readRaw: async (key) => {
      try {
        return await readFile(this.pathOf(key));
      } catch (e) {
        const code = errno(e);
        if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') return undefined;
        throw this.mapError(e, key, this.pathOf(key), 'read');
      }
    },
    existsRaw: (key) => pathExists(this.pathOf(key)).catch(() => true),
    now: () => this.now(),
    };
  }

  private async *walk(dirKey: string, prefix: string): AsyncGenerator<ObjectInfo> {
    const dirPath = dirKey === '' ? this.root : this.pathOf(dirKey);
    let dir;
    try {
      dir = await opendir(dirPath);
    } catch (e) {
      const code = errno(e);
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw this.mapError(e, undefined, dirPath, 'list');
    }
    const subdirs: string[] = [];
    try {
      for await (const entry of dir) {
        if (!isValidKey(entry.name)) continue; // temp files and foreign debris
        const key = dirKey === '' ? entry.name : `${dirKey}/${entry.name}`;
        if (entry.isDirectory()) {
          // Descend only where keys under it can still match the prefix.
          if (key.startsWith(prefix) || prefix.startsWith(`${key}/`)) subdirs.push(key);
        } else if (entry.isFile() && key.startsWith(prefix)) {
          try {
            const s = await stat(join(dirPath, entry.name));
            yield { key, size: s.size, mtime: s.mtime };
          } catch (e) {
            if (errno(e) === 'ENOENT') continue; // deleted while listing
            throw this.mapError(e, key, join(dirPath, entry.name), 'list');
          }
        }
      }
    } catch (e) {
      throw e instanceof BackendError ? e : this.mapError(e, undefined, dirPath, 'list');
    }
    for (const sub of subdirs) yield* this.walk(sub, prefix);
  }

  private tempIn(dir: string): string {
    return join(dir, `${this.tempPrefix}${(this.tempSeq++).toString(36)}`);
  }

  private pathOf(key: string): string {
    return join(this.root, ...key.split('/'));
  }

  // Plain descriptors rather than FileHandles: a put is on the hot path of every backup,
  // and a FileHandle costs noticeably more per call. `keepOpen`: the descriptor is returned
  // open (a deferred put's batch may fsync through it), else closed.
  private async writeTemp(temp: string, data: Uint8Array, dirKey: string, sync: boolean, keepOpen = false): Promise<number | undefined> {
    let fd: number;
    try {
      fd = await fsOpen(temp, 'wx');
    } catch (e) {
      if (errno(e) !== 'ENOENT') throw e;
      this.makeDirsSync(dirKey);
      fd = await fsOpen(temp, 'wx');
    }
    try {
      for (let done = 0; done < data.byteLength;) done += await fsWrite(fd, data, done, data.byteLength - done, null);
      if (sync) await fsFsync(fd);
    } catch (e) {
      await fsClose(fd).catch(() => undefined);
      await unlink(temp).catch(() => undefined);
      throw e;
    }
    if (keepOpen) return fd;
    await fsClose(fd);
    return undefined;
  }

  /** Creates the directories of `dirKey` below the root, one level at a time, so that a
   *  missing root is reported instead of silently re-created. Synchronous: it runs only when
   *  a directory is missing, and each call takes microseconds. */
  private makeDirsSync(dirKey: string): void {
    const s = statSync(this.root, { throwIfNoEntry: false });
    if (s && !s.isDirectory()) throw new BackendError(`repository root ${this.root} is not a directory`, false);
    if (!s) {
      if (!this.createRoot) {
        throw new BackendError(
          `repository directory ${this.root} does not exist: check that the volume is mounted, or initialise the repository there`,
          false,
        );
      }
      mkdirSync(this.root, { recursive: true });
      this.dirs.forget(this.root);
    }
    let path = this.root;
    for (const segment of dirKey === '' ? [] : dirKey.split('/')) {
      path = join(path, segment);
      try {
        mkdirSync(path);
        this.dirs.forget(path); // new here: a kept descriptor of this path names a removed directory
      } catch (e) {
        if (errno(e) !== 'EEXIST') throw e;
      }
    }
  }

  private mapError(e: unknown, key: string | undefined, path: string, action: FsAction): BackendError {
    return mapFsError(e, { key, path, action, location: this.location });
  }
}

export type FsAction = 'read' | 'write' | 'list' | 'delete';

/** Maps a Node fs error to the contract's error kinds, naming the path and what to do.
 *  Exported for unit tests (permission errors cannot be provoked when tests run as root). */
export function mapFsError(
  e: unknown,
  ctx: { key: string | undefined; path: string; action: FsAction; location: string },
): BackendError {
  const { key, path, action, location } = ctx;
  if (e instanceof BackendError) return e;
  const code = errno(e);
  const where = `${path} (${location})`;
  switch (code) {
    case 'ENOENT':
    case 'ENOTDIR':
    case 'EISDIR':
      if (key !== undefined && action === 'read') return new NotFoundError(key, location);
      return new BackendError(`cannot ${action} ${where}: a parent is missing or is not a directory`, false, key, { cause: e });
    case 'EACCES':
    case 'EPERM':
      return new BackendError(
        `permission denied to ${action} ${where}: check the owner and mode of the repository directory (this process runs as uid ${process.getuid?.() ?? '?'})`,
        false, key, { cause: e });
    case 'ENOSPC':
    case 'EDQUOT':
      return new BackendError(
        `no space left to ${action} ${where}${code === 'EDQUOT' ? ' (quota exceeded)' : ''}: free space (prune old restore points) or grow the volume, then retry the job`,
        false, key, { cause: e });
    case 'EROFS':
      return new BackendError(`cannot ${action} ${where}: the file system is read-only; remount it read-write`, false, key, { cause: e });
    case 'EMFILE':
    case 'ENFILE':
    case 'EAGAIN':
    case 'EBUSY':
    case 'EINTR':
      return new BackendError(`temporary failure to ${action} ${where}: ${code}`, true, key, { cause: e });
    default:
      return new BackendError(`cannot ${action} ${where}: ${e instanceof Error ? e.message : String(e)}`, false, key, { cause: e });
  }
}

function errno(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string' ? e.code : undefined;
}

const fsOpen = promisify(openCb);
const fsWrite = promisify((fd: number, data: Uint8Array, offset: number, length: number, position: null, cb: (err: NodeJS.ErrnoException | null, written: number) => void) => writeCb(fd, data, offset, length, position, cb));
const fsFsync = promisify(fsyncCb);
const fsReadFile = promisify(readFileCb) as (path: string) => Promise<Buffer>;
const fsClose = promisify(closeCb);

async function pathExists(path: string): Promise<boolean> {
  return stat(path).then(() => true, (e: unknown) => (errno(e) === 'ENOENT' ? false : Promise.reject(e)));
}

async function isDirectory(path: string): Promise<boolean> {
  return stat(path).then((s) => s.isDirectory(), () => false);
}

function directoryInTheWay(key: string, path: string, location: string, cause: unknown): BackendError {
  // S3 allows both "a" and "a/b"; a directory cannot, so keys must not be prefixes of keys.
  return new BackendError(`cannot put ${key} in ${location}: ${path} is a directory (the key is also a prefix of other keys)`, false, key, { cause });
}
