// Starts the replication service of a site as a Nest microservice (commands over NATS), with
// its receiver for other sites' copies and its policy consumers.
import type { EscrowKeyStatement } from '@cairn/nats-security';
import 'reflect-metadata';
import { Module, type DynamicModule, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NatsConnection } from '@nats-io/transport-node';
import { pino, type Logger } from 'pino';
import type { Actor } from '@cairn/contracts';
import type { EventLog } from '@cairn/eventlog';
import { JetStreamServer } from '@cairn/messaging';
import type { Backend, Repository } from '@cairn/repository';
import { ReplicaReceiver } from './replica-receiver.ts';
import { ReplicationHandlers } from './replication.handlers.ts';
import { Replication } from './replication.service.ts';

@Module({})
class ReplicationModule {
  static with(replication: Replication): DynamicModule {
    return { module: ReplicationModule, controllers: [ReplicationHandlers], providers: [{ provide: Replication, useValue: replication }] };
  }
}

export interface StartReplicationOptions {
  /** The connection of the replication identity (the only one that talks to other sites). */
  readonly nc: NatsConnection;
  readonly log: EventLog;
  readonly site: string;
  /** This site's repository: the source of its replicas. */
  readonly repository: Repository;
  /** Where copies of other sites' repositories are kept (one directory per source site). */
  readonly replicasDir: string;
  /** Another backend for the copy of a source site's repository (S3, tests). */
  readonly replicaBackend?: (sourceSite: string) => Backend;
  readonly actor?: Actor;
  readonly logger?: Logger;
  readonly ackWaitMs?: number;
  readonly maxRetryDelayMs?: number;
  /** How often the lag watch looks at each policy's targets (default 60 s; 0: only when called, tests). */
  readonly lagWatchMs?: number;
  /** Keep a count per object received (tests). */
  readonly recordReceived?: boolean;
  /** Sites whose copies this site receives (default every site; name them behind a secure hub, see ReplicaReceiver). */
  readonly peers?: readonly string[];
  /** Replica GC after expiries: grace period of unreferenced objects (default 1 hour) and delay (default 5 s). */
  readonly replicaGcGraceMs?: number;
  readonly replicaGcDelayMs?: number;
  /** Verify a copy this long after a commit into it, once no copy runs (default 5 s). */
  readonly replicaVerifyAfterCopyMs?: number;
  /** Verify every copy held here this often (default 24 h; 0: never). */
  readonly replicaVerifyEveryMs?: number;
  /** How long after a transfer call a copy counts as running (default 60 s). */
  readonly replicaCopyIdleMs?: number;
  /**
   * Key escrow (from the site's hub bundle): this site's escrow key statement and where sealed
   * keys of other sites are kept (as a target); the hub CA and this site's repository secret (as
   * a source). See docs/sites.md, disaster recovery.
   */
  readonly escrow?: {
    readonly statement: EscrowKeyStatement;
    readonly dir: string;
    readonly hubCaPem: string;
    readonly secret: () => Promise<string>;
  };
}

export interface ReplicationHealth {
  readonly status: 'ok';
  readonly policies: number;
  readonly copies: number;
  readonly received: number;
}

export interface RunningReplication {
  readonly replication: Replication;
  readonly receiver: ReplicaReceiver;
  health(): ReplicationHealth;
  close(): Promise<void>;
}

export async function startReplication(o: StartReplicationOptions): Promise<RunningReplication> {
  const actor: Actor = o.actor ?? { kind: 'service', id: `replication@${o.site}` };
  const logger = (o.logger ?? pino({ level: process.env['CAIRN_LOG_LEVEL'] ?? 'info' })).child({ service: 'replication', site: o.site });
  const receiver = new ReplicaReceiver({
    nc: o.nc, log: o.log, site: o.site, replicasDir: o.replicasDir, actor, logger, recordReceived: o.recordReceived ?? false,
    ...(o.peers?.length ? { peers: o.peers } : {}),
    ...(o.replicaGcGraceMs !== undefined ? { gcGraceMs: o.replicaGcGraceMs } : {}),
    ...(o.replicaGcDelayMs !== undefined ? { gcDelayMs: o.replicaGcDelayMs } : {}),
    ...(o.replicaVerifyAfterCopyMs !== undefined ? { verifyAfterCopyMs: o.replicaVerifyAfterCopyMs } : {}),
    ...(o.replicaVerifyEveryMs !== undefined ? { verifyEveryMs: o.replicaVerifyEveryMs } : {}),
    ...(o.replicaCopyIdleMs !== undefined ? { copyIdleMs: o.replicaCopyIdleMs } : {}),
    ...(o.replicaBackend ? { backendFor: o.replicaBackend } : {}),
    ...(o.escrow ? { escrow: { statement: o.escrow.statement, dir: o.escrow.dir } } : {}),
  });
  receiver.start();
  const replication = new Replication(
    {
      site: o.site, actor, ackWaitMs: o.ackWaitMs ?? 60_000, maxRetryDelayMs: o.maxRetryDelayMs ?? 30_000, lagWatchMs: o.lagWatchMs ?? 60_000,
      ...(o.escrow ? { escrow: { hubCaPem: o.escrow.hubCaPem, secret: o.escrow.secret } } : {}),
    },
    o.nc, o.log, o.repository, logger, receiver,
  );
  await replication.start();
  const app: INestMicroservice = await NestFactory.createMicroservice(ReplicationModule.with(replication), {
    strategy: new JetStreamServer({ connection: o.nc, site: o.site, actor }), logger: ['error', 'warn'],
  });
  await app.listen();
  logger.info({ policies: replication.policies.size, replicasDir: o.replicasDir }, 'replication started');
  return {
    replication,
    receiver,
    health: () => ({ status: 'ok', policies: replication.policies.size, copies: replication.copiesDone, received: receiver.objectsReceived }),
    async close() {
      await replication.close();
      await app.close();
      await receiver.close();
    },
  };
}
