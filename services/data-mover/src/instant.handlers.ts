// Handlers of instant recovery commands (any data mover on the host answers): start a session,
// finish it (mirror and pivot), discard it, list them. A refusal answers with its code.
import { Controller, Inject } from '@nestjs/common';
import { Ctx, Payload } from '@nestjs/microservices';
import type { CommandPayloadMap } from '@cairn/contracts';
import { CommandContext, CommandFailedError, CommandHandler } from '@cairn/messaging';
import { RestoreRefused } from './data-mover.service.ts';
import { InstantRecoveries } from './instant-recovery.ts';

async function answer<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (e) {
    if (e instanceof RestoreRefused) throw new CommandFailedError(e.code, e.message);
    throw new CommandFailedError('instant_failed', (e as Error).message);
  }
}

/** A target outside the restore roots only when the person's own key signed it (the local CLI). */
const ownTarget = (ctx: CommandContext) => ctx.info.vouchedBy === 'user' && ctx.actor.kind === 'user';

@Controller()
export class InstantHandlers {
  constructor(@Inject(InstantRecoveries) private readonly instant: InstantRecoveries) {}

  @CommandHandler('data-mover', 'StartInstant')
  start(@Payload() p: CommandPayloadMap['StartInstant'], @Ctx() ctx: CommandContext) {
    return answer(() => this.instant.start(p, ctx.actor, ownTarget(ctx), ctx.command.id, ctx.trace));
  }

  @CommandHandler('data-mover', 'FinishInstant')
  finish(@Payload() p: CommandPayloadMap['FinishInstant'], @Ctx() ctx: CommandContext) {
    return answer(() => this.instant.finish(p, ctx.actor, ownTarget(ctx), ctx.command.id, ctx.trace));
  }

  @CommandHandler('data-mover', 'DiscardInstant')
  discard(@Payload() p: CommandPayloadMap['DiscardInstant'], @Ctx() ctx: CommandContext) {
    return answer(() => this.instant.discard(p.instantId, ctx.actor, ctx.command.id, ctx.trace));
  }

  @CommandHandler('data-mover', 'ListInstant')
  list(@Payload() p: CommandPayloadMap['ListInstant']) {
    return answer(() => this.instant.list(p.all === true));
  }
}
