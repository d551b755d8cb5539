// The catalogue as a Nest module, and `startCatalogue`, which runs it in-process (`cairn up`)
// or as its own service: connects to NATS, opens the site's event log, projects, answers.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Module, type DynamicModule } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { createJetStreamEventLog } from '@cairn/eventlog';
import { correlatedLogOptions } from '@cairn/telemetry';
import { assertSite, natsServers } from '@cairn/contracts';
import { pino, type Logger } from 'pino';
import type { ProjectorLog } from './catalogue.projector.ts';
import {
  CATALOGUE_CONFIG, CATALOGUE_LOG, CATALOGUE_LOGGER, CATALOGUE_NATS, CatalogueService, newReplicaId,
  type CatalogueConfig, type CatalogueHealth,
} from './catalogue.service.ts';

export interface CatalogueModuleOptions {
  readonly config: CatalogueConfig;
  readonly nc: NatsConnection;
  readonly log: ProjectorLog;
  readonly logger: Logger;
}

@Module({})
export class CatalogueModule {
  static forRoot(options: CatalogueModuleOptions): DynamicModule {
    return {
      module: CatalogueModule,
      providers: [
        { provide: CATALOGUE_CONFIG, useValue: options.config },
        { provide: CATALOGUE_NATS, useValue: options.nc },
        { provide: CATALOGUE_LOG, useValue: options.log },
        { provide: CATALOGUE_LOGGER, useValue: options.logger },
        CatalogueService,
      ],
      exports: [CatalogueService],
    };
  }
}

export interface StartCatalogueOptions {
  /** NATS server URL (ignored when `nc` is given). */
  readonly natsUrl?: string;
  /** An open connection to share (not closed by `close()`). */
  readonly nc?: NatsConnection;
  readonly site: string;
  /** Directory for this replica's SQLite file, or `:memory:` (unused with `postgresUrl`). */
  readonly dataDir: string;
  /** Keep the read models in this PostgreSQL database instead, shared with the site's other replicas. */
  readonly postgresUrl?: string;
  /** The site's event log (default: JetStream on `nc`); not closed by `close()` when given. */
  readonly log?: ProjectorLog & { close?(): Promise<void> };
  readonly logger?: Logger;
  /** Replica identity (default: host, pid and a random suffix). */
  readonly replica?: string;
}

export interface RunningCatalogue {
  readonly replica: string;
  readonly service: CatalogueService;
  health(): Promise<CatalogueHealth>;
  close(): Promise<void>;
}

export async function startCatalogue(options: StartCatalogueOptions): Promise<RunningCatalogue> {
  const site = assertSite(options.site);
  const replica = options.replica ?? newReplicaId();
  const logger = (options.logger ?? pino({ name: 'catalogue', level: process.env.CAIRN_LOG_LEVEL ?? 'info', ...correlatedLogOptions })).child({ service: 'catalogue', site, replica });
  let dbPath = ':memory:';
  if (options.dataDir !== ':memory:' && !options.postgresUrl) {
    mkdirSync(options.dataDir, { recursive: true });
    dbPath = join(options.dataDir, `catalogue-${site}.sqlite`);
  }
  const cleanups: Array<() => Promise<void>> = [];
  try {
    let nc = options.nc;
    if (!nc) {
      if (!options.natsUrl) throw new TypeError('startCatalogue: give natsUrl or nc');
      const own = await connect({ servers: natsServers(options.natsUrl), name: replica });
      cleanups.push(() => own.drain());
      nc = own;
    }
    let log = options.log;
    if (!log) {
      const own = await createJetStreamEventLog({ nc, site });
      cleanups.push(() => own.close());
      log = own;
    }
    const app = await NestFactory.createApplicationContext(
      CatalogueModule.forRoot({ config: { site, dbPath, replica, ...(options.postgresUrl ? { postgresUrl: options.postgresUrl } : {}) }, nc, log, logger }),
      { logger: false, abortOnError: false },
    );
    cleanups.push(() => app.close());
    await app.init();
    const service = app.get(CatalogueService);
    let closing: Promise<void> | undefined;
    return {
      replica,
      service,
      health: () => service.health(),
      close: () => (closing ??= runCleanups(cleanups)),
    };
  } catch (e) {
    await runCleanups(cleanups).catch(() => undefined);
    throw e;
  }
}

async function runCleanups(cleanups: Array<() => Promise<void>>): Promise<void> {
  const errors: unknown[] = [];
  for (const fn of cleanups.splice(0).reverse()) {
    try { await fn(); } catch (e) { errors.push(e); }
  }
  if (errors.length) throw new AggregateError(errors, 'catalogue: closing failed');
}
