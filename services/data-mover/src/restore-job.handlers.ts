// Handlers of restore jobs: the RequestRestore command (any mover answers; it records the
// request and queues the work) and the work queue `restores` (one mover takes each job,
// extends its in-progress ack while it writes, and JetStream redelivers it if the mover dies).
import { Controller, Inject } from '@nestjs/common';
import { Ctx, Payload } from '@nestjs/microservices';
import { RESTORE_QUEUE, RestoreWork, workSubject, type CommandPayloadMap } from '@cairn/contracts';
import { CommandContext, CommandHandler, JetStreamContext, JetStreamHandler, NonRetryableError, schemaMessages } from '@cairn/messaging';
import { workStreamName } from '@cairn/jobs';
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

    // A target outside the restore roots only when the person's own key signed it (the local CLI).
    @CommandHandler('data-mover', 'RequestRestore', { failureCode: 'restore_failed' })
    request(@Payload() p: CommandPayloadMap['RequestRestore'], @Ctx() ctx: CommandContext) {
      return this.jobs.request(p, ctx.actor, ctx.info.vouchedBy === 'user' && ctx.actor.kind === 'user', ctx.command.id, ctx.trace);
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
        return await this.jobs.run(work, () => ctx.working(), ctx.deliveryCount > 1);
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
