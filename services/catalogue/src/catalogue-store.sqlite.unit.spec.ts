// The store contract on SQLite (node:sqlite, a temporary file per backend).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteCatalogueBackend, SqliteCatalogueStore } from './catalogue-db.adapter.ts';
import { catalogueStoreContract } from './catalogue-store.contract.ts';

catalogueStoreContract('SQLite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-catalogue-contract-'));
  let n = 0;
  return {
    backend: async () => new SqliteCatalogueBackend(join(dir, `catalogue-${n++}.sqlite`)),
    setSchemaVersion: async (store, version) => {
      (store as SqliteCatalogueStore).db.prepared(`UPDATE meta SET value = ? WHERE key = 'schemaVersion'`).run(version);
    },
    dispose: async () => rmSync(dir, { recursive: true, force: true }),
  };
});
