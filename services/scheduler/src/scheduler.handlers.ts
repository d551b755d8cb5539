// Command handlers of the scheduler (`cairn.<site>.cmd.scheduler.*`): thin, each passes the
// caller and the payload to the Scheduler.
import { Controller, Inject } from '@nestjs/common';
import { Ctx, Payload } from '@nestjs/microservices';
import { CommandContext, CommandFailedError, CommandHandler } from '@cairn/messaging';
import type { CommandPayloadMap } from '@cairn/contracts';
import { Scheduler, SchedulerRefusal } from './scheduler.service.ts';

async function refusals<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof SchedulerRefusal) throw new CommandFailedError(e.code, e.message, e.details);
    throw e;
  }
}

@Controller()
export class SchedulerHandlers {
  constructor(@Inject(Scheduler) private readonly scheduler: Scheduler) {}

  @CommandHandler('scheduler', 'RequestBackup')
  requestBackup(@Payload() p: CommandPayloadMap['RequestBackup'], @Ctx() ctx: CommandContext) {
    return refusals(() => this.scheduler.requestBackup(p, ctx.actor, ctx.command.id));
  }

  @CommandHandler('scheduler', 'CreatePolicy')
  createPolicy(@Payload() p: CommandPayloadMap['CreatePolicy'], @Ctx() ctx: CommandContext) {
    return refusals(() => this.scheduler.createPolicy(p, ctx.actor, ctx.command.id));
  }

  @CommandHandler('scheduler', 'UpdatePolicy')
  updatePolicy(@Payload() p: CommandPayloadMap['UpdatePolicy'], @Ctx() ctx: CommandContext) {
    return refusals(() => this.scheduler.updatePolicy(p.policy, p.approvalId, ctx.actor, ctx.command.id));
  }

  @CommandHandler('scheduler', 'CancelJob')
  cancelJob(@Payload() p: CommandPayloadMap['CancelJob'], @Ctx() ctx: CommandContext) {
    return refusals(() => this.scheduler.cancelJob(p.jobId, p.reason ?? `cancelled by ${ctx.actor.id}`, ctx.actor, ctx.command.id));
  }
}
