// The catalogue service: read models projected from the event log into SQLite, answered as
// NATS queries in a queue group. Start it with `startCatalogue`; ask it with @cairn/catalogue-client.
export { startCatalogue, CatalogueModule, type StartCatalogueOptions, type RunningCatalogue, type CatalogueModuleOptions } from './catalogue.module.ts';
export { CatalogueService, type CatalogueHealth, type CatalogueConfig } from './catalogue.service.ts';
export { CatalogueProjector, type ProjectorLog, type RebuildOutcome } from './catalogue.projector.ts';
export { CatalogueReadModel } from './catalogue.read-model.ts';
export { SqliteCatalogueBackend, SqliteCatalogueStore } from './catalogue-db.adapter.ts';
export { PostgresCatalogueBackend, PostgresCatalogueStore, catalogueSchemaName } from './catalogue-pg.adapter.ts';
export type { CatalogueBackend, CatalogueStore, CatalogueReader } from './catalogue-store.port.ts';
