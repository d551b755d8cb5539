// Handlers of the data mover: transfer work from the queue, expired restore points from the
// log, and restore commands. Built per site, since stream and subject names carry the site.
import { Controller, Inject } from '@nestjs/common';
import { Ctx, Payload } from '@nestjs/microservices';
import { eventStreamName, eventSubjectFilter, workSubject, type CommandPayloadMap, type KnownEvent } from '@cairn/contracts';
import { CommandContext, CommandHandler, JetStreamContext, JetStreamHandler, NonRetryableError, schemaMessages } from '@cairn/messaging';
import { TRANSFER_QUEUE, TransferWork, workStreamName } from '@cairn/jobs';
import { BackendError } from '@cairn/repository';
import { DataMover, TransferRefused } from './data-mover.service.ts';
import { SecurityActs } from './security-acts.ts';

export interface HandlerSettings {
  readonly site: string;
  readonly ackWaitMs: number;
  readonly maxDeliver: number;
  readonly backoffMs: readonly number[];
  /** Transfers this mover runs at once (default 1). */
  readonly transfers?: number;
}

/**
 * The repository already retried transient backend errors; a permanent one (refused, missing
 * object), found anywhere in the cause chain the writer wraps it in, fails the same way on
 * every delivery, so the job fails at once.
 */
function permanentBackendFailure(e: unknown): boolean {
  for (let c = e, depth = 0; c instanceof Error && depth < 10; c = c.cause, depth++) {
    if (c instanceof BackendError) return !c.transient;
  }
  return false;
}

export function dataMoverHandlers(s: HandlerSettings) {
  @Controller()
  class DataMoverHandlers {
    constructor(@Inject(DataMover) private readonly mover: DataMover, @Inject(SecurityActs) private readonly acts: SecurityActs) {}

    @JetStreamHandler({
      stream: workStreamName(s.site),
      durable: 'data-mover',
      filterSubject: workSubject(s.site, TRANSFER_QUEUE),
      ackWaitMs: s.ackWaitMs,
      maxDeliver: s.maxDeliver,
      backoffMs: s.backoffMs,
      validate: schemaMessages(TransferWork),
      dedup: false,
      ...(s.transfers ? { concurrency: s.transfers } : {}),
    })
    async transfer(@Payload() work: TransferWork, @Ctx() ctx: JetStreamContext) {
      try {
        return await this.mover.transfer(work, ctx.deliveryCount > 1);
      } catch (e) {
        const last = ctx.deliveryCount >= s.maxDeliver;
        if (e instanceof TransferRefused || permanentBackendFailure(e) || last) {
          await this.mover.failJob(work.jobId, `transfer failed${last ? ` after ${ctx.deliveryCount} attempts` : ''}: ${(e as Error).message}`);
          throw new NonRetryableError((e as Error).message);
        }
        throw e;
      }
    }

    @JetStreamHandler({
      stream: eventStreamName(s.site),
      durable: 'data-mover-retention',
      filterSubject: eventSubjectFilter(s.site, 'restorepoint'),
      ackWaitMs: 30_000,
    })
    async expired(@Payload() event: KnownEvent) {
      if (event.type === 'RestorePointExpired') await this.mover.expire(event.data.restorePointId);
    }

    @CommandHandler('data-mover', 'TestRestore')
    testRestore(@Payload() p: CommandPayloadMap['TestRestore']) {
      return this.mover.startTestRestore(p);
    }

    @CommandHandler('data-mover', 'ListRestoreExports')
    listExports() {
      return this.mover.listExports();
    }

    @CommandHandler('data-mover', 'StopRestoreExport')
    async stopExport(@Payload() p: CommandPayloadMap['StopRestoreExport']) {
      await this.mover.stopExport(p.exportName);
      return undefined;
    }

    @CommandHandler('data-mover', 'LockRestorePoint', { failureCode: 'lock_failed' })
    async lock(@Payload() p: CommandPayloadMap['LockRestorePoint'], @Ctx() ctx: CommandContext) {
      return this.mover.lock(p, ctx.actor, ctx.command.id);
    }

    @CommandHandler('data-mover', 'DeleteRestorePoint', { failureCode: 'delete_failed' })
    async deleteRestorePoint(@Payload() p: CommandPayloadMap['DeleteRestorePoint'], @Ctx() ctx: CommandContext) {
      return this.acts.deleteRestorePoint(p, ctx.actor, ctx.command.id, ctx.trace);
    }

    @CommandHandler('data-mover', 'DeleteRepository', { failureCode: 'delete_failed' })
    async deleteRepository(@Payload() p: CommandPayloadMap['DeleteRepository'], @Ctx() ctx: CommandContext) {
      return this.acts.deleteRepository(p, ctx.actor, ctx.command.id, ctx.trace);
    }

    @CommandHandler('data-mover', 'DeclareSiteLost', { failureCode: 'declare_failed' })
    async declareSiteLost(@Payload() p: CommandPayloadMap['DeclareSiteLost'], @Ctx() ctx: CommandContext) {
      return this.acts.declareSiteLost(p, ctx.actor, ctx.command.id, ctx.trace);
    }

    @CommandHandler('data-mover', 'DescribeRepository')
    describeRepository(@Payload() p: CommandPayloadMap['DescribeRepository']) {
      return this.mover.describeRepository(p.repository);
    }

    @CommandHandler('data-mover', 'RestoreDisk', { failureCode: 'restore_failed' })
    async restore(@Payload() p: CommandPayloadMap['RestoreDisk'], @Ctx() ctx: CommandContext) {
      // A target outside the restore roots only when the person's own key signed it (the local CLI).
      const result = await this.mover.restore(p, 'default', { ownTarget: ctx.info.vouchedBy === 'user' && ctx.actor.kind === 'user' });
      // Who restored what, to where: a security-relevant act (docs/audit-siem.md).
      await this.acts.restored(p, result, ctx.actor, ctx.command.id, ctx.trace);
      return result;
    }
  }
  return DataMoverHandlers;
}
