// One site's part of the hub's catalogue (issue 24: the CLI at the hub with `--site <name>`).
// The hub's catalogue projects every site's events, each row marked with its site; this client
// asks it and keeps what belongs to the named site, so listings and look-ups read as they would
// at the site itself, without any query crossing the leaf link.
import { CatalogueClient, CatalogueQueryError, type Answer, type QueryTransport } from './catalogue.client.ts';
import type { QueryName, QueryRequest, QueryResult } from './catalogue.queries.ts';

const ofSite = (site: string) => (x: unknown): boolean => {
  const row = x as { site?: unknown; sourceSite?: unknown };
  return row.site === undefined || row.site === site;
};

export class SiteViewCatalogueClient extends CatalogueClient {
  constructor(nc: QueryTransport, readonly viewSite: string, options: { hubSite?: string; timeoutMs?: number } = {}) {
    super(nc, { site: options.hubSite ?? 'hub', ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}) });
  }

  override async ask<Q extends QueryName>(name: Q, request: QueryRequest<Q>): Promise<Answer<QueryResult<Q>>> {
    const answer = await super.ask(name, request);
    const result = answer.result as unknown;
    const keep = ofSite(this.viewSite);
    if (result && typeof result === 'object' && Array.isArray((result as { items?: unknown }).items)) {
      const page = result as { items: unknown[] };
      return { ...answer, result: { ...page, items: page.items.filter(keep) } as QueryResult<Q> };
    }
    if (name.endsWith('.get') && !keep(result)) {
      throw new CatalogueQueryError('not_found', `${name}: not a record of site ${this.viewSite} (the hub's catalogue has it for site ${String((result as { site?: unknown }).site)})`, name);
    }
    return answer;
  }
}
