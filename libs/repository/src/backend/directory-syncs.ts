// Directory fsyncs of the directory backend through kept descriptors. Every object put makes
// its new name durable with an fsync of its directory; opening and closing the directory for
// each of them was two of the nine file operations per stored chunk (and three async calls on
// the thread that also serves the data mover's sockets). A directory's descriptor is opened
// once and kept, up to `max` of them (least recently used closed first).
//
// Safe because fsync(2) of a directory's descriptor writes the directory as it is at the time
// of the call, whenever the descriptor was opened. What it needs is that the descriptor still
// names the directory at that path: the repository never removes its directories, and when the
// backend itself creates one (it was missing, e.g. removed behind its back) it calls `forget`,
// so the next sync opens the new one. A descriptor is closed only when no sync is using it, so
// a sync never reaches a closed (or reused) descriptor number.
import { close as closeCb, fsync as fsyncCb, open as openCb } from 'node:fs';
import { promisify } from 'node:util';

interface Entry {
  readonly fd: Promise<number>;
  users: number;
  /** The fsync under way, and the one queued behind it that later callers share. */
  running?: Promise<void>;
  queued?: Promise<void>;
  /** Evicted or forgotten while in use: closed by its last user. */
  dropped: boolean;
}

export class DirectorySyncs {
  /** Insertion order is recency: a used entry is moved to the end. */
  private readonly entries = new Map<string, Entry>();

  /** `fsync` is replaceable for tests of the sharing. */
  constructor(
    private readonly max = 512,
    private readonly fsync: (fd: number) => Promise<void> = fsFsync,
  ) {}

  /** fsync(2) of the directory `dir`; some file systems refuse it (EINVAL), which is not an error. */
  async sync(dir: string): Promise<void> {
    const entry = this.take(dir);
    try {
      await this.fsyncShared(entry);
    } catch (e) {
      // A descriptor that failed (could not open, I/O error) is not kept.
      if (this.entries.get(dir) === entry) void this.drop(dir, entry);
      throw e;
    } finally {
      this.release(entry);
    }
  }

  /**
   * Group commit: a caller that comes while an fsync of the directory runs may have added its
   * name after that fsync began, so it waits for the next one, which all such callers share
   * (it starts after every one of them called). Directories written by many puts at once (the
   * manifests' `restore-points/`, a busy fan-out directory) get one fsync per round, not one
   * per name.
   */
  private fsyncShared(entry: Entry): Promise<void> {
    if (entry.queued) return entry.queued;
    const run = async (): Promise<void> => {
      try {
        const fd = await entry.fd;
        await this.fsync(fd).catch((e: unknown) => {
          const code = (e as NodeJS.ErrnoException).code;
          if (code !== 'EINVAL' && code !== 'EBADF') throw e;
        });
      } finally {
        entry.running = undefined;
      }
    };
    if (!entry.running) {
      entry.running = run();
      return entry.running;
    }
    const next = entry.running.catch(() => undefined).then(() => {
      entry.queued = undefined;
      entry.running = run();
      return entry.running;
    });
    entry.queued = next;
    return next;
  }

  /** The directory at `dir` was (re)created: a kept descriptor may name a removed one. */
  forget(dir: string): void {
    const entry = this.entries.get(dir);
    if (entry) void this.drop(dir, entry);
  }

  /** Closes every kept descriptor that no sync is using (the others close when their sync ends). */
  async close(): Promise<void> {
    await Promise.all([...this.entries].map(([dir, entry]) => this.drop(dir, entry)));
  }

  /** Descriptors kept (for tests). */
  get size(): number {
    return this.entries.size;
  }

  private take(dir: string): Entry {
    let entry = this.entries.get(dir);
    if (entry) {
      this.entries.delete(dir);
    } else {
      entry = { fd: fsOpen(dir, 'r'), users: 0, dropped: false };
      entry.fd.catch(() => undefined); // awaited by the sync that opened it
    }
    this.entries.set(dir, entry);
    entry.users++;
    if (this.entries.size > this.max) this.evict();
    return entry;
  }

  private release(entry: Entry): void {
    entry.users--;
    if (entry.dropped && entry.users === 0) void closeEntry(entry);
  }

  private drop(dir: string, entry: Entry): Promise<void> {
    this.entries.delete(dir);
    entry.dropped = true;
    return entry.users === 0 ? closeEntry(entry) : Promise.resolve();
  }

  /** Drops the least recently used entries until at most `max` are kept. */
  private evict(): void {
    for (const [dir, entry] of this.entries) {
      if (this.entries.size <= this.max) return;
      void this.drop(dir, entry);
    }
  }
}

function closeEntry(entry: Entry): Promise<void> {
  return entry.fd.then((fd) => fsClose(fd), () => undefined).catch(() => undefined);
}

const fsOpen = promisify(openCb);
const fsFsync = promisify(fsyncCb);
const fsClose = promisify(closeCb);
