// `cairn repo …`: repository operations (init, stats, verify, gc, key rotate) run directly
// against a repository location (a directory or s3://bucket/prefix?endpoint=…).
// Secrets never come from the command line: the passphrase is read from
// CAIRN_REPO_PASSPHRASE or a file (--passphrase-file), or a key file is named.
// Key operations (init, key rotate, key export-recovery) are recorded with the operator as actor:
// in the repository's key journal always, and in the site's event log at once when a running
// Cairn is reachable (else the data mover publishes the journal entry when it next starts).
import { readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import type { Backend, FileKeyProvider, KeyCustodianRole, KeyJournalEntry, MaintenanceRole, VerifyReport } from '@cairn/repository';
import { CliError, EXIT } from '../cli-error.ts';
import { openSession, operator } from '../session.ts';

interface RepoOptions {
  repo?: string;
  passphraseFile?: string;
  keyFile?: string;
  recoveryKeyFile?: string;
  json?: boolean;
}

type Credentials = { passphrase: string } | { keyProvider: FileKeyProvider } | { recoveryKey: string };

// The repository library loads when a repo command runs, not at every start of the CLI.
let R!: typeof import('@cairn/repository');
async function loadRepository(): Promise<void> {
  R ??= await import('@cairn/repository');
}

const PASSPHRASE_ENV = 'CAIRN_REPO_PASSPHRASE';
const NEW_PASSPHRASE_ENV = 'CAIRN_REPO_NEW_PASSPHRASE';

// ---- input parsing

/** `24h`, `30m`, `90s`, `2d`, `500ms` or plain milliseconds. */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!m) throw new CliError(`cannot read duration "${text}"`, EXIT.usage, 'use e.g. 24h, 30m, 90s, 2d');
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? 'ms') as 'ms' | 's' | 'm' | 'h' | 'd'];
  return Math.round(Number(m[1]) * unit);
}

/** `262144`, `256K`, `1M` (binary units). */
export function parseByteSize(text: string): number {
  const m = /^(\d+)\s*([KMG]?)(?:i?B)?$/i.exec(text.trim());
  if (!m) throw new CliError(`cannot read size "${text}"`, EXIT.usage, 'use e.g. 262144, 256K or 1M');
  const unit = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2]!.toUpperCase() as '' | 'K' | 'M' | 'G'];
  return Number(m[1]) * unit;
}

export function parseFraction(text: string): number {
  const v = Number(text);
  if (!Number.isFinite(v) || v <= 0 || v > 1) throw new CliError(`--sample must be a fraction in (0, 1], got "${text}"`, EXIT.usage);
  return v;
}

async function readSecretFile(path: string, what: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new CliError(`cannot read ${what} file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, EXIT.usage);
  }
  const secret = text.replace(/\r?\n$/, '');
  if (!secret) throw new CliError(`${what} file ${path} is empty`, EXIT.usage);
  return secret;
}

async function credentials(o: RepoOptions): Promise<Credentials> {
  await loadRepository();
  if (o.recoveryKeyFile) return { recoveryKey: await readSecretFile(o.recoveryKeyFile, 'recovery key') };
  if (o.keyFile) return { keyProvider: new R.FileKeyProvider(o.keyFile) };
  if (o.passphraseFile) return { passphrase: await readSecretFile(o.passphraseFile, 'passphrase') };
  const fromEnv = process.env[PASSPHRASE_ENV];
  if (fromEnv) return { passphrase: fromEnv };
  // The repository of a `cairn up` data directory: the passphrase file it made beside it.
  const beside = o.repo && !/^[a-z][a-z0-9+]*:\/\//i.test(o.repo) ? join(dirname(resolve(o.repo)), 'secrets', 'repository.passphrase') : undefined;
  if (beside && (await stat(beside).then((x) => x.isFile(), () => false))) return { passphrase: await readSecretFile(beside, 'passphrase') };
  throw new CliError('no passphrase given', EXIT.usage, `set ${PASSPHRASE_ENV}, or pass --passphrase-file <file> or --key-file <file> (the repository of a \`cairn up\` data directory uses <data>/secrets/repository.passphrase by itself)`);
}

function backendFor(o: RepoOptions, create = false): Backend {
  const location = o.repo ?? process.env.CAIRN_REPO;
  if (!location) throw new CliError('no repository given', EXIT.usage, 'pass --repo <path|s3://bucket/prefix?endpoint=…> or set CAIRN_REPO');
  try {
    // Only init may create a missing directory: elsewhere a missing one means a wrong path
    // or an unmounted volume.
    return R.createBackendFromUrl(location, create ? { directory: { createRoot: true } } : {});
  } catch (e) {
    throw new CliError((e as Error).message, EXIT.usage);
  }
}

// ---- errors: every repository failure becomes a one-line message with a fitting exit code

function toCliError(e: unknown, location: string): unknown {
  if (e instanceof CliError) return e;
  if (e instanceof R.RepositoryDeletedError) return new CliError(e.message, EXIT.notFound);
  if (e instanceof R.RepositoryNotFoundError) return new CliError(`no repository at ${location}`, EXIT.notFound, `create one with: cairn repo init --repo ${location}`);
  if (e instanceof R.RepositoryExistsError) return new CliError(`a repository already exists at ${location}`, EXIT.conflict);
  if (e instanceof R.WrongKeyError) return new CliError(`wrong passphrase or key for the repository at ${location}: ${e.message}`, EXIT.failure);
  if (e instanceof R.UnsupportedFormatError) return new CliError(e.message, EXIT.failure, 'upgrade Cairn to open this repository');
  if (e instanceof R.RestorePointNotFoundError) return new CliError(e.message, EXIT.notFound);
  if (e instanceof R.RepositoryBusyError) return new CliError(e.message, EXIT.conflict, 'another gc or writer holds the repository; try again later');
  if (e instanceof R.CorruptObjectError) return new CliError(`repository at ${location} is damaged: ${e.message}`, EXIT.failure, 'run: cairn repo verify');
  if (e instanceof R.DamagedChunkError) return new CliError(e.message, EXIT.failure);
  if (e instanceof R.BackendError) return new CliError(`storage error at ${location}: ${e.message}`, e.transient ? EXIT.unavailable : EXIT.failure);
  return e;
}

/** Runs `fn` with the backend, closing it and mapping errors whatever happens. */
async function withBackend<T>(o: RepoOptions, fn: (backend: Backend) => Promise<T>, create = false): Promise<T> {
  await loadRepository();
  const backend = backendFor(o, create);
  try {
    return await fn(backend);
  } catch (e) {
    throw toCliError(e, backend.location);
  } finally {
    await backend.close?.();
  }
}

/** What the operator's repository commands do with it: maintain it and hold its keys (no backups, no restores). */
type OperatorRepository = MaintenanceRole & KeyCustodianRole;

async function withRepository<T>(o: RepoOptions, fn: (repo: OperatorRepository, backend: Backend) => Promise<T>): Promise<T> {
  const creds = await credentials(o);
  return withBackend(o, async (backend) => {
    const repo = 'recoveryKey' in creds ? await R.openRepositoryWithRecoveryKey(backend, creds.recoveryKey) : await R.openRepository(backend, creds);
    try {
      return await fn(repo, backend);
    } finally {
      await repo.close();
    }
  });
}

// ---- recording key operations in the event log

/** Where a key operation was recorded: always the key journal; the event log when reachable now. */
export interface KeyActRecord {
  readonly eventId: string;
  readonly type: string;
  readonly actor: string;
  readonly recorded: 'event-log' | 'key-journal';
  readonly site?: string;
  /** Why it is only in the key journal for now. */
  readonly pending?: string;
}

/**
 * Appends the event of a journal entry to the running site's log (same event id as the entry,
 * so the data mover's later catch-up adds nothing). Without a reachable Cairn, it stays in the
 * key journal: nothing is lost, the event comes when a data mover opens the repository.
 */
async function recordKeyAct(cmd: Command, entry: KeyJournalEntry): Promise<KeyActRecord> {
  const base = { eventId: entry.id, actor: `${entry.actor.kind}:${entry.actor.id}` };
  let type = entry.act as string;
  let session: Awaited<ReturnType<typeof openSession>> | undefined;
  try {
    session = await openSession(cmd);
    const s = session;
    type = R.keyJournalEvent(entry, s.site).type;
    const log = await s.eventLog();
    let problem = '';
    try {
      const appended = await R.publishKeyJournalEntries(log, s.site, [entry], { info: () => undefined, warn: (o) => { problem = String((o as { err?: unknown }).err ?? 'append failed'); } });
      if (!appended.includes(entry.id)) throw new Error(problem || 'the log did not take the event');
    } finally {
      await log.close().catch(() => undefined);
    }
    return { ...base, type, recorded: 'event-log', site: s.site };
  } catch (e) {
    return { ...base, type, recorded: 'key-journal', pending: (e as Error).message };
  } finally {
    await session?.close().catch(() => undefined);
  }
}

function recordText(r: KeyActRecord): string {
  return r.recorded === 'event-log'
    ? `recorded: ${r.type} ${r.eventId} by ${r.actor} in the event log of site ${r.site}`
    : `recorded: ${r.eventId} by ${r.actor} in the repository's key journal; not in an event log yet (${r.pending}). ` +
      'A data mover adds it to its site\'s log when it next opens the repository.';
}

// ---- output

function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]} (${n} B)`;
}

/** Indented `key: value` lines; byte counts are shown human-readable too. */
function formatValue(value: unknown, indent = ''): string {
  if (value === null || typeof value !== 'object') return String(value);
  if (Array.isArray(value)) {
    if (value.every((v) => v === null || typeof v !== 'object')) return value.join(', ') || '(none)';
    return value.map((v) => `\n${indent}- ${formatValue(v, `${indent}  `).trimStart()}`).join('');
  }
  return Object.entries(value)
    .map(([k, v]) => {
      const shown = typeof v === 'number' && /bytes$/i.test(k) ? formatBytes(v) : v instanceof Date ? v.toISOString() : formatValue(v, `${indent}  `);
      return `\n${indent}${k}: ${shown}`;
    })
    .join('');
}

function print(o: RepoOptions, value: unknown, text?: string): void {
  if (o.json) console.log(JSON.stringify(value, null, 2));
  else console.log(text ?? formatValue(value).trimStart());
}

// ---- commands

function opts(cmd: Command): RepoOptions {
  return cmd.optsWithGlobals<RepoOptions>();
}

export function registerRepoCommands(program: Command): void {
  const repo = program
    .command('repo')
    .description('repository operations (init, stats, verify, gc, key rotate)')
    .option('--repo <location>', 'repository: a directory path, file:///path or s3://bucket/prefix?endpoint=http://host:port (default $CAIRN_REPO)')
    .option('--passphrase-file <file>', `read the passphrase from a file (default: $${PASSPHRASE_ENV})`)
    .option('--key-file <file>', 'use a key file (32 random bytes as hex) instead of a passphrase')
    .option('--recovery-key-file <file>', 'open with a recovery key (cairn repo key export-recovery) when the passphrase is lost');

  repo
    .command('init')
    .description('create a new, empty repository')
    .option('--chunk-size <bytes>', 'chunk size, a power of two (e.g. 256K); default chosen by the repository')
    .action(async (_options: unknown, cmd: Command) => {
      const o = opts(cmd);
      const chunkSize = cmd.opts<{ chunkSize?: string }>().chunkSize;
      const creds = await credentials(o);
      if ('recoveryKey' in creds) throw new CliError('a recovery key cannot create a repository', EXIT.usage);
      await withBackend(o, async (backend) => {
        const created = await R.initRepository(backend, { ...creds, ...(chunkSize ? { chunkSize: parseByteSize(chunkSize) } : {}), journal: { actor: operator() } });
        try {
          const entry = (await created.keyJournal()).entries.find((e) => e.act === 'init');
          const event = entry ? await recordKeyAct(cmd, entry) : undefined;
          const summary = { location: backend.location, repositoryId: created.repositoryId, chunkSize: created.chunkSize, ...(event ? { event } : {}) };
          print(o, summary, `created repository at ${backend.location} (chunk size ${formatBytes(created.chunkSize)})${event ? `\n${recordText(event)}` : ''}`);
        } finally {
          await created.close();
        }
      }, true);
    });

  repo
    .command('stats')
    .description('restore points, chunks and stored bytes')
    .action(async (_options: unknown, cmd: Command) => {
      const o = opts(cmd);
      await withRepository(o, async (r) => {
        print(o, await r.stats());
      });
    });

  repo
    .command('verify')
    .description('re-read and check the chunks of restore points; exits non-zero when anything is damaged')
    .option('--restore-point <id...>', 'check only these restore points (default: all)')
    .option('--sample <fraction>', 'check a random fraction of the chunks, e.g. 0.1 (default: all)')
    .action(async (_options: unknown, cmd: Command) => {
      const o = opts(cmd);
      const local = cmd.opts<{ restorePoint?: string[]; sample?: string }>();
      const sample = local.sample !== undefined ? parseFraction(local.sample) : undefined;
      await withRepository(o, async (r, backend) => {
        const report: VerifyReport = await r.verify({
          ...(local.restorePoint ? { restorePoints: local.restorePoint } : {}),
          ...(sample !== undefined ? { sample } : {}),
        });
        const { damaged } = report;
        if (o.json) print(o, { location: backend.location, ...report });
        else console.log(verifyText(backend.location, report));
        // With --json the report above is the one JSON document on stdout; the exit code says it failed.
        if (damaged.length > 0 && o.json) process.exitCode = EXIT.failure;
        else if (damaged.length > 0) {
          throw new CliError(`verify found ${damaged.length} damaged object(s) in ${backend.location}`, EXIT.failure,
            'restore points that use them cannot be restored intact; see the report above');
        }
      });
    });

  repo
    .command('gc')
    .description('delete chunks no restore point uses and that are older than the grace period')
    .option('--grace <duration>', 'keep unreferenced objects younger than this (e.g. 24h, 30m)', '24h')
    .action(async (_options: unknown, cmd: Command) => {
      const o = opts(cmd);
      const graceMs = parseDuration(cmd.opts<{ grace: string }>().grace);
      await withRepository(o, async (r, backend) => {
        const result = await r.gc({ graceMs });
        print(o, { location: backend.location, graceMs, ...result });
      });
    });

  const key = repo.command('key').description('repository keys');
  registerRecoveryKeyCommand(key);
  key
    .command('rotate')
    .description(`re-wrap the repository keys under a new passphrase ($${NEW_PASSPHRASE_ENV} or --new-passphrase-file) or key file; chunks are not re-encrypted`)
    .option('--new-passphrase-file <file>', `read the new passphrase from a file (default: $${NEW_PASSPHRASE_ENV})`)
    .option('--new-key-file <file>', 'wrap the keys with this key file instead of a passphrase')
    .action(async (_options: unknown, cmd: Command) => {
      const o = opts(cmd);
      const local = cmd.opts<{ newPassphraseFile?: string; newKeyFile?: string }>();
      let next: Credentials;
      await loadRepository();
      if (local.newKeyFile) next = { keyProvider: new R.FileKeyProvider(local.newKeyFile) };
      else if (local.newPassphraseFile) next = { passphrase: await readSecretFile(local.newPassphraseFile, 'new passphrase') };
      else if (process.env[NEW_PASSPHRASE_ENV]) next = { passphrase: process.env[NEW_PASSPHRASE_ENV] };
      else throw new CliError('no new passphrase given', EXIT.usage, `set ${NEW_PASSPHRASE_ENV}, or pass --new-passphrase-file <file> or --new-key-file <file>`);
      await withRepository(o, async (r, backend) => {
        const { keyId, journalEntry } = await r.rotateKey(next, { actor: operator() });
        const event = await recordKeyAct(cmd, journalEntry);
        print(o, { location: backend.location, repositoryId: r.repositoryId, keyId, event },
          `re-wrapped the keys of ${backend.location}; the old passphrase or key no longer opens it\n${recordText(event)}`);
      });
    });
}

export function registerRecoveryKeyCommand(key: Command): void {
  key
    .command('export-recovery')
    .description('write the recovery key (opens the repository when the passphrase is lost; valid across rotations) to a new file, mode 0600')
    .requiredOption('--out <file>', 'file to create (refuses to overwrite); print it and keep it offline, then delete the file')
    .action(async (_options: unknown, cmd: Command) => {
      const o = opts(cmd);
      const out = cmd.opts<{ out: string }>().out;
      await withRepository(o, async (r, backend) => {
        try {
          await writeFile(out, r.exportRecoveryKey() + '\n', { mode: 0o600, flag: 'wx' });
        } catch (e) {
          throw new CliError(`cannot create ${out}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, EXIT.usage, 'name a file that does not exist yet');
        }
        // No recovery key leaves without a record: when the journal cannot take it, the file goes.
        let entry: KeyJournalEntry;
        try {
          entry = await r.recordRecoveryKeyExport({ file: resolve(out) }, { actor: operator() });
        } catch (e) {
          await unlink(out).catch(() => undefined);
          throw new CliError(`cannot record the export in the repository's key journal, so ${out} was removed again: ${(e as Error).message}`, EXIT.failure);
        }
        const event = await recordKeyAct(cmd, entry);
        const fingerprint = r.recoveryKeyFingerprint();
        print(o, { location: backend.location, repositoryId: r.repositoryId, file: out, fingerprint, event },
          `wrote the recovery key of ${backend.location} to ${out} (mode 0600, fingerprint ${fingerprint}). Whoever holds it can read every restore point: keep it offline and delete the file.\n${recordText(event)}`);
      });
    });
}

function verifyText(location: string, report: VerifyReport): string {
  const { damaged, ...rest } = report;
  const head = `verify ${location}: ${damaged.length === 0 ? 'OK, no damage found' : `${damaged.length} DAMAGED object(s)`}${formatValue(rest, '  ')}`;
  if (damaged.length === 0) return head;
  const lines = damaged.map((d) => {
    const uses = d.uses.length
      ? d.uses.map((u) => `    restore point ${u.restorePointId}, disk ${u.disk}, offsets ${u.offsets.join(', ')}`).join('\n')
      : '    used by no restore point';
    return `  ${d.kind} ${d.id}: ${d.damage} (${d.detail})\n    object ${d.key}\n${uses}`;
  });
  return `${head}\n\ndamaged:\n${lines.join('\n')}`;
}
