import { describe, expect, it } from 'vitest';
import { CatalogueQueryHandlers } from './catalogue-queries.handlers.ts';
import { NotFoundError, type CatalogueReadModel } from './catalogue.read-model.ts';

// A read model that knows the policy only once the projection has "caught up".
function readModel(state: { projected: boolean }): CatalogueReadModel {
  return {
    getPolicy: (policyId: string) => {
      if (!state.projected) throw new NotFoundError(`no policy ${policyId}`);
      return { policyId };
    },
  } as unknown as CatalogueReadModel;
}

const unused = { status: () => Promise.reject(new Error('unused')), rebuild: () => Promise.reject(new Error('unused')) };

describe('catalogue queries: read your writes on a miss', () => {
  it('a get that misses waits until the replica has what the log had, then reads again', async () => {
    const state = { projected: false };
    let waited = 0;
    const handlers = new CatalogueQueryHandlers(readModel(state), {
      ...unused, caughtUp: async () => { waited += 1; state.projected = true; },
    });
    expect(await handlers.handle('policy.get', { policyId: 'p1' })).toEqual({ ok: true, result: { policyId: 'p1' } });
    expect(waited).toBe(1);
  });

  it('a thing that is not in the log is still not_found once caught up', async () => {
    const handlers = new CatalogueQueryHandlers(readModel({ projected: false }), { ...unused, caughtUp: async () => undefined });
    expect(await handlers.handle('policy.get', { policyId: 'p2' })).toMatchObject({ ok: false, error: { code: 'not_found' } });
  });

  it('a replica that cannot catch up in time answers with what it has (not_found), not an error', async () => {
    const handlers = new CatalogueQueryHandlers(readModel({ projected: false }), { ...unused, caughtUp: () => Promise.reject(new Error('timeout')) });
    expect(await handlers.handle('policy.get', { policyId: 'p3' })).toMatchObject({ ok: false, error: { code: 'not_found' } });
  });

  it('a hit never waits', async () => {
    let waited = 0;
    const handlers = new CatalogueQueryHandlers(readModel({ projected: true }), { ...unused, caughtUp: async () => { waited += 1; } });
    expect(await handlers.handle('policy.get', { policyId: 'p4' })).toMatchObject({ ok: true });
    expect(waited).toBe(0);
  });
});
