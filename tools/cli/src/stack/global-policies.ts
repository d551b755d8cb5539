// Global policies at the hub (issue 24; docs/sites.md, "Global policies"). The hub's log keeps
// each person-signed statement (stream `globalpolicy-<policyId>`, GlobalPolicyPublished, one
// per version, recorded by `cairn policy create|edit --global`). Every round this offers the
// newest version of each statement to every site it selects, or that holds a copy of an earlier
// version (a narrowed selector takes the policy away there), whose copy is older — the version a
// site runs is what its own log says (PolicyCreated/PolicyUpdated with `globalVersion`, copied to
// the hub by the relay and read from the hub's catalogue) — as the scheduler command
// ApplyGlobalPolicy over the site's leaf link. A site that is away is offered it again each round
// until it answers, so a site cut off while a policy changed catches up when it returns. The site
// checks the person's signature itself; the hub only carries the statement.
// `cairn policy list --global` (and GET /v1/global-policies at the hub's gateway) ask for the
// report on `cairn.hub.query.globalpolicies`: per policy and site (selected, or holding a copy),
// the version applied there and whether it is behind (drift).
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { CatalogueClient } from '@cairn/catalogue-client';
import { GLOBAL_POLICIES_SUBJECT, describeSelector, selectorTakesSite, type GlobalPolicySelector, type GlobalPolicyStatement } from '@cairn/contracts';
import type { EventLogReader, RunningHubRelay } from '@cairn/eventlog';
import { CommandBus } from '@cairn/messaging';

export { GLOBAL_POLICIES_SUBJECT };

/** The newest statement of each global policy in the hub's log, with the log's revision of its stream. */
export async function readGlobalPolicies(log: EventLogReader): Promise<Map<string, { statement: GlobalPolicyStatement; publishedAt: string; publishedBy: string }>> {
  const out = new Map<string, { statement: GlobalPolicyStatement; publishedAt: string; publishedBy: string }>();
  for await (const r of log.readAll({ category: 'globalpolicy' })) {
    if (r.event.type !== 'GlobalPolicyPublished') continue;
    const statement = r.event.data as GlobalPolicyStatement;
    const known = out.get(statement.policyId);
    if (!known || known.statement.version < statement.version) out.set(statement.policyId, { statement, publishedAt: r.event.time, publishedBy: r.event.actor.id });
  }
  return out;
}

export interface GlobalPolicySiteStatus {
  readonly site: string;
  /** Whether the newest version selects the site; false: a site that held an earlier version, whose copy goes (withdrawn/not selected). */
  readonly selected: boolean;
  /** The version the site's own log says it runs (null: none yet). */
  readonly appliedVersion: number | null;
  /** current: runs the hub's version; behind: an older one or none (drift); refused: the site refused the newest. */
  readonly state: 'current' | 'behind' | 'refused';
  /** The site's reason when it refused, or why the last offer did not get an answer. */
  readonly lastError: string | null;
  readonly lastOfferAt: string | null;
}

export interface GlobalPolicyStatus {
  readonly policyId: string;
  readonly name: string;
  readonly version: number;
  /** Withdrawn at the hub (`policy delete --global`): current at a site once its copy is deleted (or it never had one). */
  readonly withdrawn: boolean;
  readonly selector: GlobalPolicySelector;
  readonly selects: string;
  readonly signedBy: readonly string[];
  readonly publishedAt: string;
  readonly sites: readonly GlobalPolicySiteStatus[];
  /** Sites behind or refusing. */
  readonly drift: number;
}

/** Pure: one site's state for a policy, from what its log says and the last offer's outcome. */
export function siteStatus(site: string, version: number, applied: number | null, offer: Offer | undefined, selected = true): GlobalPolicySiteStatus {
  const current = applied !== null && applied >= version;
  const refused = !current && offer?.version === version && offer.refused;
  return {
    site, selected, appliedVersion: applied, state: current ? 'current' : refused ? 'refused' : 'behind',
    lastError: current ? null : offer?.error ?? null, lastOfferAt: offer ? new Date(offer.at).toISOString() : null,
  };
}

interface Offer { readonly version: number; readonly at: number; readonly refused: boolean; readonly error: string | null }

/**
 * Pure: the sites a statement concerns — those it selects and those that hold a copy of an
 * earlier version (deleted or not), which a narrowed selector takes it away from — each with
 * whether it is selected, in name order.
 */
export function sitesConcerned(statement: Pick<GlobalPolicyStatement, 'selector'>, sites: readonly string[], tags: Readonly<Record<string, readonly string[]>>, holdsCopy: (site: string) => boolean): Array<{ site: string; selected: boolean }> {
  return sites.map((site) => ({ site, selected: selectorTakesSite(statement.selector, site, tags[site] ?? []) }))
    .filter((x) => x.selected || holdsCopy(x.site))
    .sort((a, b) => a.site.localeCompare(b.site));
}

/** A site's copy of a global policy as the hub's catalogue holds it. */
export interface Copy { readonly version: number; readonly deleted: boolean }

/**
 * Pure: the version of a statement a site has applied, from its copy. A withdrawn statement, or
 * one that does not select the site, is applied where the copy is deleted or never was (nothing
 * to delete); otherwise a deleted copy counts as none.
 */
export function appliedVersion(statement: Pick<GlobalPolicyStatement, 'version' | 'withdrawn'>, copy: Copy | undefined, selected = true): number | null {
  if (statement.withdrawn || !selected) return !copy || copy.deleted ? statement.version : copy.version;
  return copy && !copy.deleted ? copy.version : null;
}

export interface GlobalPolicyPush {
  report(): Promise<GlobalPolicyStatus[]>;
  /** One round now (the timer runs one every `everyMs`). */
  round(): Promise<void>;
  stop(): Promise<void>;
}

export function startGlobalPolicyPush(o: {
  /** The hub's admin connection: reads its log, sends the sites' scheduler commands, answers the report. */
  readonly nc: NatsConnection;
  readonly log: EventLogReader;
  /** The hub's catalogue (every site's policies, as the relay copied their logs). */
  readonly catalogue: CatalogueClient;
  readonly relay: RunningHubRelay;
  /** The tags the hub gave each site (`cairn hub add-site --tag`). */
  readonly tags: () => Promise<Readonly<Record<string, readonly string[]>>>;
  readonly everyMs: number;
  /** How long an offer waits for the site's answer (default 10 s). */
  readonly offerTimeoutMs?: number;
  /** A refused version is offered again after this long (default 60 s): the site's users may change. */
  readonly refusedRetryMs?: number;
  readonly logger: Logger;
}): GlobalPolicyPush {
  const offers = new Map<string, Offer>();
  const key = (policyId: string, site: string) => `${policyId}/${site}`;
  let running: Promise<void> = Promise.resolve();
  let stopped = false;

  /** Each site's copy of each global policy, from the hub's catalogue: the version it runs, and whether it deleted it (withdrawn). */
  const copies = async (): Promise<Map<string, Copy>> => {
    const out = new Map<string, Copy>();
    for (const p of (await o.catalogue.query('policy.list', { includeDeleted: true })).items) {
      if (p.managedBy === 'hub' && p.globalPolicyId && p.site && p.globalVersion) out.set(key(p.globalPolicyId, p.site), { version: p.globalVersion, deleted: p.deletedAt !== null });
    }
    return out;
  };
  const appliedOf = (statement: GlobalPolicyStatement, site: string, selected: boolean, all: Map<string, Copy>) => appliedVersion(statement, all.get(key(statement.policyId, site)), selected);
  const concerned = (statement: GlobalPolicyStatement, sites: readonly string[], tags: Readonly<Record<string, readonly string[]>>, all: Map<string, Copy>) =>
    sitesConcerned(statement, sites, tags, (site) => all.has(key(statement.policyId, site)));

  const offer = async (site: string, statement: GlobalPolicyStatement): Promise<void> => {
    const bus = new CommandBus(o.nc, { site, actor: { kind: 'service', id: 'global-policies@hub' }, defaultTimeoutMs: o.offerTimeoutMs ?? 10_000 });
    const at = Date.now();
    try {
      const reply = await bus.send('scheduler', 'ApplyGlobalPolicy', { statement }, { idempotencyKey: `globalpolicy-${statement.policyId}-v${statement.version}-${at}` });
      if (reply.accepted) {
        offers.set(key(statement.policyId, site), { version: statement.version, at, refused: false, error: null });
        o.logger.info({ toSite: site, policyId: statement.policyId, version: statement.version, outcome: reply.result?.outcome }, 'global policy offered');
      } else {
        const error = `${reply.error.code}: ${reply.error.message}`;
        offers.set(key(statement.policyId, site), { version: statement.version, at, refused: true, error });
        o.logger.warn({ toSite: site, policyId: statement.policyId, version: statement.version, error }, 'global policy refused by the site');
      }
    } catch (e) {
      // Away (no responders, timeout): offered again next round.
      offers.set(key(statement.policyId, site), { version: statement.version, at, refused: false, error: `not answered: ${(e as Error).message}` });
    }
  };

  const round = (): Promise<void> => {
    running = running.then(async () => {
      if (stopped) return;
      const policies = await readGlobalPolicies(o.log);
      if (!policies.size) return;
      const [all, tags] = await Promise.all([copies(), o.tags()]);
      const sites = o.relay.status().map((s) => s.site);
      const now = Date.now();
      await Promise.all(sites.map(async (site) => {
        for (const { statement } of policies.values()) {
          const at = concerned(statement, [site], tags, all)[0];
          if (stopped || !at) continue;
          if ((appliedOf(statement, site, at.selected, all) ?? 0) >= statement.version) continue;
          const last = offers.get(key(statement.policyId, site));
          // The site said yes and its log has not reached the hub yet, or it refused this version a moment ago.
          if (last?.version === statement.version && !last.error && now - last.at < 30_000) continue;
          if (last?.version === statement.version && last.refused && now - last.at < (o.refusedRetryMs ?? 60_000)) continue;
          await offer(site, statement);
        }
      }));
    }).catch((e: unknown) => o.logger.warn({ err: (e as Error).message }, 'global policy round failed'));
    return running;
  };
  const timer = setInterval(() => { void round(); }, o.everyMs);
  timer.unref();
  void round();

  const report = async (): Promise<GlobalPolicyStatus[]> => {
    const [policies, all, tags] = await Promise.all([readGlobalPolicies(o.log), copies(), o.tags()]);
    const sites = o.relay.status().map((s) => s.site);
    return [...policies.values()].map(({ statement, publishedAt }) => {
      const statuses = concerned(statement, sites, tags, all)
        .map(({ site, selected }) => siteStatus(site, statement.version, appliedOf(statement, site, selected, all), offers.get(key(statement.policyId, site)), selected));
      return {
        policyId: statement.policyId, name: statement.policy.name, version: statement.version, withdrawn: Boolean(statement.withdrawn), selector: statement.selector,
        selects: describeSelector(statement.selector), signedBy: statement.signatures.map((x) => x.userId), publishedAt,
        sites: statuses, drift: statuses.filter((x) => x.state !== 'current').length,
      };
    }).sort((a, b) => a.name.localeCompare(b.name));
  };

  const sub: Subscription = o.nc.subscribe(GLOBAL_POLICIES_SUBJECT, {
    callback: (err, msg) => {
      if (err) return;
      void report().then(
        (policies) => msg.respond(JSON.stringify({ ok: true, policies, generatedAt: new Date().toISOString() })),
        (e: unknown) => msg.respond(JSON.stringify({ ok: false, error: (e as Error).message })),
      );
    },
  });

  return {
    report,
    round,
    async stop() {
      stopped = true;
      clearInterval(timer);
      sub.unsubscribe();
      await running;
    },
  };
}
