// The catalogue replica: wires the projector (log -> SQLite or PostgreSQL) and the query
// responder (NATS), and reports status and health. One instance per process; any number of
// replicas per site (each with its own SQLite file, or all sharing one PostgreSQL schema).
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { CatalogueStatus, RebuildResult } from '@cairn/catalogue-client';
import { CatalogueProjector, type ProjectorLog } from './catalogue.projector.ts';
import { SqliteCatalogueBackend } from './catalogue-db.adapter.ts';
import { PostgresCatalogueBackend } from './catalogue-pg.adapter.ts';
import type { CatalogueBackend } from './catalogue-store.port.ts';
import { CatalogueReadModel } from './catalogue.read-model.ts';
import { CatalogueQueryHandlers } from './catalogue-queries.handlers.ts';
import { catalogueResponder } from './catalogue-responder.adapter.ts';

export const CATALOGUE_CONFIG = Symbol.for('cairn.catalogue.config');
export const CATALOGUE_NATS = Symbol.for('cairn.catalogue.nats');
export const CATALOGUE_LOG = Symbol.for('cairn.catalogue.log');
export const CATALOGUE_LOGGER = Symbol.for('cairn.catalogue.logger');

/** Settled configuration of one replica. */
export interface CatalogueConfig {
  readonly site: string;
  /** SQLite file of this replica, or `:memory:` (ignored when `postgresUrl` is set). */
  readonly dbPath: string;
  /** The site's catalogue in PostgreSQL, shared by every replica (postgres://user@host:port/db). */
  readonly postgresUrl?: string;
  readonly replica: string;
}

export interface CatalogueHealth {
  /** True while the replica follows the log (or rebuilds) and is connected to NATS. */
  readonly ok: boolean;
  readonly status: CatalogueStatus;
  readonly problems: readonly string[];
}

export function newReplicaId(): string {
  return `catalogue@${hostname()}#${process.pid}-${randomBytes(3).toString('hex')}`;
}

@Injectable()
export class CatalogueService implements OnApplicationBootstrap, OnApplicationShutdown {
  readonly projector: CatalogueProjector;
  readonly readModel: CatalogueReadModel;
  private readonly responder: ReturnType<typeof catalogueResponder>;
  private readonly startedAt = new Date().toISOString();

  constructor(
    @Inject(CATALOGUE_CONFIG) private readonly config: CatalogueConfig,
    @Inject(CATALOGUE_NATS) private readonly nc: NatsConnection,
    @Inject(CATALOGUE_LOG) private readonly log: ProjectorLog,
    @Inject(CATALOGUE_LOGGER) private readonly logger: Logger,
  ) {
    const backend: CatalogueBackend = config.postgresUrl
      ? new PostgresCatalogueBackend({ url: config.postgresUrl, site: config.site })
      : new SqliteCatalogueBackend(config.dbPath);
    this.projector = new CatalogueProjector({ log, backend, logger });
    this.readModel = new CatalogueReadModel(() => this.projector.current);
    const handlers = new CatalogueQueryHandlers(this.readModel, {
      status: () => this.status(), rebuild: () => this.rebuild(),
      caughtUp: async () => this.projector.waitForPosition(await this.log.headPosition(), 2_000),
    });
    this.responder = catalogueResponder({ nc, site: config.site, replica: config.replica, handlers, logger });
  }

  get replica(): string {
    return this.config.replica;
  }

  async onApplicationBootstrap(): Promise<void> {
    await this.projector.start();
    this.responder.start();
    const s = await this.projector.status();
    this.logger.info({ store: this.projector.current.describe, position: String(s.position), standby: s.standby }, 'catalogue started');
  }

  async onApplicationShutdown(): Promise<void> {
    await this.responder.stop();
    await this.projector.stop();
    this.logger.info('catalogue stopped');
  }

  async status(): Promise<CatalogueStatus> {
    const s = await this.projector.status();
    let head = s.position;
    let lastError = s.lastError;
    try {
      head = await this.log.headPosition();
    } catch (e) {
      lastError = `log head unknown: ${(e as Error).message}`;
    }
    return {
      replica: this.config.replica,
      site: this.config.site,
      position: Number(s.position),
      head: Number(head),
      lag: Math.max(0, Number(head - s.position)),
      projecting: s.projecting,
      rebuilding: s.rebuilding,
      standby: s.standby,
      store: this.projector.dialect,
      startedAt: this.startedAt,
      lastError,
    };
  }

  async health(): Promise<CatalogueHealth> {
    const status = await this.status();
    const problems: string[] = [];
    if (this.nc.isClosed()) problems.push('NATS connection closed');
    if (!status.projecting && !status.rebuilding && !status.standby) problems.push(`projection not running${status.lastError ? `: ${status.lastError}` : ''}`);
    return { ok: problems.length === 0, status, problems };
  }

  async rebuild(): Promise<RebuildResult> {
    const r = await this.projector.rebuild();
    return { replica: this.config.replica, events: r.events, position: Number(r.position), durationMs: r.durationMs };
  }
}
