// GET /v1/sites/health: the hub's view of every site (leaf link, last contact, silence, event lag,
// failed jobs and RPO misses in 24 h, replication lag per pair). The hub's site health watch
// answers `cairn.hub.query.sites.health` (tools/cli/src/stack/site-health.ts, the same report as
// `cairn site list` at the hub); the gateway at the hub relays it, a site's gateway has none.
import { Controller, Inject } from '@nestjs/common';
import type { NatsConnection } from '@nats-io/transport-node';
import { GLOBAL_POLICIES_SUBJECT, SITE_HEALTH_SUBJECT } from '@cairn/contracts';
import { GATEWAY_CONFIG, GATEWAY_SITE_HEALTH } from './gateway.tokens.ts';
import type { GatewayConfig } from './gateway.config.ts';
import { Route } from './route.decorator.ts';
import { ProblemError } from './problem.ts';
import { GlobalPoliciesView, SitesHealthView } from './gateway.schemas.ts';

/** The hub's site name (libs/nats-security HUB). */
const HUB_SITE = 'hub';

/** What the hub's site health watch answers. */
export interface SiteHealthReply { readonly ok: boolean; readonly error?: string; readonly sites?: unknown[]; readonly generatedAt?: string }

/** What the hub's global policy push answers (tools/cli/src/stack/global-policies.ts). */
export interface GlobalPoliciesReply { readonly ok: boolean; readonly error?: string; readonly policies?: unknown[]; readonly generatedAt?: string }

export interface SiteHealthSource {
  report(): Promise<SiteHealthReply>;
  /** The global policies and each selected site's version (drift). */
  globalPolicies?(): Promise<GlobalPoliciesReply>;
}

/** Asks the hub's site health watch and global policy push over NATS. */
export function natsSiteHealth(nc: NatsConnection, timeoutMs: number): SiteHealthSource {
  return {
    report: async () => (await nc.request(SITE_HEALTH_SUBJECT, '', { timeout: timeoutMs })).json<SiteHealthReply>(),
    globalPolicies: async () => (await nc.request(GLOBAL_POLICIES_SUBJECT, '', { timeout: timeoutMs })).json<GlobalPoliciesReply>(),
  };
}

const unanswered = (e: unknown, what: string): ProblemError => {
  const name = (e as Error).name;
  const why = name === 'TimeoutError' || /timeout/i.test((e as Error).message) ? 'did not answer in time' : /no responders/i.test((e as Error).message) ? 'is not running (no responders)' : (e as Error).message;
  return new ProblemError(503, 'service-unavailable', `the hub's ${what} ${why}; is \`cairn hub\` running?`, { code: 'unavailable' });
};

@Controller()
export class SitesController {
  constructor(
    @Inject(GATEWAY_CONFIG) private readonly config: GatewayConfig,
    @Inject(GATEWAY_SITE_HEALTH) private readonly source: SiteHealthSource | undefined,
  ) {}

  @Route({
    method: 'GET', path: '/v1/sites/health', operationId: 'listSiteHealth', tag: 'sites',
    summary: 'Every site\'s health as the hub sees it: leaf link, last contact, silence, event lag, failed jobs and RPO misses in 24 h, replication lag per pair',
    description: 'Only at the hub\'s gateway (`cairn hub`): 404 (code not_hub) at a site\'s gateway; 503 when the hub\'s site health watch does not answer; 502 when it failed. The same report as `cairn site list` at the hub.',
    response: SitesHealthView, problems: [404, 502, 503],
  })
  async health() {
    if (this.config.site !== HUB_SITE || !this.source) {
      throw new ProblemError(404, 'not-found', `this gateway is site ${this.config.site}, not the hub: every site's health is seen at the hub's gateway (\`cairn hub\`) or with \`cairn site list\` there`, { code: 'not_hub' });
    }
    let reply: SiteHealthReply;
    try {
      reply = await this.source.report();
    } catch (e) {
      throw unanswered(e, 'site health watch');
    }
    if (!reply.ok) throw new ProblemError(502, 'service-failed', `the hub's site health report failed: ${reply.error ?? 'no reason given'}`, { code: 'internal' });
    return { generatedAt: reply.generatedAt ?? new Date().toISOString(), items: reply.sites ?? [] };
  }

  @Route({
    method: 'GET', path: '/v1/global-policies', operationId: 'listGlobalPolicies', tag: 'sites',
    summary: 'The global policies defined at the hub, and for each site they select the version it runs (drift: behind or refused)',
    description: 'Only at the hub\'s gateway: 404 (code not_hub) at a site\'s gateway; 503 when the hub does not answer; 502 when the report failed. The same report as `cairn policy list --global` at the hub (docs/sites.md, "Global policies").',
    response: GlobalPoliciesView, problems: [404, 502, 503],
  })
  async globalPolicies() {
    if (this.config.site !== HUB_SITE || !this.source?.globalPolicies) {
      throw new ProblemError(404, 'not-found', `this gateway is site ${this.config.site}, not the hub: global policies are defined and watched at the hub (\`cairn policy list --global\` there)`, { code: 'not_hub' });
    }
    let reply: GlobalPoliciesReply;
    try {
      reply = await this.source.globalPolicies();
    } catch (e) {
      throw unanswered(e, 'global policy push');
    }
    if (!reply.ok) throw new ProblemError(502, 'service-failed', `the hub's global policy report failed: ${reply.error ?? 'no reason given'}`, { code: 'internal' });
    return { generatedAt: reply.generatedAt ?? new Date().toISOString(), items: reply.policies ?? [] };
  }
}
