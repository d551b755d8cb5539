// The one narrow port between the catalogue and the database holding its read models: the
// projection's statements go in (with the checkpoint, in one transaction), the read model's
// queries come out. Two adapters: SQLite (node:sqlite, the default) and PostgreSQL (`pg`).
// SQL is written once, in SQLite's spelling with `?` placeholders; the PostgreSQL adapter
// translates the few spots that differ (see catalogue-pg.adapter.ts).
import type { RecordedEvent } from '@cairn/contracts';
import type { UnreadableRecord } from './catalogue.projection.ts';

/** A row as a driver returns it (PostgreSQL hands BIGINT and sums back as strings). */
export type Row = Record<string, unknown>;
export type SqlParam = string | number | bigint | null;

/** Reads inside one consistent snapshot of the read models. */
export interface CatalogueReader {
  all(sql: string, ...params: SqlParam[]): Promise<Row[]>;
  one(sql: string, ...params: SqlParam[]): Promise<Row | undefined>;
}

export type CatalogueDialect = 'sqlite' | 'postgres';

export interface CatalogueStore {
  readonly dialect: CatalogueDialect;
  /** Where it lives, for logs (a file path, or a database and schema; never a password). */
  readonly describe: string;
  readonly isOpen: boolean;
  /** Last log position applied (0 when nothing was). */
  position(): Promise<bigint>;
  /**
   * Applies a batch in log order, skipping events at or before the checkpoint, and moves the
   * checkpoint in the same transaction; returns how many were applied. A failing statement
   * rolls the batch back and rethrows with the event named.
   */
  apply(events: readonly RecordedEvent[]): Promise<number>;
  /** Records an unreadable log entry in the audit timeline and moves the checkpoint past it. */
  applyUnreadable(record: UnreadableRecord): Promise<boolean>;
  /** Runs `fn` against one snapshot: no projected batch lands between its statements. */
  read<T>(fn: (reader: CatalogueReader) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/**
 * Where a projector keeps its read models: the live store, a fresh one to rebuild into beside
 * it, and the swap that makes the fresh one live (nobody ever reads a half-built catalogue).
 */
export interface CatalogueBackend {
  readonly dialect: CatalogueDialect;
  openLive(): Promise<CatalogueStore>;
  openFresh(): Promise<CatalogueStore>;
  /** Closes `live` and `fresh` and returns the rebuilt store, now live. */
  swap(live: CatalogueStore, fresh: CatalogueStore): Promise<CatalogueStore>;
  /** Drops a fresh store whose rebuild failed. */
  discard(fresh: CatalogueStore): Promise<void>;
  /**
   * Several replicas share one PostgreSQL: only the holder of the projector lease writes.
   * Resolves when this replica holds it; `lost` fires if it is lost later. SQLite: at once.
   */
  acquireLease?(signal: AbortSignal): Promise<{ lost: Promise<void>; release(): Promise<void> }>;
  close?(): Promise<void>;
}
