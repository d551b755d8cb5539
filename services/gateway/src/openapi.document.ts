// Builds the OpenAPI 3.1 document from the route declarations and their TypeBox schemas
// (which are JSON Schema already): named schemas ($id) become components, the rest inline.
// Deterministic: the same routes always give the same bytes, so docs/openapi.json can be checked.
import type { TSchema } from '@sinclair/typebox';
import { Problem } from './problem.ts';
import type { RouteSpec } from './route.decorator.ts';
import { ROLE_PERMISSIONS } from './roles.ts';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

export interface OpenApiInfo {
  title: string;
  version: string;
  description: string;
}

const TITLES: Record<number, string> = {
  400: 'Invalid request (problem JSON lists what)', 401: 'Missing or wrong bearer token', 403: 'Forbidden', 404: 'Not found',
  409: 'Conflicts with the current state', 413: 'Body too large', 416: 'The byte range lies outside the file (Content-Range: bytes */<size>)', 422: 'Refused by the service', 500: 'Gateway failure',
  503: 'A service behind the gateway is not answering', 504: 'A service behind the gateway did not answer in time',
};

class Components {
  readonly schemas: Record<string, JsonObject> = {};

  /** A schema as OpenAPI JSON; sub-schemas carrying an $id are hoisted into components. */
  ref(schema: TSchema): JsonObject {
    return this.walk(JSON.parse(JSON.stringify(schema)) as Json) as JsonObject;
  }

  private walk(node: Json): Json {
    if (Array.isArray(node)) return node.map((n) => this.walk(n));
    if (node === null || typeof node !== 'object') return node;
    const out: JsonObject = {};
    for (const [k, v] of Object.entries(node)) {
      if (k === '$id') continue;
      out[k] = k === 'properties' || k === 'patternProperties' || k === '$defs'
        ? Object.fromEntries(Object.entries(v as JsonObject).map(([name, s]) => [name, this.walk(s)]))
        : this.walk(v);
    }
    const id = node.$id;
    if (typeof id !== 'string') return out;
    const name = id.replace(/[^A-Za-z0-9._-]/g, '_');
    this.schemas[name] ??= out;
    return { $ref: `#/components/schemas/${name}` };
  }
}

function openApiPath(path: string): string {
  return path.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
}

function parameters(c: Components, spec: RouteSpec): JsonObject[] {
  const out: JsonObject[] = [];
  for (const [where, schema] of [['path', spec.params], ['query', spec.query]] as const) {
    if (!schema) continue;
    const required = new Set((schema.required as string[] | undefined) ?? []);
    for (const [name, prop] of Object.entries(schema.properties)) {
      const s = c.ref(prop as TSchema);
      const description = typeof s.description === 'string' ? s.description : undefined;
      out.push({
        name, in: where, required: where === 'path' || required.has(name),
        ...(description ? { description } : {}),
        schema: s,
      });
    }
  }
  if (spec.method === 'POST') {
    out.push({
      name: 'Idempotency-Key', in: 'header', required: false,
      description: 'Retrying with the same key returns the first answer instead of acting twice.',
      schema: { type: 'string', minLength: 1, maxLength: 256 },
    });
  }
  return out;
}

export function buildOpenApiDocument(routes: readonly RouteSpec[], info: OpenApiInfo): JsonObject {
  const c = new Components();
  const problemRef = c.ref(Problem);
  const paths: Record<string, JsonObject> = {};
  for (const spec of routes) {
    const status = spec.status ?? 200;
    const problems = [...new Set([400, ...(spec.public ? [] : [401, 403]), ...(spec.problems ?? []), 500])].sort((a, b) => a - b);
    const responses: JsonObject = {
      [String(status)]: { description: spec.summary, content: { [spec.contentType ?? 'application/json']: { schema: c.ref(spec.response) } } },
    };
    for (const a of spec.alsoSucceeds ?? []) {
      responses[String(a.status)] = a.status === 304
        ? { description: a.description }
        : { description: a.description, content: { [spec.contentType ?? 'application/json']: { schema: c.ref(spec.response) } } };
    }
    for (const p of problems) {
      responses[String(p)] = { description: TITLES[p] ?? 'Problem', content: { 'application/problem+json': { schema: problemRef } } };
    }
    const params = parameters(c, spec);
    const operation: JsonObject = {
      operationId: spec.operationId,
      summary: spec.summary,
      ...(spec.description ? { description: spec.description } : {}),
      tags: [spec.tag],
      ...(params.length ? { parameters: params } : {}),
      ...(spec.body ? { requestBody: { required: true, content: { 'application/json': { schema: c.ref(spec.body) } } } } : {}),
      responses,
      ...(spec.public ? { security: [] } : (() => {
        const permission = spec.permission ?? (spec.method === 'GET' ? 'read' : 'admin');
        return {
          'x-cairn-permission': permission,
          'x-cairn-roles': Object.entries(ROLE_PERMISSIONS).filter(([, ps]) => ps.includes(permission)).map(([r]) => r),
        };
      })()),
    };
    const path = openApiPath(spec.path);
    paths[path] = { ...(paths[path] ?? {}), [spec.method.toLowerCase()]: operation };
  }
  const sortedSchemas = Object.fromEntries(Object.entries(c.schemas).sort(([a], [b]) => a.localeCompare(b)));
  return {
    openapi: '3.1.0',
    info: { title: info.title, version: info.version, description: info.description },
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    security: [{ bearer: [] }],
    paths,
    components: {
      schemas: sortedSchemas,
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'An API token (`cairn token create`; `cairn up` makes the bootstrap administrator\'s), or an OIDC JWT where a provider is configured. Each operation says the permission it needs (`x-cairn-permission`) and the roles that grant it (`x-cairn-roles`).' } },
    },
  };
}

/** The document as written to docs/openapi.json (stable formatting, trailing newline). */
export function renderOpenApi(doc: JsonObject): string {
  return `${JSON.stringify(doc, null, 2)}\n`;
}
