// An open repository: the public face of the data path. `initRepository` creates one on a
// backend, `openRepository` opens it with a passphrase or key provider; the methods below
// write, read, restore, verify and collect garbage.
import { type Backend, NotFoundError } from './backend/backend.ts';
import { DiskNotFoundError, InvalidExtentError, RepositoryExistsError, RepositoryNotFoundError, WrongKeyError } from './errors.ts';
import { encodeConfig, FORMAT_NAME, FORMAT_VERSION, parseConfig, signConfig, verifyConfigMac, type RepositoryConfig } from './format/config.ts';
import { randomId } from './format/ids.ts';
import { CHUNKS_PREFIX, CONFIG_KEY, INDEX_PREFIX, KEYS_PREFIX, keyObjectKey, PENDING_PREFIX, restorePointKey } from './format/layout.ts';
import type { Manifest } from './format/manifest.ts';
import {
  encodeKeyObject, generateMasterKeys, parseKeyObject, unwrapMasterKeys, wrapMasterKeys,
  type Credentials, type MasterKeys,
} from './keys/master-keys.ts';
import { asRestorePointLocked, lockRestorePoint, restorePointLockedUntil, type LockReport } from './maintenance/immutability.ts';
import { encodeRecoveryKey, unlockWithRecoveryKey } from './keys/recovery-key.ts';
import {
  newJournalEntry, readKeyJournal, recoveryKeyFingerprint, writeJournalEntry,
  type InvalidJournalObject, type KeyActContext, type KeyJournalEntry, type KeyWrapping, type OpenedWith,
} from './keys/key-journal.ts';
import { collectGarbage, type GcOptions, type GcReport } from './maintenance/gc.ts';
import { assertNotDeleted, destroyRepository, latestLiveLock, type DeletionInfo, type DestroyReport } from './maintenance/destroy.ts';
import { verify, type VerifyOptions, type VerifyReport } from './maintenance/verify.ts';
import { IndexedDisk, type DiskReader } from './read/disk-reader.ts';
import { restoreDisk, type RestoreOptions, type RestoreResult } from './read/restore-disk.ts';
import { RepositoryCore, type RepositoryTuning } from './repository-core.ts';
import { KnownChunks } from './write/known-chunks.ts';
import { writeRestorePoint, type WriteRestorePointInput, type WriteRestorePointResult } from './write/restore-point-writer.ts';
import { ReplicationSource } from './replicate/replication-source.ts';
import type { KeyCustodianRole, MaintenanceRole, ReplicationSourceRole, RestorePointReader, RestorePointWriter, RetentionRole } from './roles.ts';

/** 256 KiB: see docs/repository.md, "Chunk size", for the measurements behind it. */
export const DEFAULT_CHUNK_SIZE = 256 * 1024;
/** 1024 ids (32 KiB) per index page: a page covers 256 MiB of disk at the default chunk size. */
export const DEFAULT_PAGE_ENTRIES = 1024;
export const DEFAULT_COMPRESSION_LEVEL = 1;

export type InitOptions = Credentials & {
  readonly chunkSize?: number;
  readonly pageEntries?: number;
  readonly compressionLevel?: number;
  readonly tuning?: RepositoryTuning;
  /** Who creates it, for the key journal (default: the OS user on this host). */
  readonly journal?: KeyActContext;
};

export type OpenOptions = Credentials & { readonly tuning?: RepositoryTuning };

export interface RestorePointSummary {
  readonly id: string;
  readonly vm: { readonly id: string; readonly name: string };
  readonly parentId?: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly createdAt: string;
  readonly committedAt: string;
  readonly disks: ReadonlyArray<{ readonly name: string; readonly sizeBytes: number }>;
}

export interface RepositoryStats {
  readonly location: string;
  readonly repositoryId: string;
  readonly chunkSize: number;
  readonly restorePoints: number;
  readonly chunks: number;
  readonly chunkBytes: number;
  readonly indexPages: number;
  readonly indexBytes: number;
  readonly keys: number;
  readonly pendingWriters: number;
}

function credentialsOf(o: Credentials): Credentials {
  if ('keyProvider' in o && o.keyProvider) return { keyProvider: o.keyProvider };
  if ('passphrase' in o && typeof o.passphrase === 'string') return o.kdf ? { passphrase: o.passphrase, kdf: o.kdf } : { passphrase: o.passphrase };
  throw new WrongKeyError('give a passphrase or a keyProvider');
}

function wrappingOf(c: Credentials): { wrapping: KeyWrapping; keyProvider?: string } {
  return 'keyProvider' in c ? { wrapping: 'key-provider', keyProvider: c.keyProvider.id } : { wrapping: 'passphrase' };
}

const KEY_ID = /^[0-9a-f]{8,64}$/;

async function readConfig(backend: Backend): Promise<RepositoryConfig> {
  try {
    return parseConfig(await backend.get(CONFIG_KEY), backend.location);
  } catch (e) {
    if (e instanceof NotFoundError) {
      await assertNotDeleted(backend);
      throw new RepositoryNotFoundError(`no Cairn repository at ${backend.location} (no config object)`);
    }
    throw e;
  }
}

/** Creates a repository: key object first, `config` last (a repository exists once it has a config). */
export async function initRepository(backend: Backend, options: InitOptions): Promise<Repository> {
  const credentials = credentialsOf(options);
  if (await backend.exists(CONFIG_KEY)) throw new RepositoryExistsError(`${backend.location} already holds a repository`);
  await assertNotDeleted(backend);
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  if (!Number.isInteger(chunkSize) || chunkSize < 4096 || chunkSize > 64 * 1024 * 1024 || (chunkSize & (chunkSize - 1)) !== 0) {
    throw new InvalidExtentError(`chunk size must be a power of two between 4 KiB and 64 MiB, got ${chunkSize}`);
  }
  const keys = generateMasterKeys();
  const repositoryId = randomId(16);
  const config = signConfig({
    format: FORMAT_NAME,
    version: FORMAT_VERSION,
    repositoryId,
    chunkSize,
    pageEntries: options.pageEntries ?? DEFAULT_PAGE_ENTRIES,
    compression: { algorithm: 'zstd', level: options.compressionLevel ?? DEFAULT_COMPRESSION_LEVEL },
    encryption: 'aes-256-gcm',
    idHash: 'hmac-sha256',
    createdAt: new Date().toISOString(),
  }, keys.idKey);
  parseConfig(encodeConfig(config), backend.location); // our own output must pass our own checks
  const keyId = randomId(8);
  await backend.put(keyObjectKey(keyId), encodeKeyObject(await wrapMasterKeys(keys, credentials, repositoryId, keyId)));
  // The journal entry before the config: a repository never exists without its record.
  const entry = newJournalEntry(repositoryId, { act: 'init', keyId, ...wrappingOf(credentials), chunkSize }, options.journal);
  const entryKey = await writeJournalEntry(backend, keys.idKey, entry);
  if (!(await backend.put(CONFIG_KEY, encodeConfig(config), { ifNotExists: true }))) {
    await backend.delete(entryKey).catch(() => undefined);
    throw new RepositoryExistsError(`${backend.location} already holds a repository`);
  }
  return new Repository(new RepositoryCore(backend, config, keys, options.tuning), 'keyProvider' in credentials ? 'key-provider' : 'passphrase');
}

/** Opens a repository: checks the format version, unwraps a key, verifies the config MAC. */
export async function openRepository(backend: Backend, options: OpenOptions): Promise<Repository> {
  const credentials = credentialsOf(options);
  const config = await readConfig(backend);
  let tried = 0;
  let keys: MasterKeys | undefined;
  for await (const o of backend.list(KEYS_PREFIX)) {
    tried++;
    const obj = parseKeyObject(o.key, await backend.get(o.key));
    keys = await unwrapMasterKeys(obj, credentials, config.repositoryId);
    if (keys) break;
  }
  if (!keys) {
    const what = 'keyProvider' in credentials ? `key provider "${credentials.keyProvider.id}"` : 'passphrase';
    throw new WrongKeyError(`wrong ${what}: it unwraps none of the ${tried} key(s) of the repository at ${backend.location}`);
  }
  verifyConfigMac(config, keys.idKey);
  return new Repository(new RepositoryCore(backend, config, keys, options.tuning), 'keyProvider' in credentials ? 'key-provider' : 'passphrase');
}

/**
 * Opens a repository with a recovery key (`Repository.exportRecoveryKey`), when the passphrase
 * or key provider is lost. Follow with `rotateKey` to set new credentials.
 */
export async function openRepositoryWithRecoveryKey(backend: Backend, recoveryKey: string, options: { tuning?: RepositoryTuning } = {}): Promise<Repository> {
  const { config, keys } = await unlockWithRecoveryKey(backend, recoveryKey);
  return new Repository(new RepositoryCore(backend, config, keys, options.tuning), 'recovery-key');
}

/** Every role at once: the composition roots open one and hand each consumer the role it declares (roles.ts). */
/** Manifest summaries a Repository keeps (about 300 bytes each). */
const SUMMARY_CACHE = 100_000;

export class Repository implements RestorePointWriter, RestorePointReader, RetentionRole, ReplicationSourceRole, MaintenanceRole, KeyCustodianRole {
  private readonly known: KnownChunks;
  /** Summaries of manifests read (immutable once written), oldest dropped first past SUMMARY_CACHE. */
  private readonly summaries = new Map<string, RestorePointSummary>();

  /** `openedWith`: how the keys were unwrapped (the key journal records it with each key operation). */
  constructor(private readonly core: RepositoryCore, readonly openedWith: OpenedWith = 'passphrase') {
    this.known = new KnownChunks(core.backend);
  }

  get chunkSize(): number { return this.core.chunkSize; }
  get pageEntries(): number { return this.core.pageEntries; }
  get repositoryId(): string { return this.core.config.repositoryId; }
  get location(): string { return this.core.backend.location; }
  get config(): RepositoryConfig { return this.core.config; }

  /** The source side of replication on this (open) repository: sealed objects, sent verbatim. */
  replicationSource(): ReplicationSource { return new ReplicationSource(this.core); }

  /** Writes a restore point (manifest last); see `DiskInput` for the extents contract. */
  writeRestorePoint(input: WriteRestorePointInput): Promise<WriteRestorePointResult> {
    return writeRestorePoint(this.core, this.known, input);
  }

  async listRestorePoints(): Promise<RestorePointSummary[]> {
    const out: RestorePointSummary[] = [];
    for (const id of await this.core.listRestorePointIds()) {
      // A manifest is written once and never replaced: its summary is read once per process
      // (a data mover asked again on every redelivered transfer read every manifest each time).
      let summary = this.summaries.get(id);
      if (!summary) {
        const m = await this.core.readManifest(id);
        summary = {
          id: m.id, vm: { id: m.vm.id, name: m.vm.name },
          ...(m.parentId ? { parentId: m.parentId } : {}),
          ...(m.labels ? { labels: m.labels } : {}),
          createdAt: m.createdAt, committedAt: m.committedAt,
          disks: m.disks.map((d) => ({ name: d.name, sizeBytes: d.sizeBytes })),
        };
        if (this.summaries.size >= SUMMARY_CACHE) this.summaries.delete(this.summaries.keys().next().value!);
        this.summaries.set(id, summary);
      }
      out.push(summary);
    }
    return out;
  }

  getManifest(id: string): Promise<Manifest> {
    return this.core.readManifest(id);
  }

  async openDisk(restorePointId: string, diskName: string): Promise<DiskReader> {
    return this.indexedDisk(restorePointId, diskName);
  }

  private async indexedDisk(restorePointId: string, diskName: string): Promise<IndexedDisk> {
    const m = await this.core.readManifest(restorePointId);
    const disk = m.disks.find((d) => d.name === diskName);
    if (!disk) throw new DiskNotFoundError(restorePointId, diskName, m.disks.map((d) => d.name));
    return new IndexedDisk(this.core, restorePointId, disk);
  }

  async restoreDisk(restorePointId: string, diskName: string, targetPath: string, options: RestoreOptions = {}): Promise<RestoreResult> {
    return restoreDisk(this.core, await this.indexedDisk(restorePointId, diskName), targetPath, options);
  }

  /** Removes the manifest; its chunks go at the next garbage collection.
   *  A locked restore point is refused by the backend: `RestorePointLockedError`. */
  async deleteRestorePoint(id: string): Promise<void> {
    await this.core.readManifest(id).catch((e: unknown) => {
      if ((e as Error).name === 'RestorePointNotFoundError') throw e;
      // A damaged manifest can still be deleted.
    });
    await this.core.backend.delete(restorePointKey(id)).catch((e: unknown) => { throw asRestorePointLocked(id, e); });
  }

  /** Locks a restore point and everything it references until `retainUntil` (extend only). */
  lockRestorePoint(id: string, retainUntil: Date): Promise<LockReport> {
    return lockRestorePoint(this.core, id, retainUntil);
  }

  /** When the restore point's lock ends; undefined when it is not locked (at `at`, default now). */
  restorePointLockedUntil(id: string, at = new Date()): Promise<Date | undefined> {
    return restorePointLockedUntil(this.core, id, at.getTime());
  }

  /** The end of the latest live lock of any object, or undefined when nothing is locked now. */
  async latestLock(at = new Date()): Promise<Date | undefined> {
    const l = await latestLiveLock(this.core, at.getTime());
    return l ? new Date(l.until) : undefined;
  }

  /**
   * Deletes everything in the repository — restore points, index, chunks, key journal, keys,
   * config — unless a lock is live (`RepositoryLockedError` naming the latest lock's end). The
   * caller checks the four-eyes approval; the object must not be used afterwards. Leaves a
   * `deleted` marker with `info` (who asked and approved), so later opens say what happened.
   */
  destroy(info: DeletionInfo = {}): Promise<DestroyReport> {
    return destroyRepository(this.core, info);
  }

  verify(options: VerifyOptions = {}): Promise<VerifyReport> {
    return verify(this.core, options);
  }

  async gc(options: GcOptions): Promise<GcReport> {
    const report = await collectGarbage(this.core, options);
    if (report.chunksDeleted > 0) this.known.invalidate();
    return report;
  }

  async stats(): Promise<RepositoryStats> {
    const count = async (prefix: string) => {
      let n = 0; let bytes = 0;
      for await (const o of this.core.backend.list(prefix)) { n++; bytes += o.size; }
      return { n, bytes };
    };
    const [chunks, pages, keys, pending] = await Promise.all([count(CHUNKS_PREFIX), count(INDEX_PREFIX), count(KEYS_PREFIX), count(PENDING_PREFIX)]);
    return {
      location: this.location,
      repositoryId: this.repositoryId,
      chunkSize: this.chunkSize,
      restorePoints: (await this.core.listRestorePointIds()).length,
      chunks: chunks.n,
      chunkBytes: chunks.bytes,
      indexPages: pages.n,
      indexBytes: pages.bytes,
      keys: keys.n,
      pendingWriters: pending.n,
    };
  }

  /**
   * Re-wraps the master keys under new credentials and removes every other key object.
   * Chunks are not touched: the data key does not change. The act goes into the key journal
   * (with `context`'s actor) before any old key is removed; when it cannot, the new key object
   * is removed again and nothing changed.
   */
  async rotateKey(credentials: Credentials, context: KeyActContext = {}): Promise<{ keyId: string; journalEntry: KeyJournalEntry }> {
    const c = credentialsOf(credentials);
    const keyId = randomId(8);
    const obj = await wrapMasterKeys(this.core.keys, c, this.repositoryId, keyId);
    await this.core.backend.put(keyObjectKey(keyId), encodeKeyObject(obj), { ifNotExists: true });
    const check = await unwrapMasterKeys(parseKeyObject(keyObjectKey(keyId), await this.core.backend.get(keyObjectKey(keyId))), c, this.repositoryId);
    if (!check || !check.dataKey.equals(this.core.keys.dataKey)) throw new WrongKeyError('the new key does not unwrap; old keys kept');
    const old: string[] = [];
    for await (const o of this.core.backend.list(KEYS_PREFIX)) if (o.key !== keyObjectKey(keyId)) old.push(o.key);
    const previousKeyIds = old.map((k) => k.slice(KEYS_PREFIX.length)).filter((id) => KEY_ID.test(id));
    const journalEntry = newJournalEntry(this.repositoryId, { act: 'rotate', keyId, previousKeyIds, ...wrappingOf(c), openedWith: this.openedWith }, context);
    try {
      await writeJournalEntry(this.core.backend, this.core.keys.idKey, journalEntry);
    } catch (e) {
      await this.core.backend.delete(keyObjectKey(keyId)).catch(() => undefined);
      throw e;
    }
    for (const k of old) await this.core.backend.delete(k);
    return { keyId, journalEntry };
  }

  /**
   * The recovery key: the master keys as text, valid across key rotations. Opens the
   * repository with `openRepositoryWithRecoveryKey` when the passphrase is lost; whoever
   * holds it can read everything, so it belongs offline (printed, in a safe). Whoever hands it
   * out records that with `recordRecoveryKeyExport` (the CLI does, or removes the file again).
   */
  exportRecoveryKey(): string {
    return encodeRecoveryKey(this.repositoryId, this.core.keys);
  }

  /** Keyed fingerprint of the recovery key (16 hex digits), safe to print and to log. */
  recoveryKeyFingerprint(): string {
    return recoveryKeyFingerprint(this.core.keys);
  }

  /** Records in the key journal that the recovery key was exported (to `file`, when given). */
  async recordRecoveryKeyExport(details: { file?: string } = {}, context: KeyActContext = {}): Promise<KeyJournalEntry> {
    const entry = newJournalEntry(this.repositoryId, {
      act: 'export-recovery', fingerprint: this.recoveryKeyFingerprint(), openedWith: this.openedWith,
      ...(details.file ? { file: details.file.slice(0, 4096) } : {}),
    }, context);
    await writeJournalEntry(this.core.backend, this.core.keys.idKey, entry);
    return entry;
  }

  /** The key journal: every key operation in time order, and objects there that fail their check. */
  keyJournal(): Promise<{ entries: KeyJournalEntry[]; invalid: InvalidJournalObject[] }> {
    return readKeyJournal(this.core.backend, this.core.keys.idKey, this.repositoryId);
  }

  /** Stops the worker threads. The repository object must not be used afterwards. */
  close(): Promise<void> {
    this.known.close();
    return this.core.close();
  }
}
