// Deferred puts of the directory backend: written to temp files at once, made durable and
// given their names in batches. One batch costs one file-system sync (syncfs(2) through
// coreutils' `sync --file-system`) for the data, the links, and one more sync for the new
// names, instead of an fsync per object (each a journal commit: ~0.4 ms of CPU and a wait
// for the device per 256 KiB chunk, measured in docs/benchmarks.md). Only a full batch is
// synced that way; a flush's partial batch (an incremental's few hundred changed chunks, a
// manifest) is synced file by file in the thread pool: spawning `sync` costs about 75 ms of
// CPU per spawn from a data mover (tools/bench/src/scale.ts --profile), and syncfs(2) writes
// every dirty page of the shared file system, not only ours (0.06-1.0 s for 655 64 KiB files
// on this machine under load, against 0.14-0.18 s for their 655 fsyncs, docs/benchmarks.md).
//
// Invariants:
// - A name appears only after the data under it is durable: a crash never leaves a named
//   object that is empty or short, which a later backup would deduplicate against.
// - `flush(group)` returns once every deferred put made before it is durable and named, and
//   throws when one of the group's puts could not be (its temp file is removed, the name never
//   appears): the writer then does not commit its manifest.
// - Memory stays bounded: a batch starts once `batchSize` puts are waiting, and puts wait
//   while more than two batches are outstanding.
import { execFile } from 'node:child_process';
import { close as closeCb, fsync as fsyncCb, open as openCb } from 'node:fs';
import { link, open, rename, stat, unlink } from 'node:fs/promises';
import { promisify } from 'node:util';
import { forEachLimit } from '../concurrency/semaphore.ts';
import type { FlushGroup } from './backend.ts';
import { SyncfsHelper } from './syncfs-helper.ts';

export interface DeferredName {
  readonly temp: string;
  readonly path: string;
  readonly dir: string;
  readonly key: string;
  /** Link (keep an existing object) instead of rename (replace it). */
  readonly keepExisting: boolean;
  readonly group: FlushGroup;
  /**
   * The temp file's descriptor, still open after its write: a small batch fsyncs through it
   * instead of opening the file again (add() closes it when the batch will not need it).
   */
  fd?: number;
  /** The fsync started through `fd` as soon as the put was queued (FlushGroup.syncEarly). */
  synced?: Promise<void>;
  /**
   * The name given right after that early fsync (its directory once named, undefined when it
   * could not be: the group's failure says why): the batch then only syncs the directory.
   */
  named?: Promise<string | undefined>;
}

export interface DeferredNamesOptions {
  /** Where `sync --file-system` is run (the repository root). */
  readonly root: string;
  /** Sync at all (the backend's `fsync` option; off only in tests of other things). */
  readonly sync: boolean;
  readonly batchSize?: number;
  /**
   * Batches of fewer files than this (and names in fewer directories) are made durable with an
   * fsync per file (per directory) instead of `sync --file-system`: starting that process costs
   * tens of milliseconds of CPU in a large Node process (a fork), and syncfs(2) waits for
   * every dirty page of the file system, other writers' too. Default: `batchSize`, so only
   * full batches (a full backup's) use it.
   */
  readonly syncfsFrom?: number;
  /** Wraps a file-system error for the failed key. */
  readonly mapError: (e: unknown, name: DeferredName) => Error;
  /** fsync(2) of a directory (default `syncDir`: open, fsync, close); the backend passes its kept descriptors (directory-syncs.ts). */
  readonly syncDir?: (dir: string) => Promise<void>;
}

type SyncMode = 'syncfs' | 'per-file' | undefined;

export class DeferredNames {
  private waiting: DeferredName[] = [];
  /** Entries of `waiting` that hold their descriptor open (at most `syncfsFrom`). */
  private held = 0;
  private chain: Promise<void> = Promise.resolve();
  private outstanding = 0;
  private mode: SyncMode;
  private readonly batchSize: number;
  private readonly syncfsFrom: number;
  /** Failures of ungrouped puts, thrown by the next ungrouped `flush()`. */
  private ungrouped: FlushGroup = {};
  /** Queued puts of `syncEarly` groups whose fsync has not started, and how many run. */
  private early: DeferredName[] = [];
  private earlyRunning = 0;
  /** `sync --file-system` without a fork of this process per call (syncfs-helper.ts). */
  private readonly helper: SyncfsHelper;
  /** Puts queued since the last background sync (kick), and whether one runs. */
  private sinceKick = 0;
  private kicking = false;

  constructor(private readonly o: DeferredNamesOptions) {
    this.batchSize = o.batchSize ?? 1024;
    this.syncfsFrom = o.syncfsFrom ?? this.batchSize;
    this.helper = new SyncfsHelper(o.root);
  }

  /** The shared group of puts that came without one. */
  get defaultGroup(): FlushGroup {
    return this.ungrouped;
  }

  /**
   * Queues a written temp file for naming; may wait for an earlier batch (backpressure). An
   * open `fd` is kept for the batch's fsync while the batch may still be synced file by file,
   * else closed now.
   */
  async add(name: DeferredName): Promise<void> {
    if (name.fd !== undefined) {
      if (this.o.sync && this.held < Math.min(this.syncfsFrom, MAX_HELD)) {
        this.held++;
        if (name.group.syncEarly) this.early.push(name);
      } else await closeFd(name);
    }
    this.waiting.push(name);
    this.startEarlySyncs();
    this.kick(name);
    if (this.waiting.length < this.batchSize) return;
    const batch = this.startBatch();
    if (this.outstanding > 2) await batch;
  }

  /** Makes every queued put durable and named; throws the group's (or the ungrouped puts') failure. */
  async flush(group?: FlushGroup): Promise<void> {
    await this.startBatch();
    const g = group ?? this.ungrouped;
    if (g.failure) {
      const failure = g.failure;
      if (!group) this.ungrouped = {};
      throw failure;
    }
  }

  private startBatch(): Promise<void> {
    const batch = this.waiting;
    this.waiting = [];
    this.held = 0;
    // Early fsyncs not yet started are the batch's own now (16 at a time, not EARLY_SYNCS).
    this.early = [];
    if (batch.length === 0) return this.chain;
    this.outstanding++;
    const run = async () => {
      try {
        await this.commit(batch);
      } finally {
        this.outstanding--;
      }
    };
    // Batches run one after another, so a flush that waits for the last waits for all.
    this.chain = this.chain.then(run, run);
    return this.chain;
  }

  private async commit(batch: DeferredName[]): Promise<void> {
    try {
      if (this.o.sync) await this.syncData(batch);
    } catch (e) {
      // The data may not be on disk: no name may appear. Every put of the batch fails.
      await forEachLimit(batch, 16, async (n) => { await closeFd(n); await unlink(n.temp).catch(() => undefined); });
      for (const n of batch) n.group.failure ??= this.o.mapError(e, n);
      return;
    }
    const dirs = new Set<string>();
    await forEachLimit(batch, 16, async (n) => {
      const dir = await (n.named ?? this.name(n));
      if (dir !== undefined) dirs.add(dir);
    });
    if (!this.o.sync || dirs.size === 0) return;
    try {
      await this.syncNames(dirs);
    } catch (e) {
      for (const n of batch) n.group.failure ??= this.o.mapError(e, n);
    }
  }

  /**
   * Gives a put whose data is durable its name (and removes its temp file): its directory, or
   * undefined when it could not be named (the group's failure says why).
   */
  private async name(n: DeferredName): Promise<string | undefined> {
    try {
      if (n.keepExisting) {
        try {
          await link(n.temp, n.path);
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code ?? '';
          // EEXIST: stored meanwhile by someone else (the same plaintext: content-addressed).
          // No hard links on this file system (some FUSE/SMB mounts): check, then rename,
          // which is not race-free (docs/repository-backends.md).
          if (NO_LINKS.has(code)) {
            if (!(await stat(n.path).then(() => true, () => false))) await rename(n.temp, n.path);
          } else if (code !== 'EEXIST') throw e;
        }
      } else {
        await rename(n.temp, n.path);
      }
      return n.dir;
    } catch (e) {
      n.group.failure ??= this.o.mapError(e, n);
      return undefined;
    } finally {
      await unlink(n.temp).catch(() => undefined);
    }
  }

  private async syncData(batch: readonly DeferredName[]): Promise<void> {
    if (batch.length >= this.syncfsFrom && await this.syncFileSystem()) {
      await forEachLimit(batch, 16, closeFd);
      return;
    }
    await forEachLimit(batch, 16, async (n) => {
      if (n.fd === undefined) return fsyncPath(n.temp);
      try {
        // An early fsync's failure fails the batch as this one's would (the data may be lost).
        await (n.synced ?? fsFsync(n.fd));
      } finally {
        await closeFd(n);
      }
    });
  }

  /**
   * fsyncs queued puts of `syncEarly` groups while the writer still reads and stores (a few at
   * a time: the thread pool also writes the temp files), and names each once its own data is
   * durable, so their flush mostly finds them durable and named and only syncs the
   * directories (the manifest still comes after that). A put whose early fsync failed is not
   * named; its batch fails as before.
   */
  private startEarlySyncs(): void {
    while (this.earlyRunning < EARLY_SYNCS && this.early.length > 0) {
      const n = this.early.shift()!;
      if (n.fd === undefined || n.synced) continue;
      this.earlyRunning++;
      const synced = fsFsync(n.fd).finally(() => {
        this.earlyRunning--;
        this.startEarlySyncs();
      });
      n.synced = synced;
      synced.catch(() => undefined); // awaited by the batch (syncData), which reports it
      // The name does not hold the fsync's place: the next early fsync starts beside it.
      n.named = synced.then(() => this.name(n), () => undefined);
    }
  }

  private async syncNames(dirs: ReadonlySet<string>): Promise<void> {
    if (dirs.size >= this.syncfsFrom && await this.syncFileSystem()) return;
    const sync = this.o.syncDir ?? syncDir;
    await forEachLimit([...dirs], 16, (d) => sync(d));
  }

  /** syncfs(2) of the repository's file system; false where `sync -f` is missing (then per file). */
  private async syncFileSystem(): Promise<boolean> {
    if (this.mode === 'per-file') return false;
    let failure: { code: string | number | undefined; stderr: string; cause?: unknown } | undefined;
    let viaHelper = false;
    try {
      const o = await this.helper.run();
      viaHelper = true;
      if (o.code !== 0) failure = { code: o.code === 127 ? 'ENOENT' : o.code, stderr: o.stderr || `exit code ${o.code}` };
    } catch {
      // No shell to keep (none at /bin/sh, or it died): one spawn of `sync` per call, as before.
    }
    if (!viaHelper) {
      try {
        await execFileP('sync', ['--file-system', this.o.root]);
      } catch (e) {
        const err = e as NodeJS.ErrnoException & { stderr?: string };
        failure = { code: err.code, stderr: err.stderr || err.message, cause: e };
      }
    }
    if (!failure) {
      this.mode = 'syncfs';
      return true;
    }
    const unsupported = failure.code === 'ENOENT' || /unrecognized option|invalid option/i.test(failure.stderr);
    if (this.mode === undefined && unsupported) {
      this.mode = 'per-file';
      return false;
    }
    throw new Error(`sync --file-system ${this.o.root} failed: ${failure.stderr.trim()}`, failure.cause !== undefined ? { cause: failure.cause } : undefined);
  }

  /**
   * Starts a file-system sync in the background once KICK_EVERY puts of groups without
   * `syncEarly` (a full's chunks) were queued since the last: the kernel writes their data
   * while the writer goes on, so a flush's last batch finds little left to write (its tail
   * after the last extent was the write-back of up to a batch, ~128 MiB, docs/benchmarks.md).
   * Durability is unchanged: each batch still syncs its data before any name appears.
   */
  private kick(name: DeferredName): void {
    if (!this.o.sync || name.group.syncEarly || this.mode === 'per-file') return;
    if (++this.sinceKick < KICK_EVERY || this.kicking) return;
    this.sinceKick = 0;
    this.kicking = true;
    this.helper.run().catch(() => undefined).finally(() => { this.kicking = false; });
  }

  /** Ends the sync helper's shell. */
  close(): Promise<void> {
    return this.helper.close();
  }
}

/** Early fsyncs in flight at once (the thread pool has four threads; puts need the others). */
const EARLY_SYNCS = 2;
/** Puts of a full's stream between background file-system syncs (256 KiB chunks: ~32 MiB of data, less once sealed). */
const KICK_EVERY = 256;
/** Descriptors a batch keeps open for its fsyncs (the rest are opened again to be synced). */
const MAX_HELD = 1024;
const NO_LINKS = new Set(['EPERM', 'ENOTSUP', 'ENOSYS', 'EOPNOTSUPP']);
const execFileP = promisify(execFile);
const fsOpen = promisify(openCb);
const fsFsync = promisify(fsyncCb);
const fsClose = promisify(closeCb);

/** Closes an entry's kept descriptor (once); a close after the data was synced loses nothing. */
async function closeFd(n: DeferredName): Promise<void> {
  const fd = n.fd;
  if (fd === undefined) return;
  n.fd = undefined;
  await n.synced?.catch(() => undefined); // not closed under its own early fsync
  await fsClose(fd).catch(() => undefined);
}

async function fsyncPath(path: string): Promise<void> {
  const fd = await fsOpen(path, 'r');
  try {
    await fsFsync(fd);
  } finally {
    await fsClose(fd);
  }
}

export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } catch (e) {
    // Some file systems refuse fsync on directories; the file itself is already synced.
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EBADF') throw e;
  } finally {
    await handle.close();
  }
}
