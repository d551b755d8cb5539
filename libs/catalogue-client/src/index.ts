// Catalogue queries: their schemas, subjects, read-model shapes and a typed NATS client.
// Shared by the catalogue (which answers), the gateway and the CLI (which ask).
export * from './catalogue.views.ts';
export * from './catalogue.queries.ts';
export * from './catalogue.client.ts';
export * from './catalogue.paging.ts';
export * from './site-view.client.ts';
