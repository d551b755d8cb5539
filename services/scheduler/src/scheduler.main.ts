// Starts the scheduler as a Nest microservice on the JetStream transport, with its
// leadership lease; `cairn up` runs it in process, production runs it on its own.
import 'reflect-metadata';
import { Module, type DynamicModule } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { INestMicroservice } from '@nestjs/common';
import type { NatsConnection } from '@nats-io/transport-node';
import { pino, type Logger } from 'pino';
import { eventProvenanceOf, type EventLog } from '@cairn/eventlog';
import { JetStreamServer } from '@cairn/messaging';
import { correlatedLogOptions } from '@cairn/telemetry';
import { LeaderLease } from './leader-lease.ts';
import { natsSchedulerPorts } from './scheduler.ports.adapter.ts';
import { schedulerConfig, type SchedulerConfig } from './scheduler.config.ts';
import { Scheduler } from './scheduler.service.ts';
import { SchedulerHandlers } from './scheduler.handlers.ts';

@Module({})
class SchedulerModule {
  static with(scheduler: Scheduler): DynamicModule {
    return { module: SchedulerModule, controllers: [SchedulerHandlers], providers: [{ provide: Scheduler, useValue: scheduler }] };
  }
}

export interface StartSchedulerOptions {
  readonly nc: NatsConnection;
  readonly log: EventLog;
  readonly config: Partial<SchedulerConfig> & { site: string };
  /** Name of this replica in the lease (default: random). */
  readonly instance?: string;
  readonly logger?: Logger;
}

export interface RunningScheduler {
  readonly scheduler: Scheduler;
  health(): ReturnType<Scheduler['health']> & { status: 'ok' };
  close(): Promise<void>;
}

export async function startScheduler(options: StartSchedulerOptions): Promise<RunningScheduler> {
  const config = schedulerConfig({ signedApprovals: Boolean(eventProvenanceOf(options.nc)?.verify), ...options.config });
  const ports = await natsSchedulerPorts(options.nc, config.site, config.actor, config.snapshotCommandTimeoutMs);
  const logger = (options.logger ?? pino({ level: process.env['CAIRN_LOG_LEVEL'] ?? 'info', ...correlatedLogOptions })).child({ service: 'scheduler', site: config.site });
  const scheduler = new Scheduler(config, options.log, ports, () => new Date(), logger);
  await scheduler.start();
  const app: INestMicroservice = await NestFactory.createMicroservice(SchedulerModule.with(scheduler), {
    strategy: new JetStreamServer({ connection: options.nc, site: config.site, actor: config.actor }),
    logger: ['error', 'warn'],
  });
  await app.listen();
  const lease = new LeaderLease({
    nc: options.nc,
    bucket: `cairn_leases_${config.site.replace(/-/g, '_')}`,
    key: 'scheduler',
    holder: options.instance ?? `scheduler-${process.pid}-${Math.random().toString(36).slice(2, 8)}`,
    ttlMs: config.leaseTtlMs,
    onChange: (leader) => scheduler.setLeader(leader),
  });
  await lease.start();
  return {
    scheduler,
    health: () => ({ status: 'ok', ...scheduler.health() }),
    async close() {
      await lease.stop();
      await app.close();
      await scheduler.stop();
    },
  };
}
