// The catalogue's SQLite database (node:sqlite): opens or creates the schema, applies the
// statements of projected events and moves the checkpoint in the same transaction, so each
// event changes a replica's read models exactly once even across crashes.
import { renameSync, rmSync } from 'node:fs';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import type { RecordedEvent } from '@cairn/contracts';
import { SCHEMA_DDL, SCHEMA_VERSION } from './catalogue.schema.ts';
import { totalsTriggersDdl } from './catalogue.totals.ts';
import { projectEvent, unreadableAuditStatement, type UnreadableRecord } from './catalogue.projection.ts';
import type { CatalogueBackend, CatalogueReader, CatalogueStore, Row } from './catalogue-store.port.ts';

export const CHECKPOINT_NAME = 'catalogue';

export class CatalogueDb {
  private readonly statements = new Map<string, StatementSync>();
  private closed = false;

  private constructor(readonly db: DatabaseSync, readonly path: string) {}

  /** Opens `path` (or `:memory:`); a file written by another schema version is emptied for a replay. */
  static open(path: string): CatalogueDb {
    const db = new DatabaseSync(path);
    db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = OFF; PRAGMA busy_timeout = 5000;');
    const store = new CatalogueDb(db, path);
    store.migrate();
    return store;
  }

  private migrate(): void {
    const hasMeta = this.db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'`).get();
    const version = hasMeta ? this.db.prepare(`SELECT value FROM meta WHERE key = 'schemaVersion'`).get()?.value : undefined;
    if (version !== undefined && version !== String(SCHEMA_VERSION)) {
      // Read models are disposable: an older layout is dropped and rebuilt from the log.
      const tables = this.db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`).all();
      for (const t of tables) this.db.exec(`DROP TABLE IF EXISTS "${String(t.name)}"`);
    }
    this.db.exec(SCHEMA_DDL);
    this.db.exec(totalsTriggersDdl('sqlite'));
    this.db.prepare(`INSERT INTO meta (key, value) VALUES ('schemaVersion', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`)
      .run(String(SCHEMA_VERSION));
  }

  /** Last log position applied (0 when nothing was). */
  position(): bigint {
    const row = this.prepared(`SELECT position FROM checkpoint WHERE name = ?`).get(CHECKPOINT_NAME);
    return row ? BigInt(row.position as number) : 0n;
  }

  /**
   * Applies a batch of events in log order, skipping any at or before the checkpoint, and
   * stores the new checkpoint in the same transaction. Returns how many were applied.
   * A failing statement rolls the whole batch back and rethrows with the event named.
   */
  apply(events: readonly RecordedEvent[]): number {
    let position = this.position();
    let applied = 0;
    this.db.exec('BEGIN IMMEDIATE');
    try {
      for (const recorded of events) {
        if (recorded.position <= position) continue;
        try {
          for (const s of projectEvent(recorded)) this.prepared(s.sql).run(...s.params);
        } catch (e) {
          throw new Error(`projecting ${recorded.event.type} ${recorded.event.id} at position ${recorded.position} failed: ${(e as Error).message}`, { cause: e });
        }
        position = recorded.position;
        applied++;
      }
      if (applied > 0) {
        this.prepared(`INSERT INTO checkpoint (name, position) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET position = excluded.position`)
          .run(CHECKPOINT_NAME, position);
      }
      this.db.exec('COMMIT');
    } catch (e) {
      this.db.exec('ROLLBACK');
      throw e;
    }
    return applied;
  }

  /**
   * Records a log entry this build cannot read in the audit timeline (so nothing vanishes
   * silently) and moves the checkpoint past it: the log delivers in order, so all before it
   * were applied.
   */
  applyUnreadable(record: UnreadableRecord): boolean {
    if (record.position <= this.position()) return false;
    this.db.exec('BEGIN IMMEDIATE');
    try {
      const s = unreadableAuditStatement(record);
      this.prepared(s.sql).run(...s.params);
      this.prepared(`INSERT INTO checkpoint (name, position) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET position = excluded.position`)
        .run(CHECKPOINT_NAME, record.position);
      this.db.exec('COMMIT');
    } catch (e) {
      this.db.exec('ROLLBACK');
      throw e;
    }
    return true;
  }

  /** Forgets the checkpoint (the next run replays from the start). */
  resetCheckpoint(): void {
    this.prepared(`DELETE FROM checkpoint WHERE name = ?`).run(CHECKPOINT_NAME);
  }

  /** A cached prepared statement (the projection reuses a small, fixed set of SQL texts). */
  prepared(text: string): StatementSync {
    let s = this.statements.get(text);
    if (!s) {
      s = this.db.prepare(text);
      this.statements.set(text, s);
    }
    return s;
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.statements.clear();
    this.db.close();
  }
}

/** The SQLite database behind the store port; reads and batches take turns on its one connection. */
export class SqliteCatalogueStore implements CatalogueStore {
  readonly dialect = 'sqlite' as const;
  private turn: Promise<unknown> = Promise.resolve();
  private readonly reader: CatalogueReader;

  constructor(readonly db: CatalogueDb) {
    this.reader = {
      all: async (sql, ...params) => db.prepared(sql).all(...params) as Row[],
      one: async (sql, ...params) => db.prepared(sql).get(...params) as Row | undefined,
    };
  }

  static open(path: string): SqliteCatalogueStore {
    return new SqliteCatalogueStore(CatalogueDb.open(path));
  }

  get describe(): string {
    return this.db.path;
  }

  get isOpen(): boolean {
    return this.db.isOpen;
  }

  async position(): Promise<bigint> {
    return this.db.position();
  }

  apply(events: readonly RecordedEvent[]): Promise<number> {
    return this.inTurn(async () => this.db.apply(events));
  }

  applyUnreadable(record: UnreadableRecord): Promise<boolean> {
    return this.inTurn(async () => this.db.applyUnreadable(record));
  }

  read<T>(fn: (reader: CatalogueReader) => Promise<T>): Promise<T> {
    return this.inTurn(() => fn(this.reader));
  }

  async close(): Promise<void> {
    await this.turn.catch(() => undefined);
    this.db.close();
  }

  private inTurn<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.turn.then(fn, fn);
    this.turn = run.catch(() => undefined);
    return run;
  }
}

/** One replica's SQLite file (or `:memory:`); a rebuild fills `<file>.rebuild` and renames it over. */
export class SqliteCatalogueBackend implements CatalogueBackend {
  readonly dialect = 'sqlite' as const;
  constructor(readonly path: string) {}

  async openLive(): Promise<CatalogueStore> {
    return SqliteCatalogueStore.open(this.path);
  }

  async openFresh(): Promise<CatalogueStore> {
    if (this.path === ':memory:') return SqliteCatalogueStore.open(':memory:');
    removeDbFiles(`${this.path}.rebuild`);
    return SqliteCatalogueStore.open(`${this.path}.rebuild`);
  }

  async swap(live: CatalogueStore, fresh: CatalogueStore): Promise<CatalogueStore> {
    if (this.path === ':memory:') {
      await live.close();
      return fresh;
    }
    await fresh.close();
    await live.close();
    removeDbFiles(this.path);
    renameSync(`${this.path}.rebuild`, this.path);
    return SqliteCatalogueStore.open(this.path);
  }

  async discard(fresh: CatalogueStore): Promise<void> {
    await fresh.close();
    if (this.path !== ':memory:') removeDbFiles(`${this.path}.rebuild`);
  }
}

function removeDbFiles(path: string): void {
  for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(`${path}${suffix}`, { force: true });
}
