import { describe, expect, it } from 'vitest';
import { gatewayOpenApiDocument, gatewayOpenApiText } from './gateway.openapi.ts';

describe('the gateway OpenAPI document', () => {
  const doc = gatewayOpenApiDocument() as {
    paths: Record<string, Record<string, { security?: unknown[]; responses: Record<string, unknown>; parameters?: { name: string; in: string }[] }>>;
    components: { schemas: Record<string, unknown> };
  };

  it('is deterministic, so docs/openapi.json can be checked for staleness', () => {
    expect(gatewayOpenApiText()).toBe(gatewayOpenApiText());
  });

  it('documents every route with its parameters, success and problem responses', () => {
    expect(doc.paths['/v1/jobs/{jobId}']?.get?.parameters).toEqual([expect.objectContaining({ name: 'jobId', in: 'path' })]);
    expect(Object.keys(doc.paths['/v1/backups']?.post?.responses ?? {})).toEqual(['202', '400', '401', '403', '404', '409', '500', '503', '504']);
    expect(doc.paths['/v1/backups']?.post).toMatchObject({ 'x-cairn-permission': 'backup', 'x-cairn-roles': ['administrator', 'operator'] });
    expect(doc.paths['/v1/audit']?.get).toMatchObject({ 'x-cairn-permission': 'read', 'x-cairn-roles': ['administrator', 'operator', 'restore-operator', 'auditor'] });
    expect(doc.paths['/health']?.get?.security).toEqual([]);
    expect(doc.paths['/v1/vms']?.get?.security).toBeUndefined();
  });

  it('hoists named schemas into components and leaves every $ref resolvable', () => {
    const text = JSON.stringify(doc);
    expect(text).not.toContain('"$id"');
    for (const [, name] of text.matchAll(/"#\/components\/schemas\/([^"]+)"/g)) {
      expect(doc.components.schemas, name).toHaveProperty([name!]);
    }
  });
});
