// Command handlers of the scheduler (`cairn.<site>.cmd.scheduler.*`): thin, each passes the
// caller and the payload to the Scheduler (a SchedulerRefusal it throws is the caller's error).
import { Controller, Inject } from '@nestjs/common';
import { Ctx, Payload } from '@nestjs/microservices';
import { CommandContext, CommandHandler } from '@cairn/messaging';
import type { CommandPayloadMap } from '@cairn/contracts';
import { Scheduler } from './scheduler.service.ts';

@Controller()
export class SchedulerHandlers {
  constructor(@Inject(Scheduler) private readonly scheduler: Scheduler) {}

  @CommandHandler('scheduler', 'RequestBackup')
  requestBackup(@Payload() p: CommandPayloadMap['RequestBackup'], @Ctx() ctx: CommandContext) {
    return this.scheduler.requestBackup(p, ctx.actor, ctx.command.id);
  }

  @CommandHandler('scheduler', 'CreatePolicy')
  createPolicy(@Payload() p: CommandPayloadMap['CreatePolicy'], @Ctx() ctx: CommandContext) {
    return this.scheduler.createPolicy(p, ctx.actor, ctx.command.id);
  }

  @CommandHandler('scheduler', 'UpdatePolicy')
  updatePolicy(@Payload() p: CommandPayloadMap['UpdatePolicy'], @Ctx() ctx: CommandContext) {
    return this.scheduler.updatePolicy(p.policy, p.approvalId, ctx.actor, ctx.command.id);
  }

  @CommandHandler('scheduler', 'ApplyGlobalPolicy')
  applyGlobalPolicy(@Payload() p: CommandPayloadMap['ApplyGlobalPolicy'], @Ctx() ctx: CommandContext) {
    return this.scheduler.applyGlobalPolicy(p.statement, ctx.actor, ctx.command.id);
  }

  @CommandHandler('scheduler', 'PausePolicy')
  pausePolicy(@Payload() p: CommandPayloadMap['PausePolicy'], @Ctx() ctx: CommandContext) {
    return this.scheduler.changePolicyState('pause', p.policyId, ctx.actor, ctx.command.id);
  }

  @CommandHandler('scheduler', 'ResumePolicy')
  resumePolicy(@Payload() p: CommandPayloadMap['ResumePolicy'], @Ctx() ctx: CommandContext) {
    return this.scheduler.changePolicyState('resume', p.policyId, ctx.actor, ctx.command.id);
  }

  @CommandHandler('scheduler', 'DeletePolicy')
  deletePolicy(@Payload() p: CommandPayloadMap['DeletePolicy'], @Ctx() ctx: CommandContext) {
    return this.scheduler.changePolicyState('delete', p.policyId, ctx.actor, ctx.command.id);
  }

  @CommandHandler('scheduler', 'CancelJob')
  cancelJob(@Payload() p: CommandPayloadMap['CancelJob'], @Ctx() ctx: CommandContext) {
    return this.scheduler.cancelJob(p.jobId, p.reason ?? `cancelled by ${ctx.actor.id}`, ctx.actor, ctx.command.id);
  }
}
