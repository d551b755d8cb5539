// The catalogue's read models in PostgreSQL (node-postgres, pure JS): one schema per site
// (`cairn_catalogue_<site>`), the same tables and projection statements as SQLite, translated
// by a small dialect layer. Each batch's statements and the checkpoint commit together; the
// checkpoint row is locked (FOR UPDATE) first, so even two writers could never apply an event
// twice. Several replicas share the database: the holder of a session advisory lock projects,
// every replica answers queries, and a standby takes the lock when the holder's session ends.
import pg from 'pg';
import type { RecordedEvent } from '@cairn/contracts';
import { SCHEMA_DDL, SCHEMA_VERSION } from './catalogue.schema.ts';
import { totalsTriggersDdl } from './catalogue.totals.ts';
import { projectEvent, unreadableAuditStatement, type UnreadableRecord } from './catalogue.projection.ts';
import type { CatalogueBackend, CatalogueReader, CatalogueStore, Row, SqlParam } from './catalogue-store.port.ts';

const CHECKPOINT_NAME = 'catalogue';
const IDENT = /^[a-z_][a-z0-9_]{0,50}$/;

/** The schema a site's catalogue lives in (a site id is lower case letters, digits and dashes). */
export function catalogueSchemaName(site: string): string {
  const name = `cairn_catalogue_${site.replace(/[^a-z0-9]/g, '_')}`;
  if (!IDENT.test(name)) throw new TypeError(`site ${JSON.stringify(site)} does not make a PostgreSQL schema name`);
  return name;
}

/** SCHEMA_DDL in PostgreSQL: 64-bit integers, byte-order text (as SQLite compares), no STRICT. */
export function postgresDdl(): string {
  return SCHEMA_DDL
    .replace(/\) STRICT;/g, ');')
    .replace(/\bINTEGER\b/g, 'BIGINT')
    .replace(/\bTEXT\b/g, 'TEXT COLLATE "C"');
}

const translated = new Map<string, string>();
const rewritten = new Map<string, string>();

/** The function spellings of PostgreSQL, placeholders left as `?`. */
function dialect(sql: string): string {
  let out = rewritten.get(sql);
  if (out === undefined) {
    out = sql
      .replace(/json_each\(\?\)/g, 'json_array_elements_text(?::json) AS value')
      .replace(/unixepoch\(([^,()]+), 'subsec'\)/g, '($1)::timestamptz');
    rewritten.set(sql, out);
  }
  return out;
}

/**
 * A statement with its values written in as literals (quoted, so PostgreSQL types them from
 * their use, as it does untyped parameters): a batch's statements then go in one round trip.
 */
export function inlined(sql: string, params: readonly SqlParam[]): string {
  const text = dialect(sql);
  let n = 0;
  let quoted = false;
  let out = '';
  for (const ch of text) {
    if (ch === "'") quoted = !quoted;
    if (ch === '?' && !quoted) {
      const v = params[n++];
      out += v === null || v === undefined ? 'NULL' : literal(String(v));
    } else out += ch;
  }
  if (n !== params.length) throw new Error(`statement has ${n} placeholders for ${params.length} values`);
  return out;
}

/** A string literal: quotes doubled; with backslashes, the E'' form with them doubled too. */
function literal(v: string): string {
  if (v.includes('\0')) throw new Error('a NUL character cannot be stored in PostgreSQL text');
  const q = v.replace(/'/g, "''");
  return v.includes('\\') ? `E'${q.replace(/\\/g, '\\\\')}'` : `'${q}'`;
}

/**
 * One statement in PostgreSQL's spelling: `?` placeholders numbered, `json_each(?)` as
 * `json_array_elements_text`, `unixepoch(x, 'subsec')` as a timestamptz. Cached per text.
 */
export function toPostgres(sql: string): string {
  let out = translated.get(sql);
  if (out !== undefined) return out;
  let n = 0;
  let quoted = false;
  out = '';
  for (const ch of dialect(sql)) {
    if (ch === "'") quoted = !quoted;
    out += ch === '?' && !quoted ? `$${++n}` : ch;
  }
  translated.set(sql, out);
  return out;
}

const bind = (params: readonly SqlParam[]): unknown[] => params.map((p) => (typeof p === 'bigint' ? p.toString() : p));

export interface PostgresCatalogueOptions {
  /** postgres://user@host:port/database */
  readonly url: string;
  readonly site: string;
  /** Connections per store (default 4). */
  readonly poolSize?: number;
}

export class PostgresCatalogueStore implements CatalogueStore {
  readonly dialect = 'postgres' as const;
  private closed = false;

  private constructor(private readonly pool: pg.Pool, readonly schema: string, readonly describe: string) {}

  /** Connects, creates the schema if missing and empties it when it holds another layout version. */
  static async open(url: string, schema: string, poolSize = 4): Promise<PostgresCatalogueStore> {
    if (!IDENT.test(schema)) throw new TypeError(`bad schema name ${JSON.stringify(schema)}`);
    const pool = new pg.Pool({ connectionString: url, max: poolSize, options: `-c search_path=${schema}` });
    pool.on('error', () => undefined); // an idle connection that dies is replaced on the next checkout
    const where = new URL(url);
    const store = new PostgresCatalogueStore(pool, schema, `postgres://${where.host}${where.pathname}#${schema}`);
    try {
      await store.migrate();
    } catch (e) {
      await pool.end().catch(() => undefined);
      throw new Error(`catalogue: opening ${store.describe} failed: ${(e as Error).message}`, { cause: e });
    }
    return store;
  }

  private async migrate(): Promise<void> {
    await this.transaction(async (c) => {
      // One replica at a time lays the schema out.
      await c.query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`cairn-catalogue-ddl:${this.schema}`]);
      await c.query(`CREATE SCHEMA IF NOT EXISTS ${this.schema}`);
      const meta = await c.query(`SELECT to_regclass($1) AS t`, [`${this.schema}.meta`]);
      if (meta.rows[0].t !== null) {
        const v = await c.query(`SELECT value FROM ${this.schema}.meta WHERE key = 'schemaVersion'`);
        if (v.rows[0] && v.rows[0].value !== String(SCHEMA_VERSION)) {
          // Read models are disposable: an older layout is dropped and rebuilt from the log.
          await c.query(`DROP SCHEMA ${this.schema} CASCADE`);
          await c.query(`CREATE SCHEMA ${this.schema}`);
        }
      }
      await c.query(postgresDdl());
      await c.query(totalsTriggersDdl('postgres'));
      await c.query(`INSERT INTO meta (key, value) VALUES ('schemaVersion', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, [String(SCHEMA_VERSION)]);
      await c.query(`INSERT INTO checkpoint (name, position) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING`, [CHECKPOINT_NAME]);
    });
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  async position(): Promise<bigint> {
    const r = await this.pool.query(`SELECT position FROM checkpoint WHERE name = $1`, [CHECKPOINT_NAME]);
    return r.rows[0] ? BigInt(r.rows[0].position as string) : 0n;
  }

  /**
   * The batch's statements, values inlined, go as one multi-statement query (one round trip,
   * not one per statement). When it fails the transaction is rolled back and the batch run
   * again statement by statement, so the error names the event that failed.
   */
  async apply(events: readonly RecordedEvent[]): Promise<number> {
    try {
      return await this.transaction(async (c) => {
        const from = await lockedPosition(c);
        const todo = events.filter((r) => r.position > from);
        if (!todo.length) return 0;
        const texts = todo.flatMap((r) => projectEvent(r).map((s) => inlined(s.sql, s.params)));
        texts.push(`UPDATE checkpoint SET position = ${todo.at(-1)!.position.toString()} WHERE name = '${CHECKPOINT_NAME}'`);
        await c.query(texts.join(';\n'));
        return todo.length;
      });
    } catch {
      return this.applyOneByOne(events);
    }
  }

  private applyOneByOne(events: readonly RecordedEvent[]): Promise<number> {
    return this.transaction(async (c) => {
      let position = await lockedPosition(c);
      let applied = 0;
      for (const recorded of events) {
        if (recorded.position <= position) continue;
        try {
          for (const s of projectEvent(recorded)) await c.query(toPostgres(s.sql), bind(s.params));
        } catch (e) {
          throw new Error(`projecting ${recorded.event.type} ${recorded.event.id} at position ${recorded.position} failed: ${(e as Error).message}`, { cause: e });
        }
        position = recorded.position;
        applied++;
      }
      if (applied > 0) await c.query(`UPDATE checkpoint SET position = $2 WHERE name = $1`, [CHECKPOINT_NAME, position.toString()]);
      return applied;
    });
  }

  applyUnreadable(record: UnreadableRecord): Promise<boolean> {
    return this.transaction(async (c) => {
      if (record.position <= await lockedPosition(c)) return false;
      const s = unreadableAuditStatement(record);
      await c.query(toPostgres(s.sql), bind(s.params));
      await c.query(`UPDATE checkpoint SET position = $2 WHERE name = $1`, [CHECKPOINT_NAME, record.position.toString()]);
      return true;
    });
  }

  async read<T>(fn: (reader: CatalogueReader) => Promise<T>): Promise<T> {
    return this.transaction((c) => fn({
      all: async (sql, ...params) => (await c.query(toPostgres(sql), bind(params))).rows as Row[],
      one: async (sql, ...params) => (await c.query(toPostgres(sql), bind(params))).rows[0] as Row | undefined,
    }), 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  }

  /** Runs raw SQL (tests and the benchmark use it to look at plans). */
  async query(sql: string, params: unknown[] = []): Promise<Row[]> {
    return (await this.pool.query(sql, params)).rows as Row[];
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }

  /** Runs `fn` in one transaction on one pooled connection (`begin` opens it: reads ask for a snapshot). */
  private async transaction<T>(fn: (c: pg.PoolClient) => Promise<T>, begin = 'BEGIN'): Promise<T> {
    if (this.closed) throw new Error(`catalogue store ${this.describe} is closed`);
    const c = await this.pool.connect();
    try {
      await c.query(begin);
      const result = await fn(c);
      await c.query('COMMIT');
      return result;
    } catch (e) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw e;
    } finally {
      c.release();
    }
  }
}

async function lockedPosition(c: pg.PoolClient): Promise<bigint> {
  const r = await c.query(`SELECT position FROM checkpoint WHERE name = $1 FOR UPDATE`, [CHECKPOINT_NAME]);
  return r.rows[0] ? BigInt(r.rows[0].position as string) : 0n;
}

/**
 * A site's catalogue in one PostgreSQL database, shared by every replica of the site. A rebuild
 * fills `<schema>_rebuild` and renames it over the live schema in one transaction; replicas
 * name the schema in their search_path, so each of them reads the new one from then on.
 */
export class PostgresCatalogueBackend implements CatalogueBackend {
  readonly dialect = 'postgres' as const;
  readonly schema: string;

  constructor(private readonly options: PostgresCatalogueOptions) {
    this.schema = catalogueSchemaName(options.site);
  }

  openLive(): Promise<CatalogueStore> {
    return PostgresCatalogueStore.open(this.options.url, this.schema, this.options.poolSize);
  }

  async openFresh(): Promise<CatalogueStore> {
    await this.admin((c) => c.query(`DROP SCHEMA IF EXISTS ${this.schema}_rebuild CASCADE`));
    return PostgresCatalogueStore.open(this.options.url, `${this.schema}_rebuild`, 2);
  }

  async swap(live: CatalogueStore, fresh: CatalogueStore): Promise<CatalogueStore> {
    await fresh.close();
    await this.admin(async (c) => {
      await c.query('BEGIN');
      try {
        await c.query(`DROP SCHEMA ${this.schema} CASCADE`);
        await c.query(`ALTER SCHEMA ${this.schema}_rebuild RENAME TO ${this.schema}`);
        await c.query('COMMIT');
      } catch (e) {
        await c.query('ROLLBACK').catch(() => undefined);
        throw e;
      }
    });
    // The live pool names the schema, so it reads the rebuilt one from now on.
    return live;
  }

  async discard(fresh: CatalogueStore): Promise<void> {
    await fresh.close();
    await this.admin((c) => c.query(`DROP SCHEMA IF EXISTS ${this.schema}_rebuild CASCADE`)).catch(() => undefined);
  }

  /**
   * The projector lease: a session advisory lock on a connection of its own, tried every
   * `retryMs` until this replica holds it. The lock goes when the session ends (process killed,
   * connection lost), and `lost` fires on this side.
   */
  async acquireLease(signal: AbortSignal, retryMs = 1000): Promise<{ lost: Promise<void>; release(): Promise<void> }> {
    for (;;) {
      signal.throwIfAborted();
      const client = new pg.Client({ connectionString: this.options.url });
      let onLost!: () => void;
      const lost = new Promise<void>((resolve) => { onLost = resolve; });
      client.on('error', () => onLost());
      client.on('end', () => onLost());
      try {
        await client.connect();
        const r = await client.query(`SELECT pg_try_advisory_lock(hashtext($1)) AS held`, [`cairn-catalogue-projector:${this.schema}`]);
        if (r.rows[0].held === true) {
          return { lost, release: async () => { await client.end().catch(() => undefined); } };
        }
      } catch {
        // The database is not reachable yet: try again.
      }
      await client.end().catch(() => undefined);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, retryMs);
        signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
      });
    }
  }

  private async admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
    const c = new pg.Client({ connectionString: this.options.url });
    await c.connect();
    try {
      return await fn(c);
    } finally {
      await c.end().catch(() => undefined);
    }
  }
}
