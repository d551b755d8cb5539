// File-level restore on the data mover: a restore point's disk is served read-only over NBD
// (through the restore exports) to a warm libguestfs appliance, one per (restore point, disk)
// being browsed, closed after an idle time; listings and copies go through it. Every act is
// an event naming who, which restore point and which paths (docs/files.md).
import { randomUUID } from 'node:crypto';
import { lstat, mkdir, open, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Refusal, newEvent, type Actor, type CommandPayloadMap, type TraceContext } from '@cairn/contracts';
import type { EventLog } from '@cairn/eventlog';
import {
  BrowseSession, GuestFilesError, InvalidPathError, PoolFullError, SessionPool, TargetExistsError, buildFileIndex, checkGuestPath, copyOut, fileMatcher, probeDisk,
  type ApplianceOptions, type FileIndex,
} from '@cairn/guest-files';
import { FileIndexStore, splitPoints, type IndexStoreRole } from './file-index.store.ts';
import type { DiskReader, RestorePointReader } from '@cairn/repository';
import { RestoreRefused, type MoverLogger } from './data-mover.service.ts';

/** The part of the restore exports a browsing session needs: serve a disk, stop serving it. */
export interface BrowseExports {
  add(exportName: string, disk: DiskReader): Promise<{ socket: string; exportName: string }>;
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
}

/** What browsing does with a repository: read restore points, keep their file indexes. */
export type BrowsedRepository = RestorePointReader & IndexStoreRole;

/** Finds the repository holding a restore point (the site's own, or a replica kept here). */
export type LocateRestorePoint = (restorePointId: string) => Promise<{ repository: BrowsedRepository; replica: boolean } | undefined>;

const MAX_ENTRIES = 2000;

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
  ) {
    this.indexing = o.index ?? process.env['CAIRN_FILE_INDEX'] !== '0';
    this.pool = new SessionPool({ idleMs: o.idleMs ?? 600_000, maxSessions: o.maxSessions ?? 4 }, (key, why) => {
      void this.exports.remove(exportName(key));
      this.logger.info({ session: key, why }, 'file browsing session closed');
    });
  }

  private async disk(restorePointId: string, disk: string | undefined): Promise<{ repository: BrowsedRepository; disk: string }> {
    const found = await this.locate(restorePointId);
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
        const nbd = await this.exports.add(name, reader);
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
