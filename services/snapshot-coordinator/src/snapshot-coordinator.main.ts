// Starts the snapshot coordinator: hypervisor adapters, recovery of an earlier run, the
// command handlers as a Nest microservice on the JetStream transport, the lease reaper and
// the inventory loop, and an optional health endpoint. Run directly with a config file:
//   tsx services/snapshot-coordinator/src/snapshot-coordinator.main.ts <config.json>
// With CAIRN_NATS_SECURITY_DIR (the site's security directory) it connects as the
// `snapshot-coordinator` identity over mutual TLS.
import 'reflect-metadata';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Module, type DynamicModule, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { pino, type Logger } from 'pino';
import { natsServers, type Actor } from '@cairn/contracts';
import { createJetStreamEventLog, type EventLog } from '@cairn/eventlog';
import { QemuAdapter, QemuOfflineAdapter, QemuStoppedFallbackAdapter, SimulatedAdapter, type HypervisorAdapter } from '@cairn/hypervisor';
import { qemuFallbackConfig } from './hypervisor-registry.ts';
import { JetStreamServer } from '@cairn/messaging';
import { correlatedLogOptions } from '@cairn/telemetry';
import { identityFromEnv } from '@cairn/nats-security';
import { parseCoordinatorConfig, type CoordinatorConfig } from './snapshot-coordinator.config.ts';
import { SnapshotCoordinatorHandlers } from './snapshot-coordinator.handlers.ts';
import { SnapshotCoordinator } from './snapshot-coordinator.service.ts';
import { ViewRecordFile } from './view-records.ts';
import { HypervisorRegistry } from './hypervisor-registry.ts';
import { HypervisorRegistryHandlers } from './hypervisor-registry.handlers.ts';
import { connectLibvirt } from './libvirt-instance.ts';
import { GUEST_FILES_NATS, GuestFilesHandlers } from './guest-files.handlers.ts';

@Module({})
class SnapshotCoordinatorModule {
  static with(coordinator: SnapshotCoordinator, registry: HypervisorRegistry, nats: { nc: NatsConnection; site: string }): DynamicModule {
    return {
      module: SnapshotCoordinatorModule,
      controllers: [SnapshotCoordinatorHandlers, HypervisorRegistryHandlers, GuestFilesHandlers],
      providers: [{ provide: SnapshotCoordinator, useValue: coordinator }, { provide: HypervisorRegistry, useValue: registry }, { provide: GUEST_FILES_NATS, useValue: nats }],
    };
  }
}

export interface StartOptions {
  readonly config: CoordinatorConfig;
  /** An open connection (else one to `config.natsUrl`, closed on close). */
  readonly nc?: NatsConnection;
  /** The site's event log (else a JetStream log on the connection). */
  readonly log?: EventLog;
  readonly logger?: Logger;
}

export interface Health {
  status: 'ok' | 'degraded';
  instances: Array<{ name: string; connected: boolean }>;
  openSnapshots: number;
}

export interface RunningCoordinator {
  readonly coordinator: SnapshotCoordinator;
  health(): Promise<Health>;
  /** The health endpoint's port, when enabled. */
  readonly healthPort: number | undefined;
  close(): Promise<void>;
}

export async function startSnapshotCoordinator(o: StartOptions): Promise<RunningCoordinator> {
  const { config } = o;
  const logger = (o.logger ?? pino({ name: 'snapshot-coordinator', level: process.env['CAIRN_LOG_LEVEL'] ?? 'info', ...correlatedLogOptions })).child({ service: 'snapshot-coordinator', site: config.site });
  const actor: Actor = { kind: 'service', id: `snapshot-coordinator@${config.site}` };
  const nc = o.nc ?? await connect({ servers: natsServers(config.natsUrl), name: 'snapshot-coordinator' });
  const log = o.log ?? await createJetStreamEventLog({ nc, site: config.site });
  const adapters = new Map<string, HypervisorAdapter>();
  const adapterLog = logger.child({ component: 'hypervisor' });
  for (const i of config.instances) {
    const online = await QemuAdapter.connect({
      qmpSocket: i.qmpSocket, overlayDir: join(config.dataDir, 'overlays', i.name),
      ...('socketPath' in i.nbd ? { nbd: i.nbd } : { nbd: { host: i.nbd.host, port: i.nbd.port }, ...(i.nbd.tlsDir ? { nbdServerTlsDir: i.nbd.tlsDir } : {}) }),
      defaultLeaseMs: config.leaseMs, logger: adapterLog.child({ instance: i.name }),
      ...(i.guestAgentSocket ? { guestAgentSocket: i.guestAgentSocket } : {}),
    });
    // Once its QEMU has ended, the VM is still known (and backed up) from its image files.
    adapters.set(i.name, await QemuStoppedFallbackAdapter.create(online, qemuFallbackConfig(config.dataDir, i.name, config.leaseMs, adapterLog.child({ instance: i.name }))));
  }
  if (config.offline) {
    adapters.set(config.offline.name, new QemuOfflineAdapter({
      vms: config.offline.vms, runDir: join(config.dataDir, 'offline', config.offline.name),
      defaultLeaseMs: config.leaseMs, logger: adapterLog.child({ instance: config.offline.name }),
    }));
  }
  if (config.simulated) {
    // Load tests only: a production coordinator must never report VMs that do not exist.
    if (process.env['CAIRN_SIMULATED_HYPERVISOR'] !== '1') {
      throw new Error('the simulated hypervisor is for load tests only: set CAIRN_SIMULATED_HYPERVISOR=1 to run it (never in production)');
    }
    const s = config.simulated;
    // Several simulated hosts: VMs dealt out in blocks (host k holds VMs k·n/h … (k+1)·n/h − 1).
    const hosts = Math.min(s.hosts ?? 1, s.vms);
    for (let k = 0; k < hosts; k++) {
      const first = Math.floor((k * s.vms) / hosts);
      const name = hosts === 1 ? s.name : `${s.name}-${String(k + 1).padStart(String(hosts).length, '0')}`;
      adapters.set(name, await SimulatedAdapter.start({
        name, vms: Math.floor(((k + 1) * s.vms) / hosts) - first, first, total: s.vms,
        nbdSocket: join(config.dataDir, 'run', `${name}.sock`), defaultLeaseMs: config.leaseMs,
        ...(s.diskBytes ? { diskBytes: s.diskBytes } : {}), ...(s.changesPerView ? { changesPerView: s.changesPerView } : {}),
      }));
    }
    logger.warn({ vms: s.vms, hosts }, 'SIMULATED hypervisor: these VMs do not exist (load test)');
  }
  // Hypervisors added with `cairn hypervisor add` in earlier runs.
  const ref: { coordinator?: SnapshotCoordinator } = {};
  const inventoryNow = () => { void ref.coordinator?.syncInventory().catch((e: unknown) => logger.warn({ err: String(e) }, 'inventory after a libvirt event failed')); };
  for (const l of config.libvirt) {
    adapters.set(l.name, await connectLibvirt(l, { dataDir: config.dataDir, leaseMs: config.leaseMs, logger: adapterLog, onChange: inventoryNow }));
  }
  const registry = new HypervisorRegistry(adapters, {
    dataDir: config.dataDir, leaseMs: config.leaseMs, logger: adapterLog,
    runDir: config.instances[0] && 'socketPath' in config.instances[0].nbd ? dirname(config.instances[0].nbd.socketPath) : join(config.dataDir, 'run'),
  }, async () => { await ref.coordinator?.syncInventory(); });
  await registry.restore();
  const records = new ViewRecordFile(join(config.dataDir, 'open-views.json'));
  const coordinator = new SnapshotCoordinator({ site: config.site, actor, leaseMs: config.leaseMs }, adapters, log, records, logger);
  ref.coordinator = coordinator;
  await coordinator.recover();
  await coordinator.syncInventory().catch((e: unknown) => logger.warn({ err: String(e) }, 'first inventory failed'));

  const app: INestMicroservice = await NestFactory.createMicroservice(SnapshotCoordinatorModule.with(coordinator, registry, { nc, site: config.site }), {
    strategy: new JetStreamServer({ connection: nc, site: config.site, actor, eventLog: log }),
    logger: ['error', 'warn'],
  });
  await app.listen();

  const loops = [
    every(config.reapIntervalMs, async () => { await coordinator.reapExpired(); await coordinator.reapOrphans(); }, logger, 'reaper'),
    every(config.inventoryIntervalMs, () => coordinator.syncInventory(), logger, 'inventory'),
  ];

  const health = async (): Promise<Health> => {
    const instances = [...adapters].map(([name, a]) => ({ name, connected: a instanceof QemuAdapter || a instanceof QemuStoppedFallbackAdapter ? a.qmp.isConnected : true }));
    return { status: instances.every((i) => i.connected) ? 'ok' : 'degraded', instances, openSnapshots: coordinator.openSnapshots().length };
  };
  let server: Server | undefined;
  if (config.healthPort !== undefined) {
    server = createServer((req, res) => {
      if (req.url !== '/health') { res.writeHead(404).end(); return; }
      health().then((h) => { res.writeHead(h.status === 'ok' ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify(h)); },
        () => res.writeHead(500).end());
    });
    await new Promise<void>((r) => server!.listen(config.healthPort, '127.0.0.1', r));
  }
  const address = server?.address();
  const healthPort = typeof address === 'object' && address ? address.port : undefined;
  logger.info({ instances: [...adapters.keys()], healthPort }, 'snapshot coordinator started');
  return {
    coordinator,
    health,
    healthPort,
    async close() {
      for (const stop of loops) await stop();
      await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
      await app.close();
      // Views stay open: their holders may still be reading; the next run adopts them.
      for (const a of adapters.values()) await a.close();
      await records.close();
      if (!o.log) await log.close();
      if (!o.nc) await nc.drain();
    },
  };
}

/** Runs `fn` every `ms`, never two at once; the returned function stops it and waits. */
function every(ms: number, fn: () => Promise<unknown>, logger: Logger, what: string): () => Promise<void> {
  let running: Promise<unknown> = Promise.resolve();
  const timer = setInterval(() => {
    running = running.then(() => fn()).catch((e: unknown) => logger.error({ err: String(e) }, `${what} round failed`));
  }, ms);
  return async () => { clearInterval(timer); await running; };
}

async function main(): Promise<void> {
  const file = process.argv[2];
  if (!file) throw new Error('usage: snapshot-coordinator.main.ts <config.json>');
  const config = parseCoordinatorConfig(JSON.parse(await readFile(file, 'utf8')));
  const nc = await connect({ servers: natsServers(config.natsUrl), name: 'snapshot-coordinator', ...(await identityFromEnv('snapshot-coordinator')) });
  const running = await startSnapshotCoordinator({ config, nc });
  const stop = () => { running.close().then(() => nc.drain()).then(() => process.exit(0), () => process.exit(1)); };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e: unknown) => { console.error(e); process.exit(1); });
}
