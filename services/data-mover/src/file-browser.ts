// File-level restore on the data mover: a restore point's disk is served read-only over NBD
// (through the restore exports) to a warm libguestfs appliance, one per (restore point, disk)
// being browsed, closed after an idle time; listings and copies go through it. Every act is
// an event naming who, which restore point and which paths (docs/files.md).
import { createHash, randomUUID } from 'node:crypto';
import { lstat, mkdir, open, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Refusal, newEvent, type Actor, type CommandPayloadMap, type CommandResultMap, type TraceContext } from '@cairn/contracts';
import type { EventLog } from '@cairn/eventlog';
import {
  BrowseSession, GuestFilesError, InvalidPathError, PoolFullError, SessionPool, TargetExistsError, archiveStream, buildFileIndex, checkGuestPath, copyOut, fileMatcher, planArchive, probeDisk,
  type ApplianceOptions, type FileEntry, type FileIndex,
} from '@cairn/guest-files';
import type { FileStreamOffer, FileStreamOutcome } from '@cairn/messaging';
import { Readable as ReadableStream, Transform, pipeline as pipelineCb, type Readable } from 'node:stream';
const ReadableFrom = (it: AsyncIterable<Buffer>): Readable => ReadableStream.from(it, { objectMode: false });
import { FileIndexStore, splitPoints, type IndexStoreRole } from './file-index.store.ts';
import type { DiskReader, RestorePointReader } from '@cairn/repository';
import { RestoreRefused, type MoverLogger } from './data-mover.service.ts';

/** The part of the restore exports a browsing session needs: serve a disk, stop serving it. */
export interface BrowseExports {
  add(exportName: string, disk: DiskReader, info: { restorePointId: string; disk: string; purpose: 'files' }): Promise<{ socket: string; exportName: string }>;
  remove(exportName: string): Promise<boolean>;
}

export interface FileBrowserOptions extends ApplianceOptions {
  readonly site: string;
  /** An appliance unused this long is shut down (default 10 min). */
  readonly idleMs?: number;
  /** Appliances at most (default 4); each takes about memoryMiB plus QEMU's own. */
  readonly maxSessions?: number;
  /**
   * Build file indexes after backups (where the policy wants them). Default on; off with
   * CAIRN_FILE_INDEX=0 (the test suite does, since each build boots an appliance).
   */
  readonly index?: boolean;
  /** Publishes how far a RestoreFiles that asked for it got (cairn.<site>.progress.<id>, not stored). */
  readonly publishProgress?: (progressId: string, p: { disk: string; bytesDone: number; bytesPlanned: number | null }) => void;
}

/** What browsing does with a repository: read restore points, keep their file indexes. */
export type BrowsedRepository = RestorePointReader & IndexStoreRole;

/** Where downloads are offered to be pulled (libs/messaging FileStreamServer). */
export interface FileStreams {
  offer(offer: FileStreamOffer): string;
}

/** Sends files into a running VM (the snapshot coordinator holds its guest agent). */
export type SendToGuest = (cmd: CommandPayloadMap['WriteGuestFiles'], actor: Actor, trace?: TraceContext) => Promise<CommandResultMap['WriteGuestFiles']>;

/** Finds the repository holding a restore point (the site's own, or a replica kept here). */
export type LocateRestorePoint = (restorePointId: string) => Promise<{ repository: BrowsedRepository; replica: boolean } | undefined>;

const MAX_ENTRIES = 2000;

/**
 * A download that ended early (cancelled by its reader, dropped unpulled, failed): its source is
 * destroyed, not drained, so the appliance stops reading the disk. Closing the pipe's reading
 * end makes libguestfs cancel the transfer in the appliance (its write gets EPIPE); the command
 * ends with that error and the session stays usable. `then` runs once the source is closed.
 */
function stopReading(unread: Readable, then: () => void): void {
  unread.on('error', () => undefined);
  if (unread.closed) { then(); return; }
  unread.once('close', then);
  unread.destroy();
}

export class FileBrowser {
  readonly pool: SessionPool;
  readonly indexing: boolean;

  constructor(
    private readonly o: FileBrowserOptions,
    private readonly log: EventLog,
    private readonly locate: LocateRestorePoint,
    private readonly exports: BrowseExports,
    private readonly allowedTarget: (path: string, ownTarget: boolean) => Promise<string>,
    private readonly logger: MoverLogger,
    /** The site's own repositories (searched; indexes are written there). */
    private readonly repositories: () => Iterable<BrowsedRepository> = () => [],
    private readonly streams?: FileStreams,
    private readonly toGuest?: SendToGuest,
  ) {
    this.indexing = o.index ?? process.env['CAIRN_FILE_INDEX'] !== '0';
    this.pool = new SessionPool({ idleMs: o.idleMs ?? 600_000, maxSessions: o.maxSessions ?? 4 }, (key, why) => {
      void this.exports.remove(exportName(key));
      this.logger.info({ session: key, why }, 'file browsing session closed');
    });
  }

  private async disk(restorePointId: string, disk: string | undefined): Promise<{ repository: BrowsedRepository; disk: string }> {
    let found;
    try {
      found = await this.locate(restorePointId);
    } catch (e) {
      // A replica of another site whose key is not here, or that cannot be opened.
      throw new RestoreRefused('forbidden', (e as Error).message);
    }
    if (!found) throw new RestoreRefused('not_found', `no restore point ${restorePointId} in this site's repositories or the replicas kept here`);
    const point = (await found.repository.listRestorePoints()).find((p) => p.id === restorePointId);
    const names = point?.disks.map((d) => d.name) ?? [];
    if (disk === undefined) {
      if (names.length !== 1) throw new RestoreRefused('invalid_command', `restore point ${restorePointId} has ${names.length} disks (${names.join(', ')}); choose one`);
      return { repository: found.repository, disk: names[0]! };
    }
    if (!names.includes(disk)) throw new RestoreRefused('not_found', `restore point ${restorePointId} has no disk ${JSON.stringify(disk)} (disks: ${names.join(', ')})`);
    return { repository: found.repository, disk };
  }

  async withSession<T>(restorePointId: string, diskName: string | undefined, fn: (s: BrowseSession, disk: string) => Promise<T>): Promise<T> {
    const { repository, disk } = await this.disk(restorePointId, diskName);
    const key = `${restorePointId}/${disk}`;
    try {
      return await this.pool.use(key, async () => {
        const name = exportName(key);
        let reader: DiskReader;
        try {
          reader = await repository.openDisk(restorePointId, disk);
        } catch (e) {
          throw new RestoreRefused('forbidden', `${disk} of restore point ${restorePointId} cannot be read here: ${(e as Error).message}`);
        }
        // Refuse a disk that carries no partition table or file system before paying for an appliance.
        const probe = await probeDisk((offset, length) => reader.read(offset, length), reader.sizeBytes);
        if (probe.kind === 'none') throw new GuestFilesError('no_filesystem', `${disk} of restore point ${restorePointId} holds no partition table and no file system (no known signature in its first 128 KiB)`);
        if (probe.kind === 'luks') throw new GuestFilesError('encrypted', `${disk} of restore point ${restorePointId} is LUKS-encrypted as a whole: its files cannot be read without the passphrase, which Cairn does not hold`);
        const nbd = await this.exports.add(name, reader, { restorePointId, disk, purpose: 'files' });
        const started = Date.now();
        try {
          const session = await BrowseSession.open({ uri: `nbd:///${name}?socket=${nbd.socket}` }, { ...this.o, label: `${disk} of restore point ${restorePointId}` });
          this.logger.info({ session: key, pid: session.pid, startMs: Date.now() - started, filesystems: session.filesystems }, 'file browsing session opened');
          return session;
        } catch (e) {
          await this.exports.remove(name);
          throw e;
        }
      }, (s) => fn(s, disk));
    } catch (e) {
      throw refusal(e);
    }
  }

  async browse(cmd: CommandPayloadMap['BrowseFiles'], actor: Actor, causationId: string, trace?: TraceContext) {
    const path = guestPath(cmd.path);
    return this.withSession(cmd.restorePointId, cmd.disk, async (s, disk) => {
      const entries = cmd.op === 'list' ? await s.ls(path) : [await s.stat(path)];
      await this.record('RestorePointFilesBrowsed', { restorePointId: cmd.restorePointId, disk, op: cmd.op, paths: [path] }, actor, causationId, trace);
      return {
        restorePointId: cmd.restorePointId, disk, entries: entries.slice(0, MAX_ENTRIES), truncated: entries.length > MAX_ENTRIES,
        filesystems: s.filesystems.map((f) => ({ name: f.name, type: f.type, mounted: f.mounted, ...(f.reason ? { reason: f.reason } : {}) })),
      };
    });
  }

  /** `ownTarget`: the person's own signed `--to` on the local CLI (docs/security.md, Restore targets). */
  async restoreFiles(cmd: CommandPayloadMap['RestoreFiles'], actor: Actor, causationId: string, trace?: TraceContext, ownTarget = false) {
    const paths = cmd.paths.map(guestPath);
    // A directory target may exist: the confinement (which refuses an existing non-file) judges
    // a name that does not exist inside it, so the directory, resolved through any links, must
    // lie where restores may write; what is written stays inside it.
    if (cmd.target.kind === 'vm') return this.restoreIntoVm(cmd, cmd.target, paths, actor, causationId, trace);
    const target = cmd.target.kind === 'directory'
      ? dirname(await this.allowedTarget(join(cmd.target.path, `.cairn-restore-${randomUUID()}`), ownTarget))
      : await this.allowedTarget(cmd.target.path, ownTarget);
    const started = Date.now();
    return this.withSession(cmd.restorePointId, cmd.disk, async (s, disk) => {
      let report;
      if (cmd.target.kind === 'tar') {
        if (paths.length !== 1) throw new RestoreRefused('invalid_command', 'a tar archive is made of one directory; give one path');
        const exists = await lstat(target).then(() => true, () => false);
        if (exists && !cmd.overwrite) throw new RestoreRefused('conflict', `${target} exists; nothing was changed (pass --overwrite to replace it)`);
        await mkdir(dirname(target), { recursive: true });
        const tar = await s.tar(paths[0]!);
        const fh = await open(target, 'w', 0o600);
        try {
          await Promise.all([pipeline(tar.stream, fh.createWriteStream()), tar.done]);
        } catch (e) {
          await rm(target, { force: true });
          throw e;
        }
        const { size } = await lstat(target);
        report = { files: 0, directories: 1, symlinks: 0, skipped: [], bytes: size, written: [target] };
      } else if (cmd.target.kind === 'zip') {
        const exists = await lstat(target).then(() => true, () => false);
        if (exists && !cmd.overwrite) throw new RestoreRefused('conflict', `${target} exists; nothing was changed (pass --overwrite to replace it)`);
        await mkdir(dirname(target), { recursive: true });
        const plan = await planArchive(s, paths);
        const fh = await open(target, 'w', 0o600);
        const progress = this.progress(cmd.progressId, disk, plan.bytes);
        try {
          // Progress counts the files' bytes read (the archive's own size is known only at its end).
          await pipeline(archiveStream({
            stat: (p) => s.stat(p), ls: (p) => s.ls(p), find: (p) => s.find(p), statMany: (ps) => s.statMany(ps),
            read: async (p) => { const r = await s.read(p); return { stream: counted(r.stream, progress.add), done: r.done }; },
          }, plan, 'zip'), fh.createWriteStream());
          progress.end();
        } catch (e) {
          await rm(target, { force: true });
          throw e;
        }
        const count = (t: string) => plan.entries.filter((e) => e.entry.type === t).length;
        report = { files: plan.files, directories: count('directory'), symlinks: count('symlink'), skipped: plan.skipped, bytes: plan.bytes, written: [target] };
      } else {
        report = await copyOut(s, paths, target, { overwrite: cmd.overwrite ?? false });
      }
      const accessId = await this.record('FilesRestored', {
        restorePointId: cmd.restorePointId, disk, paths, target: cmd.target.kind, path: target, files: report.files, bytes: report.bytes,
      }, actor, causationId, trace);
      this.logger.info({ restorePointId: cmd.restorePointId, disk, paths, target, files: report.files, bytes: report.bytes, actor: actor.id }, 'files restored');
      return { accessId, restorePointId: cmd.restorePointId, disk, ...report, durationMs: Date.now() - started };
    });
  }

  /**
   * Opens a download (a file, or paths as a tar or zip archive) to be pulled from the file
   * streams. The appliance stays busy (not closed as idle) until the stream ends; the event is
   * recorded when the download is opened, so a pull that never finishes is still on record.
   */
  async openDownload(cmd: CommandPayloadMap['OpenFileDownload'], actor: Actor, causationId: string, trace?: TraceContext): Promise<CommandResultMap['OpenFileDownload']> {
    const streams = this.streams;
    if (!streams) throw new Refusal('unavailable', 'this data mover serves no downloads (no file streams)');
    const paths = cmd.paths.map(guestPath);
    if (cmd.format === 'file' && paths.length !== 1) throw new RestoreRefused('invalid_command', 'a file download is one path; download several as tar or zip');
    return new Promise((resolveOpen, rejectOpen) => {
      let opened = false;
      this.withSession(cmd.restorePointId, cmd.disk, async (s, disk) => {
        let start: (first: unknown) => Promise<Readable> | Readable;
        let entry: FileEntry | undefined;
        let files: number; let bytes: number; let name: string;
        if (cmd.format === 'file') {
          const e = await s.stat(paths[0]!);
          if (e.type !== 'file') throw new GuestFilesError('invalid_path', `${e.path} is a ${e.type}, not a regular file; download it as tar or zip`);
          entry = e; files = 1; bytes = e.size; name = e.name;
          start = async (first) => {
            const r = await s.read(e.path, byteRange(first, e.size));
            // A failure reaches the stream too; a cancelled read ends its command with a broken pipe.
            r.done.catch(() => undefined);
            return r.stream;
          };
        } else {
          const plan = await planArchive(s, paths);
          files = plan.files; bytes = plan.bytes;
          const last = paths.length === 1 && paths[0] !== '/' ? paths[0]!.slice(paths[0]!.lastIndexOf('/') + 1) : `files-${cmd.restorePointId.slice(0, 8)}`;
          name = `${last}.${cmd.format}`;
          const format = cmd.format;
          start = () => archiveStream(s, plan, format);
        }
        const accessId = await this.record('FilesRestored', {
          restorePointId: cmd.restorePointId, disk, paths, target: 'download', path: cmd.format, files, bytes,
        }, actor, causationId, trace);
        let ended!: (o: FileStreamOutcome) => void;
        const finished = new Promise<FileStreamOutcome>((r) => { ended = r; });
        const streamId = streams.offer({
          start,
          end: (outcome, unread) => {
            if (!unread) { ended(outcome); return; }
            stopReading(unread, () => ended(outcome));
          },
        });
        const tag = createHash('sha256').update([cmd.restorePointId, disk, cmd.format, ...paths, String(bytes), entry?.mtimeNs ?? ''].join('\0')).digest('hex').slice(0, 32);
        resolveOpen({
          accessId, streamId, restorePointId: cmd.restorePointId, disk, format: cmd.format, name, files, bytes, etag: `"${tag}"`, ...(entry ? { entry } : {}),
        });
        opened = true;
        const outcome = await finished;
        this.logger.info({ restorePointId: cmd.restorePointId, disk, paths, format: cmd.format, actor: actor.id, ...outcome }, 'download ended');
      }).catch((e: unknown) => {
        if (!opened) rejectOpen(e);
        else this.logger.warn({ err: (e as Error).message }, 'download failed');
      });
    });
  }

  /** Regular files into a running VM: the coordinator pulls them from a stream and writes through the agent. */
  private async restoreIntoVm(cmd: CommandPayloadMap['RestoreFiles'], target: { vmId: string; path?: string }, paths: string[], actor: Actor, causationId: string, trace?: TraceContext) {
    const streams = this.streams; const toGuest = this.toGuest;
    if (!streams || !toGuest) throw new Refusal('unavailable', 'this data mover cannot write into VMs (no file streams or no command bus)');
    const into = target.path === undefined ? undefined : guestPath(target.path).replace(/\/+$/, '');
    const started = Date.now();
    return this.withSession(cmd.restorePointId, cmd.disk, async (s, disk) => {
      const entries: FileEntry[] = [];
      for (const p of paths) {
        const e = await s.stat(p);
        if (e.type !== 'file') throw new RestoreRefused('invalid_command', `${p} is a ${e.type}: only regular files are written into a VM (its guest agent makes no directories or links)`);
        entries.push(e);
      }
      // A file's path inside its file system (`/part1/etc/hosts` -> `/etc/hosts`), or the name in `--to`.
      const guestPaths = entries.map((e) => (into !== undefined ? `${into}/${e.name}` : e.path.slice(e.path.indexOf('/', 1))));
      if (new Set(guestPaths).size !== guestPaths.length) throw new RestoreRefused('invalid_command', `two files would land on one guest path (${guestPaths.join(', ')})`);
      let ended!: () => void;
      const finished = new Promise<void>((r) => { ended = r; });
      const progress = this.progress(cmd.progressId, disk, entries.reduce((n, e) => n + e.size, 0));
      const streamId = streams.offer({
        start: () => concatReads(s, entries.map((e) => e.path), progress.add),
        end: (o, unread) => {
          if (o.how === 'done') progress.end();
          if (!unread) { ended(); return; }
          stopReading(unread, ended);
        },
      });
      let written;
      try {
        written = await toGuest({ vmId: target.vmId, streamId, files: entries.map((e, i) => ({ guestPath: guestPaths[i]!, size: e.size })), ...(cmd.overwrite ? { overwrite: true } : {}) }, actor, trace);
      } finally {
        // The coordinator cancels or finishes the stream; wait for the appliance to be free.
        await Promise.race([finished, new Promise((r) => setTimeout(r, 120_000).unref())]);
      }
      const accessId = await this.record('FilesRestored', {
        restorePointId: cmd.restorePointId, disk, paths, target: 'vm', vmId: target.vmId, path: guestPaths.join(', ').slice(0, 4096), files: entries.length, bytes: written.bytes,
      }, actor, causationId, trace);
      this.logger.info({ restorePointId: cmd.restorePointId, disk, paths, vmId: target.vmId, guestPaths, bytes: written.bytes, actor: actor.id }, 'files written into a VM');
      return { accessId, restorePointId: cmd.restorePointId, disk, written: written.written, files: entries.length, directories: 0, symlinks: 0, skipped: [], bytes: written.bytes, durationMs: Date.now() - started };
    });
  }

  /** Bytes so far of a RestoreFiles that asked for progress: published at most every 250 ms, and at the end. */
  private progress(progressId: string | undefined, disk: string, bytesPlanned: number): { add: (n: number) => void; end: () => void } {
    const publish = this.o.publishProgress;
    if (!progressId || !publish) return { add: () => undefined, end: () => undefined };
    let bytesDone = 0; let last = 0;
    const send = () => { last = Date.now(); publish(progressId, { disk, bytesDone, bytesPlanned }); };
    send();
    return {
      add: (n) => { bytesDone += n; if (Date.now() - last >= 250) send(); },
      end: send,
    };
  }

  private readonly stores = new WeakMap<BrowsedRepository, FileIndexStore>();

  private store(repo: BrowsedRepository): FileIndexStore {
    let s = this.stores.get(repo);
    if (!s) { s = new FileIndexStore(repo); this.stores.set(repo, s); }
    return s;
  }

  /**
   * Builds and stores the file index of a restore point of this site (every disk, every
   * readable file system). Disks with nothing readable are noted; when no disk had anything,
   * nothing is stored. Returns the index restore point's id, or undefined.
   */
  async buildIndex(restorePointId: string): Promise<{ indexId?: string; files: number; durationMs: number }> {
    const started = Date.now();
    const found = await this.locate(restorePointId);
    if (!found || found.replica) return { files: 0, durationMs: 0 };
    const point = (await found.repository.listRestorePoints()).find((p) => p.id === restorePointId);
    if (!point) return { files: 0, durationMs: 0 };
    // The transfer wrote what the job's policy wants into the manifest: nobody reads the job or the policy for it.
    if (point.labels?.['fileIndex'] === 'off') {
      this.logger.info({ restorePointId }, 'no file index: the policy wants none');
      return { files: 0, durationMs: 0 };
    }
    const filesystems: Array<FileIndex['filesystems'][number]> = [];
    const files: Array<FileIndex['files'][number]> = [];
    for (const d of point.disks) {
      try {
        const index = await this.withSession(restorePointId, d.name, (s) => buildFileIndex(s, d.name));
        filesystems.push(...index.filesystems);
        files.push(...index.files);
      } catch (e) {
        if (!(e instanceof FilesRefused) || e.code === 'unavailable') throw e;
        filesystems.push({ disk: d.name, name: '', type: 'none', indexed: false, reason: e.message });
      }
    }
    if (!filesystems.some((f) => f.indexed)) {
      this.logger.info({ restorePointId, filesystems }, 'no file index: no readable file system');
      return { files: 0, durationMs: Date.now() - started };
    }
    const indexId = await this.store(found.repository).put(restorePointId, { version: 1, builtAt: new Date().toISOString(), filesystems, files });
    this.logger.info({ restorePointId, indexId, files: files.length, durationMs: Date.now() - started }, 'file index stored');
    return { indexId, files: files.length, durationMs: Date.now() - started };
  }

  /** A restore point went: its index goes too. */
  async dropIndex(restorePointId: string): Promise<void> {
    for (const repo of this.repositories()) await this.store(repo).remove(restorePointId).catch(() => false);
  }

  /** Searches the file indexes (no appliance). */
  async search(cmd: CommandPayloadMap['SearchFiles'], actor: Actor, causationId: string, trace?: TraceContext) {
    let match: (p: string) => boolean;
    try {
      match = fileMatcher(cmd.pattern, { regex: cmd.regex ?? false });
    } catch (e) {
      throw new RestoreRefused('invalid_command', (e as Error).message);
    }
    const limit = cmd.limit ?? 1000;
    const since = cmd.since ? Date.parse(cmd.since) : undefined;
    const matches: Array<{ restorePointId: string; vmId: string; vmName: string; committedAt: string; disk: string; path: string; type: string; size: number; mtime: string }> = [];
    const without: string[] = [];
    let searched = 0; let truncated = false;
    for (const repo of this.repositories()) {
      const { points, indexes } = splitPoints(await repo.listRestorePoints());
      const scope = points.filter((p) => (!cmd.vmId || p.vm.id === cmd.vmId) && (since === undefined || Date.parse(p.committedAt) >= since))
        .sort((a, b) => a.committedAt.localeCompare(b.committedAt));
      for (const p of scope) {
        const indexId = indexes.get(p.id);
        if (!indexId) { without.push(p.id); continue; }
        const index = await this.store(repo).read(indexId);
        searched++;
        for (const f of index.files) {
          if (!match(f.path)) continue;
          if (matches.length >= limit) { truncated = true; break; }
          matches.push({ restorePointId: p.id, vmId: p.vm.id, vmName: p.vm.name, committedAt: p.committedAt, disk: f.disk, path: f.path, type: f.type, size: f.size, mtime: f.mtime });
        }
      }
    }
    await this.record('FilesSearched', { pattern: cmd.pattern, regex: cmd.regex ?? false, ...(cmd.vmId ? { vmId: cmd.vmId } : {}), matches: matches.length, pointsSearched: searched }, actor, causationId, trace);
    return { matches, truncated, pointsSearched: searched, pointsWithoutIndex: without };
  }

  private async record<T extends 'RestorePointFilesBrowsed' | 'FilesRestored' | 'FilesSearched'>(type: T, data: Record<string, unknown>, actor: Actor, causationId: string, trace?: TraceContext): Promise<string> {
    const accessId = randomUUID();
    const streamId = `files-${accessId}`;
    await this.log.append(streamId, [newEvent(type, { accessId, ...data } as never, { site: this.o.site, actor, streamId, causationId, ...(trace ? { trace } : {}) })], { expectedRevision: 'no_stream' });
    return accessId;
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}

/** The byte range a puller asked for (`{offset, length}`), checked against the file's size. */
function byteRange(first: unknown, size: number): { offset: number; length: number } | undefined {
  if (first === undefined || first === null) return undefined;
  const r = first as { offset?: unknown; length?: unknown };
  const offset = Number(r.offset); const length = Number(r.length);
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 1 || offset + length > size) {
    throw new Error(`range ${JSON.stringify(first)} is not within the file's ${size} bytes`);
  }
  return { offset, length };
}

/** Several files' bytes one after the other, each read when the one before is done. */
function concatReads(s: BrowseSession, paths: readonly string[], onBytes: (n: number) => void): Readable {
  async function* all() {
    for (const p of paths) {
      const r = await s.read(p);
      // Stopped early, the loop destroys the file's stream and its command ends with a broken pipe.
      r.done.catch(() => undefined);
      for await (const chunk of r.stream) { onBytes((chunk as Buffer).length); yield chunk as Buffer; }
      await r.done;
    }
  }
  return ReadableFrom(all());
}

/** The stream's bytes passed through, each chunk counted; a destroyed end destroys the other. */
function counted(source: Readable, onBytes: (n: number) => void): Readable {
  const out = new Transform({ transform(chunk: Buffer, _enc, cb) { onBytes(chunk.length); cb(null, chunk); } });
  pipelineCb(source, out, () => undefined);
  return out;
}

function exportName(key: string): string {
  return `browse-${key.replace(/[^A-Za-z0-9_-]/g, '_')}`;
}

function guestPath(p: string): string {
  try {
    return checkGuestPath(p);
  } catch (e) {
    throw new RestoreRefused('invalid_command', (e as Error).message);
  }
}

function refusal(e: unknown): unknown {
  if (e instanceof GuestFilesError) {
    const code = e.code === 'not_found' ? 'not_found' : e.code === 'invalid_path' ? 'invalid_command' : 'forbidden';
    return new FilesRefused(code, e.code, e.message);
  }
  if (e instanceof InvalidPathError) return new RestoreRefused('invalid_command', e.message);
  if (e instanceof TargetExistsError) return new RestoreRefused('conflict', e.message);
  if (e instanceof PoolFullError) return new FilesRefused('unavailable', 'busy', e.message);
  return e;
}

/** A refusal with the reason file-level restore found (no_filesystem, encrypted, …). */
export class FilesRefused extends Refusal {
  constructor(override readonly code: 'not_found' | 'invalid_command' | 'forbidden' | 'unavailable', readonly reason: string, message: string) {
    super(code, message, { reason });
  }
}
