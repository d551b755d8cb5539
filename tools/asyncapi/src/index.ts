// AsyncAPI generation from the contracts (used by tools/asyncapi/generate.ts and docs:check).
export { buildAsyncApi, renderAsyncApi, jsonSchema } from './asyncapi.ts';
