// Site health at the hub (issue 24; docs/sites.md, "Site health at the hub"). The hub probes each
// site's event stream across its leaf link (the relay identity's STREAM.INFO in the site's
// domain): a probe that answers is contact, and says how many events the site holds against how
// many the relay copied (event lag). A site silent for longer than its allowed gap gets one
// SiteSilent in the hub's log (SiteContactRestored when it answers again), decided by the pure
// `silenceStep` below from the stream's own history (append at the revision read). The rest of
// the report comes from the hub's catalogue: failed jobs and RPO misses in 24 h, repository use,
// replication lag per pair. `cairn site list` at the hub asks for it on `cairn.hub.query.sites.health`.
// Each site has its own allowed gap: the latest SiteAllowedGapSet of its stream (the watch records
// it on the signed command SetSiteAllowedGap, `cairn site set-gap`, decided by the pure
// `allowedGapStep`), else the gap `cairn hub add-site --allowed-gap` put in the hub's site
// registry, else the hub's default (`cairn hub --allowed-gap`, 300 s).
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { CatalogueClient } from '@cairn/catalogue-client';
import { SITE_HEALTH_SUBJECT, eventStreamName, newEvent, type CairnEvent, type CommandPayloadMap } from '@cairn/contracts';
import type { EventLog, RunningHubRelay } from '@cairn/eventlog';
import { CommandFailedError, JetStreamServer, type CommandContext } from '@cairn/messaging';
import type { CommandAuthorizer } from '@cairn/command-auth';

export { SITE_HEALTH_SUBJECT };

// ---- the decision (pure) ------------------------------------------------------------------------

export interface SilenceState {
  /** Last contact (ms since the epoch); the watch's start when the site was not reached since. */
  readonly lastContactAt: number;
  readonly contacted: boolean;
  /** A SiteSilent is the stream's last word. */
  readonly silent: boolean;
}

export type SilenceEvent =
  | { readonly type: 'SiteSilent'; readonly data: { lastContactAt: string | null; allowedGapMs: number; silentForMs: number } }
  | { readonly type: 'SiteContactRestored'; readonly data: { silentForMs: number } };

/** One observation of a site: reached now (`reached`) or not, at `now`. */
export function silenceStep(state: SilenceState, o: { readonly reached: boolean; readonly now: number; readonly allowedGapMs: number }): { state: SilenceState; event?: SilenceEvent } {
  if (o.reached) {
    const next = { lastContactAt: o.now, contacted: true, silent: false };
    return state.silent ? { state: next, event: { type: 'SiteContactRestored', data: { silentForMs: Math.max(0, o.now - state.lastContactAt) } } } : { state: next };
  }
  const silentForMs = Math.max(0, o.now - state.lastContactAt);
  if (state.silent || silentForMs <= o.allowedGapMs) return { state };
  return {
    state: { ...state, silent: true },
    event: { type: 'SiteSilent', data: { lastContactAt: state.contacted ? new Date(state.lastContactAt).toISOString() : null, allowedGapMs: o.allowedGapMs, silentForMs } },
  };
}

/** A change of a site's allowed gap: the event to record, or nothing when it is that already. */
export function allowedGapStep(currentMs: number, requestedMs: number): { event?: { type: 'SiteAllowedGapSet'; data: { allowedGapMs: number; previousMs: number } } } {
  if (!Number.isInteger(requestedMs) || requestedMs < 1000) throw new RangeError(`an allowed gap is a whole number of milliseconds of at least 1000 (1 s), not ${requestedMs}`);
  return requestedMs === currentMs ? {} : { event: { type: 'SiteAllowedGapSet', data: { allowedGapMs: requestedMs, previousMs: currentMs } } };
}

// ---- the report ---------------------------------------------------------------------------------

export interface SiteHealth {
  readonly site: string;
  /** Whether the last probe across the leaf link answered. */
  readonly leafLink: 'up' | 'down';
  readonly lastContactAt: string | null;
  readonly silent: boolean;
  readonly allowedGapMs: number;
  /** Events in the site's stream at the last contact, copied to the hub, and the difference. */
  readonly eventsAtSite: number | null;
  readonly eventsCopied: number;
  readonly eventLag: number | null;
  readonly relayConnected: boolean;
  readonly failedJobs24h: number;
  readonly rpoMisses24h: number;
  /** Restore points the site holds (not expired) and the bytes they stored (new chunks, compressed). */
  readonly restorePoints: number;
  readonly repositoryBytes: number;
  /** Per target site: replicas of this site held there, the latest one's commit and how long after its source commit it landed. */
  readonly replication: ReadonlyArray<{ readonly target: string; readonly replicas: number; readonly lastReplicaAt: string; readonly lagMs: number }>;
}

export interface SiteHealthWatch {
  report(): Promise<SiteHealth[]>;
  /** One probe of every site now (the timer does it every `probeEveryMs`). */
  probe(): Promise<void>;
  stop(): Promise<void>;
}

interface SiteProbe { state: SilenceState; revision: bigint | 'no_stream'; reached: boolean; eventsAtSite: number | null; gapMs?: number }

export function startSiteHealthWatch(o: {
  /** A connection that may read the sites' stream info across the leaf links (the relay identity). */
  readonly probeNc: NatsConnection;
  /** Answers `cairn.hub.query.sites.health` (the hub's admin connection). */
  readonly queryNc: NatsConnection;
  readonly relay: RunningHubRelay;
  /** The hub's log, to record SiteSilent / SiteContactRestored. */
  readonly log: EventLog;
  readonly catalogue: CatalogueClient;
  /** The default allowed gap (`cairn hub --allowed-gap`). */
  readonly allowedGapMs: number;
  /** The gaps of the hub's site registry (`cairn hub add-site --allowed-gap`), read again at each probe round and report. */
  readonly registeredGaps?: () => Promise<ReadonlyMap<string, number>>;
  /** Checks SetSiteAllowedGap (a secure hub: signed by the hub's admin identity); none: every command runs. */
  readonly commandAuthorizer?: CommandAuthorizer;
  readonly probeEveryMs: number;
  readonly logger: Logger;
  readonly now?: () => number;
}): SiteHealthWatch & { listen(): Promise<void> } {
  const now = o.now ?? Date.now;
  const started = now();
  const probes = new Map<string, SiteProbe>();
  let running: Promise<void> = Promise.resolve();
  let stopped = false;

  const load = async (site: string): Promise<SiteProbe> => {
    let p = probes.get(site);
    if (p) return p;
    let state: SilenceState = { lastContactAt: started, contacted: false, silent: false };
    let revision: bigint | 'no_stream' = 'no_stream';
    let gapMs: number | undefined;
    for await (const r of o.log.readStream(`sitehealth-${site}`)) {
      revision = r.revision;
      if (r.event.type === 'SiteSilent') state = { ...state, silent: true };
      if (r.event.type === 'SiteContactRestored') state = { ...state, silent: false };
      if (r.event.type === 'SiteAllowedGapSet') gapMs = (r.event.data as { allowedGapMs: number }).allowedGapMs;
    }
    p = { state, revision, reached: false, eventsAtSite: null, ...(gapMs ? { gapMs } : {}) };
    probes.set(site, p);
    return p;
  };

  let registered: ReadonlyMap<string, number> = new Map();
  const readRegistered = async (): Promise<void> => {
    if (!o.registeredGaps) return;
    try {
      registered = await o.registeredGaps();
    } catch (e) {
      o.logger.warn({ err: (e as Error).message }, 'the site registry\'s allowed gaps could not be read; keeping the last ones');
    }
  };
  const gapOf = (site: string, p: SiteProbe | undefined): number => p?.gapMs ?? registered.get(site) ?? o.allowedGapMs;

  const probeSite = async (site: string): Promise<void> => {
    const p = await load(site);
    let reached: boolean;
    try {
      // No $JS.<site>.API.INFO first (checkAPI): the relay identity may only read the site's stream info.
      const jsm = await jetstreamManager(o.probeNc, { domain: site, timeout: Math.min(5_000, o.probeEveryMs * 2), checkAPI: false });
      const info = await jsm.streams.info(eventStreamName(site));
      p.eventsAtSite = Number(info.state.last_seq);
      reached = true;
    } catch {
      reached = false;
    }
    p.reached = reached;
    const step = silenceStep(p.state, { reached, now: now(), allowedGapMs: gapOf(site, p) });
    if (step.event) {
      const streamId = `sitehealth-${site}`;
      const event = newEvent(step.event.type, { site, ...step.event.data } as never, { site: 'hub', actor: { kind: 'service', id: 'site-watch@hub' }, streamId }) as CairnEvent;
      try {
        const r = await o.log.append(streamId, [event as never], { expectedRevision: p.revision });
        p.revision = r.nextRevision;
        o.logger.warn({ fromSite: site, ...step.event.data }, step.event.type === 'SiteSilent' ? 'site silent longer than its allowed gap' : 'site reached again');
      } catch (e) {
        // Another writer moved the stream: read it again at the next probe.
        probes.delete(site);
        o.logger.warn({ fromSite: site, err: (e as Error).message }, 'site health event not recorded; read again');
        return;
      }
    }
    p.state = step.state;
  };

  const probe = (): Promise<void> => {
    running = running.then(async () => {
      await readRegistered();
      for (const s of o.relay.status()) if (!stopped) await probeSite(s.site);
    }).catch((e: unknown) => o.logger.warn({ err: (e as Error).message }, 'site probe failed'));
    return running;
  };
  const timer = setInterval(() => { void probe(); }, o.probeEveryMs);
  timer.unref();
  void probe();

  const report = async (): Promise<SiteHealth[]> => {
    await readRegistered();
    const t = now();
    const since = t - 24 * 3600_000;
    const [jobs, rps, replicas, misses] = await Promise.all([
      o.catalogue.query('job.list', { state: 'failed', limit: 1000 }).then((r) => r.items),
      o.catalogue.query('restorePoint.list', { limit: 1000 }).then((r) => r.items),
      o.catalogue.query('replica.list', { limit: 1000 }).then((r) => r.items),
      o.catalogue.query('audit.timeline', { type: 'RpoMissed', from: new Date(since).toISOString(), limit: 1000 }).then((r) => r.items),
    ]);
    const out: SiteHealth[] = [];
    for (const rel of o.relay.status()) {
      const site = rel.site;
      const p = probes.get(site);
      const mine = rps.filter((r) => r.site === site);
      const pairs = new Map<string, typeof replicas>();
      for (const r of replicas.filter((x) => x.sourceSite === site)) pairs.set(r.site, [...(pairs.get(r.site) ?? []), r]);
      out.push({
        site,
        leafLink: p?.reached ? 'up' : 'down',
        lastContactAt: p?.state.contacted ? new Date(p.state.lastContactAt).toISOString() : null,
        silent: p?.state.silent ?? false,
        allowedGapMs: gapOf(site, p),
        eventsAtSite: p?.eventsAtSite ?? null,
        eventsCopied: rel.originSeq,
        eventLag: p?.eventsAtSite == null ? null : Math.max(0, p.eventsAtSite - rel.originSeq),
        relayConnected: rel.connected,
        failedJobs24h: jobs.filter((j) => j.site === site && Date.parse(j.endedAt ?? j.updatedAt) >= since).length,
        rpoMisses24h: misses.filter((m) => m.site === site).length,
        restorePoints: mine.length,
        repositoryBytes: mine.reduce((n, r) => n + r.bytesStored, 0),
        replication: [...pairs].map(([target, list]) => {
          const last = list.reduce((a, b) => (Date.parse(b.committedAt) > Date.parse(a.committedAt) ? b : a));
          return { target, replicas: list.length, lastReplicaAt: last.committedAt, lagMs: Math.max(0, Date.parse(last.committedAt) - Date.parse(last.sourceCommittedAt)) };
        }).sort((a, b) => a.target.localeCompare(b.target)),
      });
    }
    return out.sort((a, b) => a.site.localeCompare(b.site));
  };

  const sub: Subscription = o.queryNc.subscribe(SITE_HEALTH_SUBJECT, {
    callback: (err, msg) => {
      if (err) return;
      void report().then(
        (sites) => msg.respond(JSON.stringify({ ok: true, sites, generatedAt: new Date(now()).toISOString() })),
        (e: unknown) => msg.respond(JSON.stringify({ ok: false, error: (e as Error).message })),
      );
    },
  });

  // SetSiteAllowedGap: the watch is the one writer of `sitehealth-<site>`, so the change goes
  // through the same queue as the probes and is appended at the revision the watch holds.
  const server = new JetStreamServer({ connection: o.queryNc, site: 'hub', actor: { kind: 'service', id: 'site-watch@hub' }, ...(o.commandAuthorizer ? { commandAuthorizer: o.commandAuthorizer } : {}) });
  server.addCommandHandler('site-watch', 'SetSiteAllowedGap', (payload: unknown, ctx: CommandContext) => {
    const { site, allowedGapMs } = payload as CommandPayloadMap['SetSiteAllowedGap'];
    const change = running.then(async () => {
      if (!o.relay.status().some((s) => s.site === site)) throw new CommandFailedError('not_found', `the hub does not watch a site ${site} (cairn site list)`);
      await readRegistered();
      const p = await load(site);
      const previousMs = gapOf(site, p);
      const step = allowedGapStep(previousMs, allowedGapMs);
      if (step.event) {
        const streamId = `sitehealth-${site}`;
        const event = newEvent('SiteAllowedGapSet', { site, ...step.event.data }, { site: 'hub', actor: ctx.actor, streamId, causationId: ctx.command.id });
        try {
          const r = await o.log.append(streamId, [event as never], { expectedRevision: p.revision });
          p.revision = r.nextRevision;
        } catch (e) {
          probes.delete(site);
          throw new CommandFailedError('conflict', `the site's health stream moved on while this was decided; send it again (${(e as Error).message})`);
        }
        p.gapMs = allowedGapMs;
        o.logger.info({ fromSite: site, allowedGapMs, previousMs }, 'allowed gap set');
      }
      return { site, allowedGapMs, previousMs };
    });
    running = change.then(() => undefined, () => undefined);
    return change;
  });

  return {
    report,
    probe,
    listen: () => new Promise<void>((resolve, reject) => { void server.listen((e?: unknown) => (e ? reject(e as Error) : resolve())); }),
    async stop() {
      stopped = true;
      clearInterval(timer);
      sub.unsubscribe();
      await server.close();
      await running;
    },
  };
}
