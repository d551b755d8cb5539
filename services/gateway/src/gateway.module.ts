// The gateway as a Nest module (controllers, global validation pipe, bearer guard, problem
// filter) and `startGateway`, which runs it over HTTP for `cairn up` or as its own service.
import type { Server } from 'node:http';
import { Module, type DynamicModule } from '@nestjs/common';
import { APP_FILTER, APP_GUARD, APP_PIPE, NestFactory } from '@nestjs/core';
import { ExpressAdapter, type NestExpressApplication } from '@nestjs/platform-express';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { JetStreamApiError, jetstreamManager } from '@nats-io/jetstream';
import { workStreamName } from '@cairn/jobs';
import { CommandBus, cancelFileStream, pullFileStream, trackConnection, type NatsConnectionState } from '@cairn/messaging';
import { correlatedLogOptions } from '@cairn/telemetry';
import { createJetStreamEventLog, eventProvenanceOf, type EventLog } from '@cairn/eventlog';
import { CatalogueClient } from '@cairn/catalogue-client';
import { pino, type Logger } from 'pino';
import { gatewayConfig, type GatewayConfig, type GatewayConfigInput } from './gateway.config.ts';
import { GATEWAY_AUDIT_CHAIN, GATEWAY_AUTH, GATEWAY_CATALOGUE, GATEWAY_COMMANDS, GATEWAY_CONFIG, GATEWAY_EVENTS, GATEWAY_HEALTH, GATEWAY_LOGGER, GATEWAY_RESTORE_JOBS, GATEWAY_WORK_QUEUE, GATEWAY_FILE_STREAMS, GATEWAY_SITE_HEALTH, GATEWAY_COMMAND_RELAY } from './gateway.tokens.ts';
import { RestoreJobsController, type RestoreJobReader } from './restore-jobs.controller.ts';
import { InstantController } from './instant.controller.ts';
import { restoreJobReader } from './restore-job.reader.ts';
import { FilesController, type FileStreamSource } from './files.controller.ts';
import { GatewayService, type CatalogueQueries, type CommandSender } from './gateway.service.ts';
import { EdgeValidationPipe } from './edge-validation.pipe.ts';
import { AuthGuard, Authenticator } from './auth.guard.ts';
import { IdentityController } from './identity.controller.ts';
import { serveApprovalCommands } from './approval-commands.ts';
import { IdentityStore } from './identity.store.ts';
import { OidcVerifier } from './oidc.ts';
import { ProblemFilter } from './problem.filter.ts';
import { serveAccessRecovery } from './access-recovery.ts';
import { ProblemError } from './problem.ts';
import { requestContext } from './request-context.middleware.ts';
import { refuseCredentialsInUrl, securityHeaders } from './edge-hardening.ts';
import { SystemController, type HealthProbe } from './system.controller.ts';
import { InventoryController } from './inventory.controller.ts';
import { JobsController } from './jobs.controller.ts';
import { PoliciesController } from './policies.controller.ts';
import { AuditController } from './audit.controller.ts';
import { gatewayOpenApiDocument } from './gateway.openapi.ts';
import { MetricsController } from './metrics.controller.ts';
import { MetricsService, type WorkQueueProbe } from './metrics.service.ts';
import { SessionController } from './session.controller.ts';
import { EventFeed, EventsController, type EventFeedSource } from './events.controller.ts';
import { mountConsole } from './console.static.ts';
import { AuditChainController, type AuditChainProbe } from './audit-chain.controller.ts';
import { OidcLoginController } from './oidc-login.controller.ts';
import { SitesController, natsSiteHealth, type SiteHealthSource } from './sites.controller.ts';
import { CommandRelayController, natsCommandRelay, type CommandRelay } from './command-relay.controller.ts';
import { natsServers, progressSubject } from '@cairn/contracts';

export interface GatewayDeps {
  readonly config: GatewayConfig;
  readonly logger: Logger;
  readonly catalogue: CatalogueQueries;
  readonly commands: CommandSender;
  readonly nc: { isClosed(): boolean };
  /** Depth of the site's work queue for /metrics (reported as NaN when not given). */
  readonly workQueue?: WorkQueueProbe;
  /** Users, tokens, OIDC and the security events they cause. */
  readonly auth: Authenticator;
  /** The log and progress messages the console's live feed streams (503 on the feed when absent). */
  readonly events?: EventFeedSource;
  /** Verifies the site's audit chain for GET /v1/audit/chain (503 there when absent). */
  readonly auditChain?: AuditChainProbe;
  /** Whether the NATS connection is up now (default: connected unless closed). */
  readonly connection?: () => NatsConnectionState;
  /** The nats-server its host process supervises (`cairn up`), for /health. */
  readonly natsServer?: () => SupervisedNatsServer;
  /** Restore jobs read from the log (GET /v1/restore-jobs/:id answers 503 without it). */
  readonly restoreJobs?: RestoreJobReader;
  /** Where file downloads are pulled from (the file download routes answer 503 without it). */
  readonly fileStreams?: FileStreamSource;
  /** At the hub: every site's health (GET /v1/sites/health answers 404 without it). */
  readonly siteHealth?: SiteHealthSource;
  /** Relays commands people signed in the browser, unchanged (POST /v1/sites/:site/commands answers 503 without it). */
  readonly commandRelay?: CommandRelay;
}

/** What a supervisor says about the nats-server it started and restarts. */
export interface SupervisedNatsServer {
  readonly state: 'running' | 'restarting' | 'stopped';
  readonly restarts: number;
  readonly lastExit?: { readonly code: number | null; readonly signal: string | null; readonly at: string };
  readonly lastRestartAt?: string;
}

/** The console feed's source over the site's log and the data movers' progress messages. */
export function eventFeedSource(log: EventLog, nc: NatsConnection, site: string): EventFeedSource {
  const prefix = progressSubject(site, 'x').slice(0, -1);
  return {
    headPosition: () => log.headPosition(),
    subscribe: (o) => log.subscribe({ from: o.from }),
    progress(onProgress) {
      const sub = nc.subscribe(`${prefix}*`, {
        callback: (err, msg) => {
          if (err) return;
          try {
            onProgress(msg.subject.slice(prefix.length), msg.json());
          } catch {
            // a malformed progress message is not worth a console's stream
          }
        },
      });
      return () => sub.unsubscribe();
    },
  };
}

const NO_WORK_QUEUE: WorkQueueProbe = { pending: () => Promise.resolve(NaN) };

/** Messages in the site's JetStream work stream; 0 while the stream does not exist. */
export function jetStreamWorkQueue(nc: NatsConnection, site: string): WorkQueueProbe {
  const stream = workStreamName(site);
  return {
    async pending() {
      const jsm = await jetstreamManager(nc);
      try {
        return (await jsm.streams.info(stream)).state.messages;
      } catch (e) {
        if (e instanceof JetStreamApiError && e.code === 10059) return 0; // stream not found
        throw e;
      }
    },
  };
}

/** How long /health waits for the catalogue's status before it says the catalogue does not answer. */
const HEALTH_QUERY_MS = 3000;

function healthProbe(deps: GatewayDeps): HealthProbe {
  const doc = gatewayOpenApiDocument();
  return {
    openApi: () => doc,
    async health() {
      const nats: NatsConnectionState = deps.connection ? deps.connection() : deps.nc.isClosed() ? 'closed' : 'connected';
      const natsServer = deps.natsServer?.();
      let catalogue: { reachable: boolean; position?: number; lag?: number; detail?: string };
      if (nats !== 'connected') {
        catalogue = { reachable: false, detail: `not asked: the connection to NATS is ${nats}` };
      } else {
        // A probe answers promptly: a catalogue still reconnecting is reported, not waited for.
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`no answer within ${HEALTH_QUERY_MS / 1000} s`)), HEALTH_QUERY_MS); });
        try {
          const s = await Promise.race([deps.catalogue.query('catalogue.status', {}), late]);
          catalogue = { reachable: true, position: s.position, lag: s.lag };
        } catch (e) {
          catalogue = { reachable: false, detail: (e as Error).message };
        } finally {
          clearTimeout(timer);
        }
      }
      const ok = nats === 'connected' && catalogue.reachable && (!natsServer || natsServer.state === 'running');
      return { status: ok ? 'ok' : 'degraded', site: deps.config.site, nats, ...(natsServer ? { natsServer } : {}), catalogue };
    },
  };
}

@Module({})
export class GatewayModule {
  static forRoot(deps: GatewayDeps): DynamicModule {
    return {
      module: GatewayModule,
      controllers: [SystemController, InventoryController, JobsController, RestoreJobsController, InstantController, PoliciesController, AuditController, MetricsController, IdentityController, SessionController, OidcLoginController, EventsController, AuditChainController, FilesController, SitesController, CommandRelayController],
      providers: [
        { provide: GATEWAY_CONFIG, useValue: deps.config },
        { provide: GATEWAY_LOGGER, useValue: deps.logger },
        { provide: GATEWAY_CATALOGUE, useValue: deps.catalogue },
        { provide: GATEWAY_COMMANDS, useValue: deps.commands },
        { provide: GATEWAY_HEALTH, useValue: healthProbe(deps) },
        { provide: GATEWAY_WORK_QUEUE, useValue: deps.workQueue ?? NO_WORK_QUEUE },
        { provide: GATEWAY_AUTH, useValue: deps.auth },
        { provide: GATEWAY_EVENTS, useValue: deps.events },
        { provide: GATEWAY_AUDIT_CHAIN, useValue: deps.auditChain },
        { provide: GATEWAY_SITE_HEALTH, useValue: deps.siteHealth },
        { provide: GATEWAY_COMMAND_RELAY, useValue: deps.commandRelay },
        ...(deps.restoreJobs ? [{ provide: GATEWAY_RESTORE_JOBS, useValue: deps.restoreJobs }] : []),
        ...(deps.fileStreams ? [{ provide: GATEWAY_FILE_STREAMS, useValue: deps.fileStreams }] : []),
        GatewayService,
        MetricsService,
        EventFeed,
        { provide: APP_PIPE, useClass: EdgeValidationPipe },
        { provide: APP_GUARD, useClass: AuthGuard },
        { provide: APP_FILTER, useClass: ProblemFilter },
      ],
    };
  }
}

/** Builds the HTTP application (not listening yet): for startGateway and for tests. */
export async function createGatewayApp(deps: GatewayDeps): Promise<NestExpressApplication> {
  const app = await NestFactory.create<NestExpressApplication>(GatewayModule.forRoot(deps), new ExpressAdapter(), {
    bodyParser: false, logger: false, abortOnError: false,
  });
  const express = app.getHttpAdapter().getInstance() as { disable(setting: string): void };
  express.disable('x-powered-by');
  app.use(securityHeaders());
  app.use(requestContext(deps.logger));
  app.use(refuseCredentialsInUrl());
  mountConsole(app, deps.config.consoleDir);
  app.useBodyParser('json', { limit: deps.config.bodyLimitBytes, type: ['application/json', 'application/*+json'] });
  // A POST whose body is not JSON reaches no parser: refuse it before validation says "required".
  app.use((req: { method: string; headers: Record<string, unknown> }, _res: unknown, next: (e?: unknown) => void) => {
    const type = String(req.headers['content-type'] ?? '');
    const length = Number(req.headers['content-length'] ?? 0);
    if (req.method === 'POST' && length > 0 && !/^application\/([a-z.+-]*\+)?json\b/i.test(type)) {
      next(new ProblemError(415, 'unsupported-media-type', `send the body as application/json (got ${type || 'no Content-Type'})`));
      return;
    }
    next();
  });
  return app;
}

export interface StartGatewayOptions extends Omit<GatewayConfigInput, 'site' | 'token'> {
  readonly site: string;
  readonly token: string;
  /** NATS server URL (ignored when `nc` is given). */
  readonly natsUrl?: string;
  /** An open connection to share (not closed by `close()`). */
  readonly nc?: NatsConnection;
  /**
   * Four-eyes approvals, operator keys and administrator roles need the people's own signatures
   * (default: when the connection checks event provenance, a secure site; docs/security.md).
   */
  readonly signedApprovals?: boolean;
  /** The site's event log (users, tokens, approvals, security events); opened on `nc` when not given. */
  readonly log?: EventLog;
  readonly logger?: Logger;
  /** Verifies the audit chain for GET /v1/audit/chain (`cairn up` gives the audit bridge's). */
  readonly auditChain?: AuditChainProbe;
  /** The nats-server its host process supervises (`cairn up`), reported by /health. */
  readonly natsServer?: () => SupervisedNatsServer;
  /** Answer RecoverAccess over NATS (default true; the hub's gateway has no operator keys to honour). */
  readonly accessRecovery?: boolean;
}

export interface RunningGateway {
  /** Base URL, e.g. `http://127.0.0.1:8080`. */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

export async function startGateway(options: StartGatewayOptions): Promise<RunningGateway> {
  const config = gatewayConfig(options);
  const logger = (options.logger ?? pino({ name: 'gateway', level: process.env.CAIRN_LOG_LEVEL ?? 'info', ...correlatedLogOptions })).child({ service: 'gateway', site: config.site });
  let nc = options.nc;
  let ownNc: NatsConnection | undefined;
  let ownLog: EventLog | undefined;
  let identities: IdentityStore | undefined;
  let recovery: { close(): Promise<void> } | undefined;
  let approvals: { close(): Promise<void> } | undefined;
  if (!nc) {
    if (!options.natsUrl) throw new TypeError('startGateway: give natsUrl or nc');
    ownNc = await connect({ servers: natsServers(options.natsUrl), name: `gateway@${config.site}` });
    nc = ownNc;
  }
  try {
    const catalogue = new CatalogueClient(nc, { site: config.site, timeoutMs: Math.min(config.timeoutMs, 10_000) });
    const commands = new CommandBus(nc, { site: config.site, defaultTimeoutMs: config.timeoutMs, maxMessageBytes: config.bodyLimitBytes * 2 });
    const serviceActor = { kind: 'service' as const, id: `gateway@${config.site}` };
    if (!options.log) {
      ownLog = await createJetStreamEventLog({ nc, site: config.site });
    }
    const log = options.log ?? ownLog!;
    identities = new IdentityStore({ log, site: config.site, serviceActor, signatures: options.signedApprovals ?? Boolean(eventProvenanceOf(nc)?.verify), onError: (e) => logger.error({ err: e }, 'identity projection stopped') });
    identities.start();
    const bootstrap = await identities.ensureBootstrap(config.user, config.token);
    if (bootstrap === 'revoked') logger.warn({ user: config.user }, 'the bootstrap administrator token was revoked: it is not issued again');
    const auth = new Authenticator(identities, serviceActor, logger, config.oidc ? new OidcVerifier(config.oidc) : undefined, { limit: config.authFailureLimit });
    const app = await createGatewayApp({
      config, logger, catalogue, commands, nc, workQueue: jetStreamWorkQueue(nc, config.site), auth, events: eventFeedSource(log, nc, config.site), restoreJobs: restoreJobReader(log),
      fileStreams: { pull: (id, first) => pullFileStream(nc, config.site, id, { first }), cancel: (id) => cancelFileStream(nc, config.site, id) },
      ...(options.auditChain ? { auditChain: options.auditChain } : {}),
      ...(config.site === 'hub' ? { siteHealth: natsSiteHealth(nc, Math.min(config.timeoutMs, 15_000)) } : {}),
      commandRelay: natsCommandRelay(nc),
      connection: trackConnection(nc), ...(options.natsServer ? { natsServer: options.natsServer } : {}),
    });
    if (options.accessRecovery !== false) recovery = await serveAccessRecovery({ nc, site: config.site, identities });
    // Four-eyes over NATS, for administrators at the hub (not at the hub itself: it has no acts to approve).
    if (options.accessRecovery !== false) approvals = await serveApprovalCommands({ nc, site: config.site, identities, controller: app.get(IdentityController) });
    await app.listen(config.port, config.host);
    const address = app.getHttpServer().address() as { port: number };
    const host = config.host.includes(':') ? `[${config.host}]` : config.host;
    const url = `http://${host}:${address.port}`;
    logger.info({ url }, 'gateway listening');
    let closing: Promise<void> | undefined;
    return {
      url,
      port: address.port,
      close: () => (closing ??= (async () => {
        // Nest ends the live feeds first, then waits for the HTTP server's connections; one that
        // opened in between (a console's feed reconnecting at that moment) or a download would
        // hold the close for as long as its client stays: open requests get 2 s, then are cut.
        const server = app.getHttpServer() as Server;
        const cut = setTimeout(() => server.closeAllConnections(), 2_000);
        cut.unref();
        await app.close().finally(() => clearTimeout(cut));
        await recovery?.close();
        await approvals?.close();
        auth.close();
        await identities?.stop();
        await ownLog?.close();
        await ownNc?.drain();
      })()),
    };
  } catch (e) {
    await recovery?.close().catch(() => undefined);
    await approvals?.close().catch(() => undefined);
    await identities?.stop().catch(() => undefined);
    await ownLog?.close().catch(() => undefined);
    await ownNc?.drain().catch(() => undefined);
    throw e;
  }
}
