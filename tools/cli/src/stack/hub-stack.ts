// The hub (`cairn hub`): a nats-server the sites join as leaf nodes (JetStream domain `hub`),
// the stream CAIRN_EVT_HUB into which the hub relay copies every site's event stream (read
// in the site's domain across the leaf connection, in order, exactly once), and a catalogue
// and gateway in site `hub` that read it: the global view of VMs, jobs, restore
// points and replicas of every site, each marked with its site. CLI and API point at it
// with `--nats <hub url> --site hub` or at its gateway.
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { jetstreamManager, DiscardPolicy, JetStreamApiError, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import { connect, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import { hubSiteTags, identityConnectOptions, initHubSecurity, registeredAllowedGaps, renderHubLeafListener, renderHubSecurity, type HubIdentity, type HubSecurity } from '@cairn/nats-security';
import { SignedCommandPolicy, signerFromSeed } from '@cairn/command-auth';
import { pino, type Logger } from 'pino';
import { assertSite, eventStreamName, eventSubjectFilter } from '@cairn/contracts';
import { createJetStreamEventLog, HUB_SITES_PREFIX, startHubRelay, type RunningHubRelay } from '@cairn/eventlog';
import { freePort, startNatsServer, type NatsServerProcess } from '@cairn/nats-server';
import { startCatalogue, type RunningCatalogue } from '@cairn/catalogue';
import { startGateway, type RunningGateway } from '@cairn/gateway';
import { STATE_FILE, type StackState } from '../session.ts';
import { watchHubSecurity, type HubSecurityWatch } from './hub-reload.ts';
import { logFileDestination } from './log-file.ts';
import { startSiteHealthWatch, type SiteHealthWatch } from './site-health.ts';
import { startGlobalPolicyPush, type GlobalPolicyPush } from './global-policies.ts';
import { CatalogueClient } from '@cairn/catalogue-client';

export const HUB_SITE = 'hub';

export interface HubOptions {
  readonly dataDir: string;
  /** Sites whose event streams the hub sources (more can be added with `addSites`). */
  readonly sites: readonly string[];
  /** Port the sites' leaf connections come to (default: a free one). */
  readonly leafPort?: number;
  readonly gatewayPort?: number;
  readonly log?: (line: string) => void;
  readonly logger?: Logger;
  /**
   * Mutual TLS on the client port and the leaf listener, one identity per hub client (relay,
   * catalogue, gateway, admin) and one leaf user per site (docs/security.md, "Leaf links"):
   * the material is created in `<data>/security` (or `dir`) if missing; sites are registered
   * with `cairn hub add-site`. Off unless asked (`cairn hub` asks unless --insecure).
   */
  readonly secure?: boolean | { readonly dir?: string };
  /** Names and addresses the hub is reached at (its server certificate; default localhost, 127.0.0.1). */
  readonly hosts?: readonly string[];
  /** Address the leaf listener binds (default 127.0.0.1). */
  readonly leafHost?: string;
  /** Secure: re-check the security directory for added sites this often besides watching it (default 10 s). */
  readonly securityRecheckMs?: number;
  /** Site health: a site not reached for longer than this is reported silent (SiteSilent; default 5 min). */
  readonly allowedGapMs?: number;
  /** Site health: how often each site is probed across its leaf link (default 10 s). */
  readonly probeEveryMs?: number;
  /** Global policies: how often each site's version is compared and a newer one offered (default: probeEveryMs, else 10 s). */
  readonly globalPolicyEveryMs?: number;
}

export interface Hub {
  readonly natsUrl: string;
  /** What a site gives as `cairn up --hub`. */
  readonly leafUrl: string;
  readonly gatewayUrl: string;
  readonly gatewayToken: string;
  readonly nats: NatsServerProcess;
  readonly nc: NatsConnection;
  readonly catalogue: RunningCatalogue;
  readonly relay: RunningHubRelay;
  /** Site health (`cairn site list` at the hub). */
  readonly health: SiteHealthWatch;
  /** Global policies: offered to the sites they select, their drift reported (`cairn policy list --global`). */
  readonly globalPolicies: GlobalPolicyPush;
  /** The hub's NATS security material when it runs secure. */
  readonly security?: HubSecurity;
  /** Copies these sites' event streams too. */
  addSites(sites: readonly string[]): Promise<void>;
  /**
   * Secure: applies the security directory now (sites added with `cairn hub add-site` while the
   * hub runs); the hub also does it by itself on a change of the directory. Rejects when
   * nats-server refused the new config (it keeps the previous one).
   */
  reloadSecurity(): Promise<void>;
  stop(): Promise<void>;
}

/** CAIRN_EVT_HUB: the hub's own subjects and, on `cairn.hub.sites.<site>`, every site's events. */
export async function ensureHubStream(nc: NatsConnection): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const name = eventStreamName(HUB_SITE);
  const subjects = [eventSubjectFilter(HUB_SITE), `${HUB_SITES_PREFIX}.*`];
  try {
    const info = await jsm.streams.info(name);
    const missing = subjects.filter((x) => !info.config.subjects?.includes(x));
    if (missing.length) await jsm.streams.update(name, { ...info.config, subjects: [...(info.config.subjects ?? []), ...missing] });
    return;
  } catch (e) {
    if (!(e instanceof JetStreamApiError && e.code === 10059)) throw e;
  }
  await jsm.streams.add({
    name,
    subjects,
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    max_msgs: -1, max_bytes: -1, max_age: 0,
    duplicate_window: 120_000_000_000,
    deny_delete: true,
    deny_purge: true,
    allow_direct: true,
  });
}

export async function startHub(o: HubOptions): Promise<Hub> {
  const say = o.log ?? (() => undefined);
  const dataDir = resolve(o.dataDir);
  for (const d of ['nats', 'catalogue', 'secrets', 'logs']) await mkdir(join(dataDir, d), { recursive: true });
  const logger = o.logger ?? pino({ level: process.env['CAIRN_LOG_LEVEL'] ?? 'info', base: { site: HUB_SITE, pid: process.pid } },
    logFileDestination(join(dataDir, 'logs', 'cairn.log'), say));
  const stops: Array<() => Promise<unknown>> = [];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
    stops.length = 0;
  };
  try {
    const leafPort = o.leafPort ?? await freePort();
    const leafHost = o.leafHost ?? '127.0.0.1';
    let security: HubSecurity | undefined;
    if (o.secure) {
      const dir = (typeof o.secure === 'object' && o.secure.dir) || join(dataDir, 'security');
      security = await initHubSecurity({ dir, sites: o.sites, ...(o.hosts ? { hosts: o.hosts } : {}) });
      say(`security             ok  ${security.dir} (hub CA, mutual TLS, ${security.identities.length} NATS identities, leaf users: ${security.leafSites.join(', ') || 'none yet — cairn hub add-site'})`);
    }
    const sites = security ? security.sites : o.sites;
    // The security part is rendered from site.json (as nats-security.conf holds it) so that a
    // reload renders it the same way; the leaf listener stays as it is (2.9 cannot reload it).
    const rendered = security ? await renderHubSecurity(security.dir, o.sites) : undefined;
    const secureConfig = (securityConfig: string) => [securityConfig, renderHubLeafListener({ host: leafHost, port: leafPort, ...security!.leafTls })].join('\n');
    const nats = await startNatsServer({
      dir: join(dataDir, 'nats'), serverName: 'cairn-hub', domain: HUB_SITE, maxPayload: 8 * 1024 * 1024,
      ...(security ? { scheme: 'tls' as const } : {}),
      extraConfig: rendered
        ? secureConfig(rendered.config)
        : `leafnodes {\n  host: ${JSON.stringify(leafHost)}\n  port: ${leafPort}\n}`,
    });
    stops.push(() => nats.stop());
    const leafUrl = `nats-leaf://${leafHost}:${leafPort}`;
    say(`nats-server          ok  ${nats.url} (domain hub), sites join at ${leafUrl}${security ? ' (mutual TLS, one leaf user per site)' : ''}`);
    // Secure: each client of the hub on its own connection with its own identity.
    const as = async (identity: HubIdentity): Promise<NatsConnection> => {
      const auth: Partial<ConnectionOptions> = security ? identityConnectOptions(security.credentials(identity)) : {};
      if (!security && identity !== 'admin') return nc;
      const own = await connect({ servers: nats.url, name: `${identity}@hub`, maxReconnectAttempts: -1, ...auth });
      stops.push(() => own.drain());
      return own;
    };
    const nc = await as('admin');
    await ensureHubStream(nc);
    const relay = startHubRelay({ nc: await as('hub-relay'), hubStream: eventStreamName(HUB_SITE), sites: sites.map((x) => assertSite(x)), logger: logger.child({ name: 'hub-relay' }) });
    stops.push(() => relay.stop());
    let watch: HubSecurityWatch | undefined;
    if (security && rendered) {
      const w = watchHubSecurity({
        dir: security.dir, sites: o.sites, applied: rendered, extraConfig: secureConfig, nats, relay, say,
        logger: logger.child({ name: 'hub-security' }), ...(o.securityRecheckMs ? { recheckMs: o.securityRecheckMs } : {}),
      });
      watch = w;
      stops.push(async () => w.stop());
    }
    const catalogueNc = await as('catalogue');
    const log = await createJetStreamEventLog({ nc: catalogueNc, site: HUB_SITE, allSites: true, createStream: false });
    stops.push(() => log.close());
    const catalogue = await startCatalogue({ nc: catalogueNc, site: HUB_SITE, dataDir: join(dataDir, 'catalogue'), log, logger: logger.child({ name: 'catalogue' }) });
    stops.push(() => catalogue.close());
    // Site health: probes across the leaf links as the relay does (its identity), records silences in the hub's own log.
    const hubLog = await createJetStreamEventLog({ nc, site: HUB_SITE, createStream: false });
    stops.push(() => hubLog.close());
    const health = startSiteHealthWatch({
      probeNc: await as('hub-relay'), queryNc: nc, relay, log: hubLog, catalogue: new CatalogueClient(nc, { site: HUB_SITE }),
      allowedGapMs: o.allowedGapMs ?? 5 * 60_000, probeEveryMs: o.probeEveryMs ?? 10_000, logger: logger.child({ name: 'site-health' }),
      ...(security ? {
        registeredGaps: () => registeredAllowedGaps(security!.dir),
        // A secure hub: SetSiteAllowedGap must be signed by the hub's admin identity (`cairn --data <hub> site set-gap`).
        commandAuthorizer: new SignedCommandPolicy({
          log: hubLog, site: HUB_SITE, serviceActor: { kind: 'service', id: 'site-watch@hub' },
          serviceKeys: new Map([[signerFromSeed((await readFile(security.credentials('admin').seedFile, 'utf8')).trim()).publicKey, 'admin']]),
        }),
      } : {}),
    });
    stops.push(() => health.stop());
    await health.listen();
    // Global policies: the statements in the hub's log offered to the sites they select (checked there).
    const securityDir = security?.dir;
    const globalPolicies = startGlobalPolicyPush({
      nc, log: hubLog, catalogue: new CatalogueClient(nc, { site: HUB_SITE }), relay,
      tags: async () => (securityDir ? hubSiteTags(securityDir) : {}),
      everyMs: o.globalPolicyEveryMs ?? o.probeEveryMs ?? 10_000, logger: logger.child({ name: 'global-policies' }),
    });
    stops.push(() => globalPolicies.stop());
    const gatewayToken = process.env['CAIRN_API_TOKEN'] ?? randomBytes(24).toString('base64url');
    await writeFile(join(dataDir, 'secrets', 'api.token'), gatewayToken + '\n', { mode: 0o600 });
    const gateway: RunningGateway = await startGateway({ nc: await as('gateway'), site: HUB_SITE, accessRecovery: false, token: gatewayToken, port: o.gatewayPort ?? 0, host: '127.0.0.1', logger: logger.child({ name: 'gateway' }) });
    stops.push(() => gateway.close());
    const state: StackState = { natsUrl: nats.url, site: HUB_SITE, gatewayUrl: gateway.url, pid: process.pid, dataDir, ...(security ? { securityDir: security.dir } : {}) };
    await writeFile(join(dataDir, STATE_FILE), JSON.stringify(state, null, 2) + '\n');
    return {
      natsUrl: nats.url, leafUrl, gatewayUrl: gateway.url, gatewayToken, nats, nc, catalogue, relay, health, globalPolicies,
      ...(security ? { security } : {}),
      addSites: async (sites) => { for (const x of sites) relay.addSite(x); },
      reloadSecurity: async () => { await watch?.check(); },
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
