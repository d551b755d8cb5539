// The catalogue service: read models projected from the event log and the queries over them.
export { CatalogueDb } from './catalogue-db.adapter.ts';
export { CatalogueReadModel, NotFoundError } from './catalogue.read-model.ts';
export { projectEvent } from './catalogue.projection.ts';
