// The embedded default (`cairn up`): one nats-server started locally (or a NATS URL given),
// every service in this process, the repository and all state under one data directory.
// Production runs the same services as separate processes; nothing here is special to them.
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { pino, type Logger } from 'pino';
import { startNatsCluster, startNatsServer, type NatsCluster, type NatsServerProcess } from '@cairn/nats-server';
import {
  identityConnectOptions, identityPublicKeys, initSiteSecurity, loadLeafCredentials, probeLeafListener, renderLeafRemote, servicePublicKeys,
  type Identity, type LeafCredentials, type SiteSecurity,
} from '@cairn/nats-security';
import { correlatedLogOptions, setupTracing } from '@cairn/telemetry';
import { bindCommandSecurity, type CommandSigner } from '@cairn/command-auth';
import { compileEventChecksWhenIdle, natsServers, newEvent, type Actor, type NotificationRoute } from '@cairn/contracts';
import { bindEventProvenance, createJetStreamEventLog, handleCommand, eventSignerFromSeed, startEventSigning, type EventLog, type ProvenanceKeys } from '@cairn/eventlog';
import { DirectoryBackend, initRepository, openRepository, RepositoryNotFoundError, type Backend, type Repository } from '@cairn/repository';
import { startScheduler, type RunningScheduler } from '@cairn/scheduler';
import { startDataMover, type RunningDataMover } from '@cairn/data-mover';
import { instantExporter } from './instant-exporter.ts';
import { startCatalogue, type RunningCatalogue } from '@cairn/catalogue';
import { startGateway, type RunningGateway } from '@cairn/gateway';
import { auditStream, readAuditChain, startAuditBridge, type AuditTargetSpec, type RunningAuditBridge } from '@cairn/audit-bridge';
import { verifyChain } from '@cairn/audit';
import { parseCoordinatorConfig, startSnapshotCoordinator, type RunningCoordinator } from '@cairn/snapshot-coordinator';
import { startReplication, type RunningReplication } from '@cairn/replication';
import { startNotifier, type RunningNotifier } from '@cairn/notifier';
import { replicaLocator } from './replicas.ts';
import { STATE_FILE, operator, type StackState } from '../session.ts';
import { ensureOperator, operatorRootKey } from './operator-bootstrap.ts';
import { combinedSupervision, superviseNats, type NatsSupervision, type NatsSupervisor } from './nats-supervisor.ts';
import { markUnverifiedCommands, secureServiceCommands } from './command-security.ts';
import { restorePlaces } from './restore-places.ts';
import { secureEventProvenance } from './event-provenance.ts';
import { flushLogFile, logFileDestination } from './log-file.ts';

export interface StackOptions {
  readonly dataDir: string;
  /** Restore roots besides `<data>/restores` (default: CAIRN_RESTORE_ROOTS). */
  readonly restoreRoots?: readonly string[];
  readonly site?: string;
  /** Join this NATS instead of starting one (a cluster's members' URLs joined by commas). */
  readonly natsUrl?: string;
  /**
   * Start a NATS cluster of this many members (routes on loopback, R3 streams) instead of one
   * nats-server; every service connects to all of them (`cairn up --cluster 3`).
   */
  readonly cluster?: number;
  /** Gateway port (default: a free one). */
  readonly gatewayPort?: number;
  /** QMP sockets of QEMU instances to back up (and their guest agents: quiescing, files written back). */
  readonly qemu?: ReadonlyArray<{ readonly qmpSocket: string; readonly host?: string; readonly guestAgentSocket?: string }>;
  /** File-level restore on the data mover: appliance idle time and how many at once (tests shorten them). */
  readonly files?: { readonly idleMs?: number; readonly maxSessions?: number };
  /** libvirt connections whose domains to protect (`cairn up --libvirt qemu:///system`). */
  readonly libvirt?: ReadonlyArray<{ readonly uri: string; readonly name?: string }>;
  /** Shorter leases and timeouts (tests). */
  readonly leaseMs?: number;
  readonly log?: (line: string) => void;
  /** SIEM targets of the audit bridge, besides the tamper-evident chain it always keeps. */
  readonly auditTargets?: readonly AuditTargetSpec[];
  /** Bandwidth of backup and restore transfers: this host's and the site's (cairn.yaml `bandwidth`). */
  readonly bandwidth?: { readonly hostBytesPerSec?: number; readonly siteBytesPerSec?: number };
  /** The catalogue's read models in this PostgreSQL database (cairn.yaml `catalogue`; default an SQLite file). */
  readonly cataloguePostgresUrl?: string;
  /** Backup jobs at once on one hypervisor host (cairn.yaml `concurrency.maxJobsPerHost`; default 2). */
  readonly maxJobsPerHost?: number;
  /** Backup jobs at once into one repository (cairn.yaml `concurrency.maxJobsPerRepository`; default none). */
  readonly maxJobsPerRepository?: number;
  /** Notification routes to record at start (cairn.yaml `notifications.routes`): added, or replaced where they differ. */
  readonly notificationRoutes?: readonly NotificationRoute[];
  /** Services to leave out (run elsewhere, e.g. as separate processes). */
  readonly without?: ReadonlyArray<'scheduler' | 'data-mover'>;
  /** Wraps the event-log client each service is given (tests observe what a service reads here). */
  readonly wrapLog?: (service: Identity, log: EventLog) => EventLog;
  /** Wraps the repository backend (tests inject faults here). */
  readonly wrapBackend?: (backend: Backend) => Backend;
  /** Where services log (default: <data>/logs/cairn.log). */
  readonly logger?: Logger;
  /**
   * Join a hub as a leaf node (`nats-leaf://host:port`): the started nats-server gets the
   * site as its JetStream domain and a leaf remote to the hub (see docs/sites.md).
   */
  readonly hub?: string;
  /**
   * The site's leaf credential bundle from the hub (`cairn hub add-site <site> --out <dir>`):
   * the leaf remote then uses TLS with the site's leaf certificate, trusting the hub CA, as the
   * site's leaf user. Required when the hub's leaf listener asks for TLS.
   */
  readonly hubCredentials?: string;
  /** Scheduled verify jobs of the data mover (default: daily, restore points not verified in 30 days, every chunk). */
  readonly verify?: { readonly everyMs?: number; readonly olderThanDays?: number; readonly sample?: number };
  /** Replication consumers' ack wait and longest retry delay (tests shorten them). */
  readonly replication?: { readonly ackWaitMs?: number; readonly maxRetryDelayMs?: number; readonly recordReceived?: boolean };
  /** Keys of other sites' repositories copied here, for disaster recovery (else from secrets/replica-<site>.passphrase). */
  readonly replicaPassphrases?: Readonly<Record<string, string>>;
  /**
   * NATS with mutual TLS and one least-privilege identity per service (docs/security.md):
   * the site CA, certificates and nkeys are created in `<data>/security` (or `dir`) on first
   * start, or taken from there when `cairn site init` made them. Off by default for now.
   */
  readonly secure?: boolean | { readonly dir?: string };
  /** Secure stacks: the local operator who gets a user and key (default CAIRN_USER or the OS user). */
  readonly operator?: Actor;
  /** Start nats-server in its own process group (`cairn up`: a Ctrl-C reaches only the stack, which stops it last). */
  readonly ownProcessGroups?: boolean;
  /** Waits between restart attempts of a nats-server that exited unasked (./nats-supervisor.ts). */
  readonly natsRestartBackoffMs?: readonly number[];
}

export interface ServiceHealth { readonly service: string; readonly status: string; readonly detail?: unknown }

export interface Stack {
  readonly site: string;
  readonly natsUrl: string;
  readonly gatewayUrl: string;
  readonly gatewayToken: string;
  readonly dataDir: string;
  readonly logFile: string;
  readonly nc: NatsConnection;
  readonly log: EventLog;
  readonly repository: Repository;
  readonly passphrase: string;
  readonly coordinator: RunningCoordinator;
  readonly replication: RunningReplication;
  /** The data mover (absent when it runs elsewhere). */
  readonly mover?: RunningDataMover;
  /** The nats-server this stack started (absent when it joined a NATS given by URL; the first member of a cluster). */
  readonly nats?: NatsServerProcess;
  /** The NATS cluster this stack started (`cluster`). */
  readonly natsCluster?: NatsCluster;
  /** Its supervision: restarted when it exits unasked (absent when it joined a NATS given by URL). */
  readonly natsSupervision?: () => NatsSupervision;
  /** The site's NATS security material when the stack runs secure. */
  readonly security?: SiteSecurity;
  /**
   * Secure stacks: the local operator (administrator) and the key its commands are signed with;
   * `nc` signs with it, so commands sent on it must name this actor.
   */
  readonly operator?: { readonly actor: Actor; readonly signer: CommandSigner; readonly keyFile: string };
  health(): Promise<ServiceHealth[]>;
  stop(): Promise<void>;
}

/** Waits until JetStream answers on this connection (a cluster's meta leader is elected). */
async function jetStreamReady(nc: NatsConnection, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      // jetstreamManager asks the server for the account's JetStream info.
      await jetstreamManager(nc, { timeout: 2000 });
      return;
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`JetStream did not answer within ${timeoutMs / 1000} s: ${(e as Error).message}`, { cause: e });
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

async function secret(file: string, make: () => string): Promise<string> {
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch {
    const value = make();
    await writeFile(file, value + '\n', { mode: 0o600 });
    await chmod(file, 0o600);
    return value;
  }
}

export async function startStack(options: StackOptions): Promise<Stack> {
  const say = options.log ?? (() => undefined);
  // A long-lived process: event checks compiled when quiet, not inside a job (validate.ts).
  compileEventChecksWhenIdle();
  const dataDir = resolve(options.dataDir);
  const site = options.site ?? 'local';
  const dirs = {
    nats: join(dataDir, 'nats'),
    repository: join(dataDir, 'repository'),
    secrets: join(dataDir, 'secrets'),
    catalogue: join(dataDir, 'catalogue'),
    coordinator: join(dataDir, 'coordinator'),
    restores: join(dataDir, 'restores'),
    logs: join(dataDir, 'logs'),
    replicas: join(dataDir, 'replicas'),
  };
  for (const d of Object.values(dirs)) await mkdir(d, { recursive: true });
  await chmod(dirs.secrets, 0o700);
  // Structured logs of every service go to one file; the terminal gets the summary lines.
  const logFile = join(dirs.logs, 'cairn.log');
  const destination = logFileDestination(logFile, say);
  // Spans of every job (exported when OTEL_TRACES_EXPORTER says so); each log line carries the
  // trace, span and job it was written under.
  const tracing = setupTracing();
  const logger: Logger = options.logger ?? pino({ level: process.env['CAIRN_LOG_LEVEL'] ?? 'info', base: { site, pid: process.pid }, ...correlatedLogOptions }, destination);
  const stops: Array<() => Promise<unknown>> = [];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
    stops.length = 0;
    await rm(join(dataDir, STATE_FILE), { force: true });
    flushLogFile(destination);
    await tracing.provider.forceFlush().catch(() => undefined);
  };
  try {
    let nats: NatsServerProcess | undefined;
    let supervisor: NatsSupervisor | undefined;
    let natsCluster: NatsCluster | undefined;
    let memberSupervisors: NatsSupervisor[] = [];
    /** Set once the event log is open: records a restart of nats-server as an event. */
    const restarts: { record?: (r: { exitCode: number | null; signal: string | null; downMs: number; attempts: number }) => Promise<void> } = {};
    let natsUrl = options.natsUrl;
    let security: SiteSecurity | undefined;
    // The leaf link to the hub: TLS with the site's leaf credentials, or plain to a hub that asks for none.
    let leaf: LeafCredentials | undefined;
    if (options.hub && !natsUrl) {
      if (options.hubCredentials) {
        leaf = await loadLeafCredentials(options.hubCredentials);
        if (leaf.site !== site) throw new Error(`the hub credentials in ${options.hubCredentials} are site ${leaf.site}'s, not ${site}'s`);
      } else {
        const info = await probeLeafListener(options.hub);
        if (info?.tlsRequired) {
          throw new Error(`the hub at ${options.hub} requires TLS and a leaf user for each site: pass --hub-credentials <dir> with this site's bundle, made on the hub by \`cairn hub add-site ${site} --peers <sites> --out <dir>\` (docs/sites.md)`);
        }
        say(`hub link             note: ${info ? 'the hub asks for no TLS (cairn hub --insecure): the leaf link is plain' : `the hub at ${options.hub} is not reachable now; joining without leaf credentials (a secure hub will refuse this site)`}`);
      }
    }
    if (options.secure) {
      const dir = (typeof options.secure === 'object' && options.secure.dir) || join(dataDir, 'security');
      security = await initSiteSecurity({ dir, site, ...(leaf?.peers?.length ? { peers: leaf.peers } : {}) });
      say(`security             ok  ${security.dir} (site CA, mutual TLS, ${security.identities.length} NATS identities)`);
    }
    if (!natsUrl) {
      // One supervisor per nats-server: each is started again on its own ports and store.
      const supervise = (server: () => NatsServerProcess | undefined, member: string) => superviseNats(server, {
        say: (line) => say(member === 'nats-server' ? line : line.replace('nats-server         ', member.padEnd(20))),
        ...(options.natsRestartBackoffMs ? { backoffMs: options.natsRestartBackoffMs } : {}),
        onExit: (x) => logger.error({ member, exitCode: x.code, signal: x.signal, pid: x.pid }, 'nats-server exited unasked; restarting it'),
        onAttemptFailed: (n, e) => logger.error({ member, attempt: n, err: e }, 'nats-server did not start again; retrying'),
        onRestarted: (r) => {
          logger.warn({ member, attempts: r.attempts, downMs: r.downMs, pid: r.pid }, 'nats-server restarted');
          void restarts.record?.({ exitCode: r.exit.code, signal: r.exit.signal, downMs: r.downMs, attempts: r.attempts })
            .catch((e: unknown) => logger.error({ err: e }, 'NatsServerRestarted not recorded'));
        },
      });
      const serverOptions = {
        maxPayload: 8 * 1024 * 1024,
        ...(options.ownProcessGroups ? { ownProcessGroup: true } : {}),
        // A site joined to a hub: its own JetStream domain, a leaf remote to the hub.
        ...(options.hub ? { domain: site } : {}),
        ...(security ? { scheme: 'tls' as const } : {}),
        extraConfig: [
          security ? await readFile(security.configFile, 'utf8') : '',
          options.hub ? renderLeafRemote(options.hub, leaf) : '',
        ].filter(Boolean).join('\n'),
      };
      if (options.cluster && options.cluster > 1) {
        const size = options.cluster;
        memberSupervisors = Array.from({ length: size }, (_, i) => supervise(() => natsCluster?.members[i], `nats-server-${i + 1}`));
        natsCluster = await startNatsCluster({
          ...serverOptions, dir: dirs.nats, size, name: `cairn-${site}`,
          onUnexpectedExit: (i, x) => memberSupervisors[i]?.exited(x),
        });
        nats = natsCluster.members[0];
        supervisor = combinedSupervision(memberSupervisors);
        natsUrl = natsCluster.url;
        stops.push(() => { for (const m of memberSupervisors) m.stop(); return natsCluster!.stop(); });
        natsCluster.members.forEach((m, i) => say(`${`nats-server-${i + 1}`.padEnd(20)} ok  ${m.url} (${natsCluster!.names[i]}, JetStream in ${m.storeDir})`));
        say(`nats cluster         ok  ${size} members, routes on loopback, streams R${Math.min(3, size)}${options.hub ? `, leaf of hub ${options.hub}, domain ${site}` : ''}`);
      } else {
        supervisor = supervise(() => nats, 'nats-server');
        nats = await startNatsServer({ ...serverOptions, dir: dirs.nats, serverName: `cairn-${site}`, onUnexpectedExit: (x) => supervisor?.exited(x) });
        natsUrl = nats.url;
        stops.push(() => { supervisor?.stop(); return nats!.stop(); });
        say(`nats-server          ok  ${natsUrl} (JetStream in ${nats.storeDir})${options.hub ? `, leaf of hub ${options.hub}${leaf ? ` (TLS, leaf user ${leaf.user})` : ''}, domain ${site}` : ''}`);
      }
    }
    const nc = await connect({ servers: natsServers(natsUrl), name: `cairn-up-${site}`, maxReconnectAttempts: -1, ...(security ? identityConnectOptions(security.credentials('admin')) : {}) });
    stops.push(() => nc.drain());
    // A new cluster answers JetStream requests once its members have elected a meta leader.
    if (natsCluster) await jetStreamReady(nc, 60_000);
    const log = await createJetStreamEventLog({ nc, site });
    stops.push(() => log.close());
    // Secure: every event is signed by its writer and checked by its readers, from the recorded
    // cut-over on (the first start of a secure site records it; older unsigned events are legacy).
    let provenanceKeys: ProvenanceKeys | undefined;
    if (security) {
      const keys = await identityPublicKeys(security.dir);
      bindEventProvenance(nc, { signer: eventSignerFromSeed('admin', await readFile(security.credentials('admin').seedFile, 'utf8')) });
      // The local operator is the site's root operator: every endorsement chain starts there.
      const rootOperator = await operatorRootKey({ secretsDir: dirs.secrets, userId: (options.operator ?? operator()).id, site });
      provenanceKeys = { keys, legacyBefore: await startEventSigning(log, { site, keys, ...(rootOperator ? { rootOperator } : {}) }) };
      await secureEventProvenance({ security, identity: 'admin', nc, keys: provenanceKeys, logger });
    }
    restarts.record = async (r) => {
      const event = newEvent('NatsServerRestarted', { ...r, restarts: supervisor?.status().restarts ?? 1 }, {
        site, actor: { kind: 'service', id: `cairn-up@${site}` }, streamId: `supervisor-${site}`,
      });
      // Recorded as soon as the server is back, which can be before this connection has
      // reconnected and JetStream has recovered the stream: asked again for up to a minute (the
      // event's id makes a repeat that did land a duplicate the stream drops).
      const deadline = Date.now() + 60_000;
      for (let attempt = 0; ; attempt++) {
        try {
          await log.append(event.streamId, [event], { expectedRevision: 'any' });
          return;
        } catch (e) {
          if (Date.now() > deadline || nc.isClosed()) throw e;
          logger.warn({ err: e, attempt }, 'NatsServerRestarted not recorded yet; trying again');
          await new Promise((res) => setTimeout(res, Math.min(2_000, 200 * 2 ** attempt)));
        }
      }
    };
    // Secure: every command over NATS is signed (docs/security.md, signed commands). Each
    // service signs with its identity's nkey and checks what it receives; the local operator
    // gets a user and key, and `nc` (the CLI's `admin` connection) signs with that key.
    const serviceKeys = security ? await servicePublicKeys(security.dir) : undefined;
    const secureCommands = async (identity: Identity, conn: NatsConnection, connLog: EventLog) => {
      if (security && serviceKeys) await secureServiceCommands({ security, identity, nc: conn, log: connLog, site, logger, serviceKeys });
    };
    const operatorActor = options.operator ?? operator();
    const operatorKey = security ? await ensureOperator({ log, site, secretsDir: dirs.secrets, actor: operatorActor, say }) : undefined;
    if (operatorKey) bindCommandSecurity(nc, { signer: operatorKey.signer });
    // The file's notification routes, through the route decider at the revision read (as `cairn
    // notify route add` records them; written by admin, in the local operator's name).
    if (options.notificationRoutes?.length) {
      const { routeDecider, routeStreamId } = await import('@cairn/notifications');
      for (const route of options.notificationRoutes) {
        const recorded = await handleCommand(log, routeStreamId(route.routeId), routeDecider, { type: 'AddRoute', route }, { meta: { site, actor: operatorActor } });
        say(`notification route   ${route.name} → ${route.target.kind} ${recorded.events.length > 0 ? 'recorded' : 'unchanged'} (cairn.yaml)`);
      }
    }
    // Not secure: commands are not checked, but a person's unverified name is marked as such.
    if (!security) markUnverifiedCommands(nc, log);
    // Secure: each service its own connection, identity and event-log client; else all share one.
    const wrapLog = (identity: Identity, l: EventLog) => (options.wrapLog ? options.wrapLog(identity, l) : l);
    const as = async (identity: Identity): Promise<{ nc: NatsConnection; log: EventLog }> => {
      if (!security) return { nc, log: wrapLog(identity, log) };
      const own = await connect({ servers: natsServers(natsUrl), maxReconnectAttempts: -1, ...identityConnectOptions(security.credentials(identity)) });
      stops.push(() => own.drain());
      await secureEventProvenance({ security, identity, nc: own, keys: provenanceKeys!, logger: logger.child({ name: identity }) });
      const ownLog = await createJetStreamEventLog({ nc: own, site, createStream: false });
      stops.push(() => ownLog.close());
      await secureCommands(identity, own, ownLog);
      return { nc: own, log: wrapLog(identity, ownLog) };
    };

    const passphrase = process.env['CAIRN_REPO_PASSPHRASE']
      ?? await secret(join(dirs.secrets, 'repository.passphrase'), () => randomBytes(24).toString('base64url'));
    const directory = new DirectoryBackend(dirs.repository, { createRoot: true });
    const backend = options.wrapBackend ? options.wrapBackend(directory) : directory;
    let repository: Repository;
    try {
      repository = await openRepository(backend, { passphrase });
    } catch (e) {
      if (!(e instanceof RepositoryNotFoundError)) throw e;
      repository = await initRepository(backend, { passphrase });
      say(`repository           new ${dirs.repository}`);
    }
    stops.push(() => repository.close());
    say(`repository           ok  ${dirs.repository} (chunks of ${repository.chunkSize / 1024} KiB)`);

    const catalogue: RunningCatalogue = await startCatalogue({ ...(await as('catalogue')), site, dataDir: dirs.catalogue, logger: logger.child({ name: 'catalogue' }), ...(options.cataloguePostgresUrl ? { postgresUrl: options.cataloguePostgresUrl } : {}) });
    stops.push(() => catalogue.close());
    // Unix socket paths are limited to 107 bytes: keep NBD sockets short.
    const runDir = join(dirs.coordinator, 'run').length < 80 ? join(dirs.coordinator, 'run') : await mkdtemp(join(tmpdir(), 'cairn-run-'));
    await mkdir(runDir, { recursive: true });
    const coordinator = await startSnapshotCoordinator({
      ...(await as('snapshot-coordinator')), logger: logger.child({ name: 'snapshot-coordinator' }),
      config: parseCoordinatorConfig({
        site, natsUrl, dataDir: dirs.coordinator,
        ...(options.leaseMs ? { leaseMs: options.leaseMs, reapIntervalMs: Math.max(100, Math.floor(options.leaseMs / 4)) } : {}),
        instances: (options.qemu ?? []).map((q, i) => ({
          name: q.host ?? `qemu-${i + 1}`, qmpSocket: resolve(q.qmpSocket), nbd: { socketPath: join(runDir, `nbd-${i + 1}.sock`) },
          ...(q.guestAgentSocket ? { guestAgentSocket: resolve(q.guestAgentSocket) } : {}),
        })),
        libvirt: (options.libvirt ?? []).map((l, i) => ({ name: l.name ?? (i === 0 ? 'libvirt' : `libvirt-${i + 1}`), uri: l.uri })),
      }),
    });
    stops.push(() => coordinator.close());
    const without = new Set(options.without ?? []);
    // Key escrow (docs/sites.md, disaster recovery): with a hub bundle that carries this site's
    // escrow key, other sites' keys sealed for it are kept in <data>/escrow and opened only for a
    // site declared lost here.
    const escrowDir = join(dataDir, 'escrow');
    const replicas = replicaLocator({
      replicasDir: dirs.replicas, secretsDir: dirs.secrets, ...(options.replicaPassphrases ? { passphrases: options.replicaPassphrases } : {}),
      ...(leaf?.escrow ? { escrow: { dir: escrowDir, keyFile: leaf.escrow.keyFile, log } } : {}),
    });
    stops.push(() => replicas.close());
    const mover: RunningDataMover | undefined = without.has('data-mover') ? undefined : await startDataMover({
      ...(await as('data-mover')), site,
      repositories: new Map([['default', repository]]),
      locateRestorePoint: (id) => replicas.locate(id),
      ...(leaf?.escrow ? { checkEscrow: (s: string) => replicas.checkEscrow(s) } : {}),
      ...restorePlaces(dataDir, {
        ...(options.restoreRoots ? { roots: options.restoreRoots } : {}),
        forbidden: [dirs.repository, ...(security ? [security.dir] : [])],
      }),
      logger: logger.child({ name: 'data-mover' }),
      ...(options.bandwidth ? { bandwidth: options.bandwidth } : {}),
      ...(options.verify ? { verify: options.verify } : {}),
      // Instant recovery's exporters read the repository themselves (not through a test's wrapped backend).
      ...(options.wrapBackend ? {} : { instantExporter: instantExporter({ repo: dirs.repository, passphrase }) }),
      ...(options.files ? { files: options.files } : {}),
    });
    if (mover) stops.push(() => mover.close());
    const scheduler: RunningScheduler | undefined = without.has('scheduler') ? undefined : await startScheduler({
      ...(await as('scheduler')), logger: logger.child({ name: 'scheduler' }), config: { site, repositories: ['default'], ...(security ? { certificateDir: security.dir } : {}), ...(leaf ? { hub: { id: leaf.hubId, tags: leaf.tags } } : {}), ...(options.maxJobsPerHost ? { maxJobsPerHost: options.maxJobsPerHost } : {}), ...(options.maxJobsPerRepository ? { maxJobsPerRepository: options.maxJobsPerRepository } : {}), ...(options.leaseMs ? { leaseTtlMs: Math.max(1000, options.leaseMs) } : {}) },
    });
    if (scheduler) stops.push(() => scheduler.close());
    const auditDeps = await as('audit-bridge');
    const audit: RunningAuditBridge = await startAuditBridge({
      ...auditDeps, site, logger: logger.child({ name: 'audit-bridge' }),
      targets: [{ kind: 'chain', name: 'chain' }, ...(options.auditTargets ?? [])],
    });
    stops.push(() => audit.close());
    // Notifications through the routes recorded in the log (`cairn notify route add`).
    const notifier: RunningNotifier = await startNotifier({ ...(await as('notifier')), site, logger: logger.child({ name: 'notifier' }) });
    stops.push(() => notifier.close());
    // Replication talks to other sites: its own connection (its own identity where NATS has users).
    const replicationNc = await connect({
      servers: natsServers(natsUrl), name: `replication@${site}`, maxReconnectAttempts: -1,
      ...(security ? identityConnectOptions(security.credentials('replication')) : {}),
    });
    stops.push(() => replicationNc.drain());
    if (security) await secureEventProvenance({ security, identity: 'replication', nc: replicationNc, keys: provenanceKeys!, logger: logger.child({ name: 'replication' }) });
    const replicationLog = await createJetStreamEventLog({ nc: replicationNc, site });
    if (security) await secureCommands('replication', replicationNc, replicationLog);
    else markUnverifiedCommands(replicationNc, replicationLog);
    const replication = await startReplication({
      nc: replicationNc, log: wrapLog('replication', replicationLog), site, repository, replicasDir: dirs.replicas, logger: logger.child({ name: 'replication' }),
      ...(options.replication?.ackWaitMs ? { ackWaitMs: options.replication.ackWaitMs } : {}),
      ...(options.replication?.maxRetryDelayMs ? { maxRetryDelayMs: options.replication.maxRetryDelayMs } : {}),
      ...(options.replication?.recordReceived ? { recordReceived: true } : {}),
      // Behind a secure hub the receiver names the peers its leaf user allows (ReplicaReceiver).
      ...(leaf?.peers?.length ? { peers: leaf.peers } : {}),
      ...(leaf?.escrow ? {
        escrow: {
          statement: leaf.escrow.statement, dir: escrowDir, hubCaPem: await readFile(leaf.caFile, 'utf8'),
          // Read when it is sealed: after a rotation the file (or the environment) holds the new one.
          secret: async () => process.env['CAIRN_REPO_PASSPHRASE'] ?? (await readFile(join(dirs.secrets, 'repository.passphrase'), 'utf8')).trim(),
        },
      } : {}),
    });
    stops.push(() => replication.close());
    const gatewayToken = process.env['CAIRN_API_TOKEN'] ?? await secret(join(dirs.secrets, 'api.token'), () => randomBytes(24).toString('base64url'));
    const gateway: RunningGateway = await startGateway({
      nc: (await as('gateway')).nc, site, token: gatewayToken, port: options.gatewayPort ?? 0, host: '127.0.0.1', logger: logger.child({ name: 'gateway' }),
      // The console's chain status: the audit bridge's reader, libs/audit's verifier (as `cairn audit verify`).
      auditChain: { verify: async () => verifyChain(await readAuditChain(auditDeps.nc, auditStream(site))) },
      ...(supervisor ? { natsServer: supervisor.status } : {}),
    });
    stops.push(() => gateway.close());

    const state: StackState = { natsUrl, site, gatewayUrl: gateway.url, pid: process.pid, dataDir, ...(security ? { securityDir: security.dir } : {}),
      ...(operatorKey ? { operator: { userId: operatorKey.userId, keyFile: operatorKey.file } } : {}),
    };
    await writeFile(join(dataDir, STATE_FILE), JSON.stringify(state, null, 2) + '\n');

    return {
      site, natsUrl, gatewayUrl: gateway.url, gatewayToken, dataDir, logFile, nc, log, repository, passphrase, coordinator, replication,
      ...(mover ? { mover } : {}),
      ...(security ? { security } : {}),
      ...(operatorKey ? { operator: { actor: { kind: 'user' as const, id: operatorKey.userId }, signer: operatorKey.signer, keyFile: operatorKey.file } } : {}),
      ...(nats ? { nats } : {}),
      ...(natsCluster ? { natsCluster } : {}),
      ...(supervisor ? { natsSupervision: supervisor.status } : {}),
      async health() {
        const out: ServiceHealth[] = [];
        // Each probe answers within 3 s: one that waits on an absent NATS says so instead of hanging.
        const probe = async (service: string, f: () => unknown) => {
          let timer: NodeJS.Timeout | undefined;
          const late = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error('no answer within 3 s')), 3000); });
          try { out.push({ service, status: 'ok', detail: await Promise.race([f(), late]) }); } catch (e) { out.push({ service, status: 'failing', detail: (e as Error).message }); } finally { clearTimeout(timer); }
        };
        if (natsCluster) {
          for (const [i, m] of natsCluster.members.entries()) {
            await probe(`nats-server-${i + 1}`, () => {
              const st = memberSupervisors[i]!.status();
              if (st.state !== 'running') throw new Error(`${st.state} (restarts so far: ${st.restarts})`);
              return `${natsCluster!.names[i]} pid ${m.pid}, restarts: ${st.restarts}`;
            });
          }
        } else if (supervisor) {
          await probe('nats-server', () => {
            const st = supervisor!.status();
            if (st.state !== 'running') throw new Error(`${st.state} (restarts so far: ${st.restarts})`);
            return `pid ${nats!.pid}, restarts: ${st.restarts}`;
          });
        }
        await probe('nats', async () => { await nc.flush(); return natsUrl; });
        await probe('event-log', async () => `head ${await log.headPosition()}`);
        await probe('repository', async () => (await repository.stats()).restorePoints + ' restore points');
        if (scheduler) await probe('scheduler', () => scheduler.health());
        await probe('snapshot-coordinator', () => coordinator.health());
        if (mover) await probe('data-mover', () => mover.health());
        await probe('catalogue', () => catalogue.health());
        await probe('audit-bridge', () => audit.health());
        await probe('notifier', () => notifier.health());
        await probe('replication', () => replication.health());
        await probe('gateway', async () => (await fetch(`${gateway.url}/health`)).status === 200 ? gateway.url : Promise.reject(new Error('health not 200')));
        return out;
      },
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
