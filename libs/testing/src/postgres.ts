// A throwaway PostgreSQL database for one test run: created with a random name in the server
// at CAIRN_TEST_POSTGRES_URL (default: the local PostgreSQL 15, trust auth, user postgres) and
// dropped afterwards, connections and all.
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export const TEST_POSTGRES_URL = process.env.CAIRN_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface TestPostgresDatabase {
  readonly name: string;
  /** Connection URL of the new database. */
  readonly url: string;
  drop(): Promise<void>;
}

/** Whether the server answers (specs skip with the reason when it does not). */
export async function postgresReachable(url = TEST_POSTGRES_URL): Promise<boolean> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  try {
    await c.connect();
    await c.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await c.end().catch(() => undefined);
  }
}

async function admin<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

export async function createTestDatabase(prefix = 'cairn_test', url = TEST_POSTGRES_URL): Promise<TestPostgresDatabase> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  await admin(url, (c) => c.query(`CREATE DATABASE ${name}`));
  const dbUrl = new URL(url);
  dbUrl.pathname = `/${name}`;
  let dropped = false;
  return {
    name,
    url: dbUrl.toString(),
    drop: async () => {
      if (dropped) return;
      dropped = true;
      await admin(url, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
    },
  };
}
