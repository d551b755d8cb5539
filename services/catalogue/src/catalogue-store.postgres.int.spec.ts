// The store contract on PostgreSQL 15 (127.0.0.1:5432, trust auth): a database of its own with a
// random name for this run, dropped afterwards; one schema per backend.
import { createTestDatabase, postgresReachable, TEST_POSTGRES_URL } from '@cairn/testing';
import { PostgresCatalogueBackend, PostgresCatalogueStore } from './catalogue-pg.adapter.ts';
import { catalogueStoreContract } from './catalogue-store.contract.ts';

const reachable = await postgresReachable();

catalogueStoreContract('PostgreSQL', async () => {
  const db = await createTestDatabase('cairn_catalogue_contract');
  let n = 0;
  return {
    backend: async () => new PostgresCatalogueBackend({ url: db.url, site: `site-${n++}` }),
    setSchemaVersion: async (store, version) => {
      await (store as PostgresCatalogueStore).query(`UPDATE meta SET value = $1 WHERE key = 'schemaVersion'`, [version]);
    },
    dispose: () => db.drop(),
  };
}, reachable ? {} : { skip: `no PostgreSQL at ${TEST_POSTGRES_URL.replace(/\/\/[^@]*@/, '//')} (set CAIRN_TEST_POSTGRES_URL)` });
