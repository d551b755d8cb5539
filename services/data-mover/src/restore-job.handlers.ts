// Handlers of restore jobs: the RequestRestore command (any mover answers; it records the
// request and queues the work) and the work queue `restores` (one mover takes each job,
// extends its in-progress ack while it writes, and JetStream redelivers it if the mover dies).
import { Controller, Inject } from '@nestjs/common';
import { Ctx, Payload } from '@nestjs/microservices';
import { RESTORE_QUEUE, RestoreWork, workSubject, type CommandPayloadMap } from '@cairn/contracts';
import { CommandContext, CommandFailedError, CommandHandler, JetStreamContext, JetStreamHandler, NonRetryableError, schemaMessages } from '@cairn/messaging';
import { workStreamName } from '@cairn/jobs';
import { RestoreRefused } from './data-mover.service.ts';
import { RestoreJobRefused, RestoreJobs } from './restore-job.ts';

export interface RestoreHandlerSettings {
  readonly site: string;
  readonly ackWaitMs: number;
  readonly maxDeliver: number;
  readonly backoffMs: readonly number[];
}

export function restoreJobHandlers(s: RestoreHandlerSettings) {
  @Controller()
  class RestoreJobHandlers {
    constructor(@Inject(RestoreJobs) private readonly jobs: RestoreJobs) {}

    @CommandHandler('data-mover', 'RequestRestore')
    async request(@Payload() p: CommandPayloadMap['RequestRestore'], @Ctx() ctx: CommandContext) {
      try {
        // A target outside the restore roots only when the person's own key signed it (the local CLI).
        const ownTarget = ctx.info.vouchedBy === 'user' && ctx.actor.kind === 'user';
        return await this.jobs.request(p, ctx.actor, ownTarget, ctx.command.id, ctx.trace);
      } catch (e) {
        if (e instanceof RestoreRefused) throw new CommandFailedError(e.code, e.message);
        throw new CommandFailedError('restore_failed', (e as Error).message);
      }
    }

    @JetStreamHandler({
      stream: workStreamName(s.site),
      durable: 'data-mover-restores',
      filterSubject: workSubject(s.site, RESTORE_QUEUE),
      ackWaitMs: s.ackWaitMs,
      maxDeliver: s.maxDeliver,
      backoffMs: s.backoffMs,
      validate: schemaMessages(RestoreWork),
      dedup: false,
    })
    async work(@Payload() work: RestoreWork, @Ctx() ctx: JetStreamContext) {
      try {
        return await this.jobs.run(work, () => ctx.working());
      } catch (e) {
        const last = ctx.deliveryCount >= s.maxDeliver;
        if (e instanceof RestoreJobRefused || last) {
          const code = e instanceof RestoreJobRefused ? e.code : 'failed';
          await this.jobs.fail(work.restoreId, code, `${(e as Error).message}${last && !(e instanceof RestoreJobRefused) ? ` (after ${ctx.deliveryCount} attempts)` : ''}`);
          throw new NonRetryableError((e as Error).message);
        }
        throw e;
      }
    }
  }
  return RestoreJobHandlers;
}
