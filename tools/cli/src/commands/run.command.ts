// `cairn run <service>`: one service as its own process against a NATS given by URL, the way
// production runs them (and the way tests kill one with SIGKILL).
import { mkdir } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import type { Identity } from '@cairn/nats-security';
import { CliError, EXIT } from '../cli-error.ts';
import { parseNbdPorts } from './libvirt-options.ts';
import { globals } from '../session.ts';
import { commonJs } from '../lazy-import.ts';
import { configFile, readConfig, serviceSettings } from './config.command.ts';
import { schedulerHubOption } from './scheduler-hub.ts';

const SERVICES = ['scheduler', 'data-mover', 'catalogue', 'snapshot-coordinator', 'replication', 'audit-bridge', 'notifier', 'gateway'] as const;

/** What a started service gives this process: its health detail, why it is not ready, how it stops. */
interface Running {
  health(): unknown;
  notReady?(): Promise<string | undefined>;
  close(): Promise<void>;
}

interface RunOptions {
  repo?: string;
  qmp?: string[];
  leaseMs?: string;
  ackWaitMs?: string;
  transfers?: string;
  simulatedHosts?: string;
  instance?: string;
  replicas?: string;
  securityDir?: string;
  peers?: string;
  downloadLimit?: string;
  config?: string;
  http?: string;
  simulated?: string;
  port?: string;
  host?: string;
  nbdListen?: string;
  nbdPorts?: string;
  nbdTlsDir?: string;
  postgres?: string;
  hubCredentials?: string;
}

/**
 * The snapshot coordinator's QEMU instances: NBD on unix sockets in the data directory, or with
 * --nbd-listen on TCP, instance i on the i-th port of --nbd-ports, with TLS and client
 * certificates required when --nbd-tls-dir names QEMU's credentials directory (for data movers
 * on other nodes).
 */
export function coordinatorInstances(o: Pick<RunOptions, 'qmp' | 'nbdListen' | 'nbdPorts' | 'nbdTlsDir'>, dataDir: string) {
  const qmp = o.qmp ?? [];
  if (o.nbdListen === undefined) {
    if (o.nbdPorts !== undefined || o.nbdTlsDir !== undefined) throw new CliError('--nbd-ports and --nbd-tls-dir need --nbd-listen <address> (NBD over TCP)', EXIT.usage);
    return qmp.map((q, i) => ({ name: `qemu-${i + 1}`, qmpSocket: resolve(q), nbd: { socketPath: join(dataDir, `nbd-${i + 1}.sock`) } }));
  }
  const [lo, hi] = parseNbdPorts(o.nbdPorts ?? '10809-10899');
  if (hi - lo + 1 < qmp.length) throw new CliError(`--nbd-ports ${lo}-${hi} has ${hi - lo + 1} ports for ${qmp.length} QEMU instances (one each)`, EXIT.usage);
  return qmp.map((q, i) => ({
    name: `qemu-${i + 1}`, qmpSocket: resolve(q),
    nbd: { host: o.nbdListen as string, port: lo + i, ...(o.nbdTlsDir !== undefined ? { tlsDir: resolve(o.nbdTlsDir) } : {}) },
  }));
}

export function registerRunCommand(program: Command): void {
  program.command('run <service>')
    .description(`run one service in this process (${SERVICES.join(', ')}) against --nats`)
    .option('--repo <dir>', 'data mover, replication: repository directory (passphrase from CAIRN_REPO_PASSPHRASE)')
    .option('--replicas <dir>', 'replication: where copies of other sites\' repositories are kept (default <data>/replicas)')
    .option('--qmp <sockets...>', 'snapshot coordinator: QMP sockets of QEMU instances')
    .option('--lease-ms <ms>', 'scheduler leadership lease / coordinator view lease')
    .option('--download-limit <bytesPerSec>', 'data mover: most bytes per second read from the repository (restores; default unlimited)')
    .option('--ack-wait-ms <ms>', 'data mover, replication: time before unacknowledged work goes to another worker')
    .option('--transfers <n>', 'data mover: transfers run at once (default 1)')
    .option('--instance <name>', 'name of this replica')
    .option('--peers <sites>', 'replication: comma-separated sites whose copies it receives (needed behind a secure hub; default every site)')
    .option('--config <file>', 'cairn.yaml: SIEM targets (audit bridge), bandwidth (data mover), concurrency (scheduler) (default: $CAIRN_CONFIG, else ./cairn.yaml when there is one)')
    .option('--nbd-listen <address>', 'snapshot coordinator: serve views over NBD on TCP at this address of the node (movers connect to it) instead of unix sockets')
    .option('--nbd-ports <first-last>', 'snapshot coordinator, with --nbd-listen: one port per QEMU instance from this range (default 10809-10899)')
    .option('--nbd-tls-dir <dir>', 'snapshot coordinator, with --nbd-listen: QEMU\'s NBD TLS credentials (ca-cert.pem, server-cert.pem, server-key.pem; `cairn site nbd-cert`): TLS with client certificates of the site required')
    .option('--simulated <vms>', 'snapshot coordinator: that many simulated VMs, for load tests only (needs CAIRN_SIMULATED_HYPERVISOR=1)')
    .option('--simulated-hosts <n>', 'snapshot coordinator: spread the simulated VMs over that many simulated hosts (default 1)')
    .option('--http <host:port>', 'serve /health, /ready and /metrics (Prometheus) here, e.g. 127.0.0.1:9101 (:0 picks a free port; default $CAIRN_HTTP, else none)')
    .option('--postgres <url>', 'catalogue: keep the read models in this PostgreSQL database, shared by every catalogue replica of the site (default $CAIRN_CATALOGUE_POSTGRES_URL, else cairn.yaml catalogue.postgresUrl with store: postgres, else an SQLite file in --data)')
    .option('--port <port>', 'gateway: REST API and console port (default 8080)')
    .option('--host <address>', 'gateway: address to listen on (default 127.0.0.1)')
    .option('--hub-credentials <dir>', 'scheduler: the site\'s bundle from its hub (`cairn hub add-site`; as for cairn up): the hub\'s id and the site\'s tags, so the site takes global policies (default $CAIRN_HUB_CREDENTIALS)')
    .option('--security-dir <dir>', 'connect with this service\'s NATS identity and certificate from `cairn site init` (default $CAIRN_NATS_SECURITY_DIR)')
    .action(async function (this: Command, service: string, o: RunOptions) {
      try {
        await runService(this, service, o);
      } catch (e) {
        // What had started (the NATS connection and its reconnects, a store, timers) would keep
        // the process alive after the error is printed, and a unit that never exits is never
        // restarted: once main() has written the error and set the exit code, the process ends.
        setTimeout(() => process.exit(), 1000).unref();
        throw explainNatsTimeout(service, e);
      }
    });
}

async function runService(command: Command, service: string, o: RunOptions): Promise<void> {
  const g = globals(command);
  // From the flags, else the environment (the systemd units' EnvironmentFile, a container's env).
  const natsUrl = g.nats ?? process.env['CAIRN_NATS_URL'];
  if (!natsUrl) throw new CliError('--nats <url> (or CAIRN_NATS_URL) is required', EXIT.usage);
  if (!(SERVICES as readonly string[]).includes(service)) throw new CliError(`unknown service ${service}; one of ${SERVICES.join(', ')}`, EXIT.usage);
  // The services' code is loaded only here, so every other command starts without it.
  const [
    { identityConnectOptions, identityPublicKeys, loadSiteSecurity }, { connect }, { pino }, { createJetStreamEventLog, readSigningCutover }, { correlatedLogOptions, setupTracing },
    { DirectoryBackend, openRepository, withBandwidthLimit }, { startScheduler }, { startDataMover }, { startCatalogue }, { startReplication },
    { parseCoordinatorConfig, startSnapshotCoordinator }, { markUnverifiedCommands, secureServiceCommands }, { restorePlaces }, { secureEventProvenance }, { instantExporter }, { compileEventChecksWhenIdle, natsServers }, { startServiceEndpoints, parseListenAddress }, { trackConnection, settleQuietly },
  ] = await Promise.all([
    import('@cairn/nats-security'), commonJs(import('@nats-io/transport-node')), commonJs(import('pino')), import('@cairn/eventlog'), import('@cairn/telemetry'),
    import('@cairn/repository'), import('@cairn/scheduler'), import('@cairn/data-mover'), import('@cairn/catalogue'), import('@cairn/replication'),
    import('@cairn/snapshot-coordinator'), import('../stack/command-security.ts'), import('../stack/restore-places.ts'), import('../stack/event-provenance.ts'), import('../stack/instant-exporter.ts'), import('@cairn/contracts'),
    import('@cairn/telemetry'), import('@cairn/messaging'),
  ]);
  const httpAddress = o.http ?? process.env['CAIRN_HTTP'];
  let listen: { host: string; port: number } | undefined;
  try { listen = httpAddress ? parseListenAddress(httpAddress) : undefined; } catch (e) { throw new CliError((e as Error).message, EXIT.usage); }
  // Every service reads the site's cairn.yaml; a mistake in it stops here, naming its line.
  const config = await readConfig(await configFile(o.config));
  const settings = config ? await serviceSettings(config) : {};
  const site = g.site ?? process.env['CAIRN_SITE'] ?? config?.site ?? 'local';
  const dataDir = resolve(g.data ?? process.env['CAIRN_DATA'] ?? join('.cairn', service));
  await mkdir(dataDir, { recursive: true });
  // A long-lived process: event checks compiled when quiet, not inside a job (validate.ts).
  compileEventChecksWhenIdle();
  // Job spans exported as OTEL_TRACES_EXPORTER says; log lines carry traceId/spanId/jobId.
  setupTracing();
  const logger = pino({ level: process.env['CAIRN_LOG_LEVEL'] ?? 'info', ...correlatedLogOptions });
  const securityDir = o.securityDir ?? process.env['CAIRN_NATS_SECURITY_DIR'];
  const security = securityDir ? await loadSiteSecurity(securityDir) : undefined;
  const auth = security ? identityConnectOptions(security.credentials(service as Identity)) : {};
  // noAsyncTraces: the client otherwise builds two Error objects (stack traces) for every
  // request, used only to show where a failed request was made: 11 s of the scheduler's
  // 110 s busy in the 2,000-VM scale run (tools/bench/src/scale.ts --profile).
  // And no Error built to cancel a request its reply already settled (request-cancel.ts).
  settleQuietly();
  const nc = await connect({ servers: natsServers(natsUrl), name: `cairn-${service}`, maxReconnectAttempts: -1, noAsyncTraces: true, ...auth });
  const log = await createJetStreamEventLog({ nc, site });
  // Secure: sign the events it appends and refuse (and report) those whose writer may not write them.
  if (security) {
    const keys = await identityPublicKeys(security.dir);
    await secureEventProvenance({ security, identity: service as Identity, nc, keys: { keys, legacyBefore: await readSigningCutover(log, keys) }, logger });
  }
  // Secure: sign what it sends with its identity, accept only signed commands (docs/security.md).
  if (security) await secureServiceCommands({ security, identity: service as Identity, nc, log, site, logger });
  else markUnverifiedCommands(nc, log);
  const leaseMs = o.leaseMs ? Number(o.leaseMs) : undefined;
  let running: Running;
  switch (service) {
    case 'scheduler': {
      const hub = await schedulerHubOption(o.hubCredentials, process.env, site);
      const s = await startScheduler({
        nc, log, logger, ...(o.instance ? { instance: o.instance } : {}),
        config: { site, ...(security ? { certificateDir: security.dir } : {}), ...(hub ? { hub } : {}), ...(leaseMs ? { leaseTtlMs: leaseMs } : {}), ...(settings.maxJobsPerHost ? { maxJobsPerHost: settings.maxJobsPerHost } : {}), ...(settings.maxJobsPerRepository ? { maxJobsPerRepository: settings.maxJobsPerRepository } : {}) },
      });
      running = s;
      break;
    }
    case 'data-mover': {
      if (!o.repo) throw new CliError('--repo <dir> is required for the data mover', EXIT.usage);
      const passphrase = process.env['CAIRN_REPO_PASSPHRASE'];
      if (!passphrase) throw new CliError('CAIRN_REPO_PASSPHRASE is not set', EXIT.usage);
      const limit = o.downloadLimit ? Number(o.downloadLimit) : undefined;
      const transfers = o.transfers !== undefined ? Number(o.transfers) : undefined;
      if (transfers !== undefined && !(Number.isInteger(transfers) && transfers >= 1 && transfers <= 256)) throw new CliError(`--transfers must be a whole number from 1 to 256, not ${o.transfers}`, EXIT.usage);
      if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) throw new CliError(`--download-limit must be a positive number of bytes per second, not ${o.downloadLimit}`, EXIT.usage);
      const backend = new DirectoryBackend(resolve(o.repo));
      const repository = await openRepository(limit ? withBandwidthLimit(backend, { downloadBytesPerSec: limit }) : backend, { passphrase });
      const m = await startDataMover({
        nc, log, site, logger, repositories: new Map([['default', repository]]),
        ...restorePlaces(dataDir, { forbidden: [resolve(o.repo), ...(security ? [security.dir] : [])] }),
        ...(o.ackWaitMs ? { ackWaitMs: Number(o.ackWaitMs) } : {}),
        ...(transfers ? { transfers } : {}),
        ...(settings.bandwidth ? { bandwidth: settings.bandwidth } : {}),
        instantExporter: instantExporter({ repo: resolve(o.repo), passphrase, ...(limit ? { downloadLimit: limit } : {}) }),
      });
      running = { health: () => m.health(), close: async () => { await m.close(); await repository.close(); } };
      break;
    }
    case 'replication': {
      if (!o.repo) throw new CliError('--repo <dir> is required for replication', EXIT.usage);
      const passphrase = process.env['CAIRN_REPO_PASSPHRASE'];
      if (!passphrase) throw new CliError('CAIRN_REPO_PASSPHRASE is not set', EXIT.usage);
      const repository = await openRepository(new DirectoryBackend(resolve(o.repo)), { passphrase });
      const r = await startReplication({
        nc, log, site, logger, repository, replicasDir: resolve(o.replicas ?? join(dataDir, 'replicas')),
        ...(o.ackWaitMs ? { ackWaitMs: Number(o.ackWaitMs) } : {}),
        ...(o.peers ? { peers: o.peers.split(',').map((x) => x.trim()).filter(Boolean) } : {}),
      });
      running = { health: () => r.health(), close: async () => { await r.close(); await repository.close(); } };
      break;
    }
    case 'audit-bridge': {
      const { startAuditBridge } = await import('@cairn/audit-bridge');
      const b = await startAuditBridge({
        nc, site, logger, targets: [{ kind: 'chain', name: 'chain' }, ...((config?.audit?.targets ?? []) as Parameters<typeof startAuditBridge>[0]['targets'])],
      });
      running = b;
      break;
    }
    case 'notifier': {
      // Routes come from the log; SMTP passwords from this process's environment (--password-env).
      const { startNotifier } = await import('@cairn/notifier');
      const n = await startNotifier({ nc, log, site, logger });
      running = n;
      break;
    }
    case 'catalogue': {
      const postgresUrl = o.postgres ?? (config ? settings.cataloguePostgresUrl : process.env['CAIRN_CATALOGUE_POSTGRES_URL']);
      if (postgresUrl !== undefined && !/^postgres(ql)?:\/\//.test(postgresUrl)) throw new CliError(`--postgres must be a postgres:// URL, not ${postgresUrl}`, EXIT.usage);
      const c = await startCatalogue({ nc, site, dataDir, log, logger, ...(postgresUrl ? { postgresUrl } : {}), ...(o.instance ? { replica: o.instance } : {}) });
      // Ready while it follows the log: queries reach every replica of the queue group.
      running = { health: () => c.health(), notReady: async () => { const h = await c.health(); return h.ok ? undefined : h.problems.join('; ') || 'not following the log'; }, close: c.close };
      break;
    }
    case 'gateway': {
      const token = process.env['CAIRN_API_TOKEN'];
      if (!token) throw new CliError('CAIRN_API_TOKEN is not set (the administrator\'s API token, 16+ characters)', EXIT.usage);
      const port = o.port === undefined ? 8080 : Number(o.port);
      if (!(Number.isInteger(port) && port >= 0 && port <= 65535)) throw new CliError(`--port must be a port number, not ${o.port}`, EXIT.usage);
      const { startGateway } = await import('@cairn/gateway');
      const gw = await startGateway({ nc, log, site, token, port, host: o.host ?? '127.0.0.1', logger, ...(process.env['CAIRN_GATEWAY_USER'] ? { user: process.env['CAIRN_GATEWAY_USER'] } : {}) });
      process.stdout.write(`gateway listening on ${gw.url}\n`);
      running = {
        health: async () => (await fetch(`${gw.url}/health`)).json(),
        notReady: async () => ((await fetch(`${gw.url}/health`)).ok ? undefined : 'its /health is not 200'),
        close: gw.close,
      };
      break;
    }
    default: {
      const c = await startSnapshotCoordinator({
        nc, log, logger,
        config: parseCoordinatorConfig({
          site, natsUrl, dataDir, ...(leaseMs ? { leaseMs, reapIntervalMs: Math.max(100, Math.floor(leaseMs / 4)) } : {}),
          instances: coordinatorInstances(o, dataDir),
          ...(o.simulated ? { simulated: { name: 'simulated', vms: Number(o.simulated), ...(o.simulatedHosts ? { hosts: Number(o.simulatedHosts) } : {}) } } : {}),
        }),
      });
      running = {
        health: () => c.health(),
        // A coordinator whose hypervisor is away takes no snapshot requests it cannot serve.
        notReady: async () => { const h = await c.health(); return h.status === 'ok' ? undefined : `hypervisors: ${h.instances.filter((i) => !i.connected).map((i) => i.name).join(', ')} disconnected`; },
        close: c.close,
      };
    }
  }
  const instance = o.instance ?? `${service}@${hostname()}-${process.pid}`;
  const connection = trackConnection(nc);
  const endpoints = listen ? await startServiceEndpoints({
    service, instance, ...listen,
    probe: { health: () => running.health(), connection, ...(running.notReady ? { notReady: () => running.notReady!() } : {}) },
  }) : undefined;
  if (endpoints) process.stdout.write(`${service} http ${endpoints.url} (/health, /ready, /metrics)\n`);
  process.stdout.write(`${service} running (site ${site}, NATS ${natsUrl})\n`);
  await new Promise<void>((r) => { process.once('SIGINT', r); process.once('SIGTERM', r); });
  await endpoints?.close();
  await running.close();
  await log.close();
  await nc.drain();
}

/**
 * nats.js says only `timeout` when a request got no answer in time (at start-up, a JetStream
 * call; later, whatever the service awaited), and a cluster without a JetStream leader answers
 * `JetStream system temporarily unavailable`: say which service, and what happens next under systemd.
 */
function explainNatsTimeout(service: string, e: unknown): unknown {
  if (!(e instanceof Error)) return e;
  const hint = 'the NATS servers (or their JetStream) are slow or away; the service exits so that its unit starts it again (Restart=on-failure)';
  if (e.name === 'TimeoutError') return new CliError(`${service}: NATS did not answer in time (${e.message})`, EXIT.unavailable, hint);
  if (/JetStream system temporarily unavailable/i.test(e.message)) return new CliError(`${service}: JetStream is not available (${e.message})`, EXIT.unavailable, hint);
  return e;
}
