// Command handlers: thin, each passes the validated payload to the coordinator and maps its
// refusals to command error codes.
import { Controller, Inject } from '@nestjs/common';
import { Ctx, Payload } from '@nestjs/microservices';
import type { CommandPayloadMap } from '@cairn/contracts';
import { CommandContext, CommandFailedError, CommandHandler } from '@cairn/messaging';
import { SnapshotCommandError, SnapshotCoordinator } from './snapshot-coordinator.service.ts';

export const SERVICE_NAME = 'snapshot-coordinator';

function asCommandError(e: unknown): never {
  if (e instanceof SnapshotCommandError) throw new CommandFailedError(e.code, e.message);
  throw e;
}

@Controller()
export class SnapshotCoordinatorHandlers {
  constructor(@Inject(SnapshotCoordinator) private readonly coordinator: SnapshotCoordinator) {}

  @CommandHandler(SERVICE_NAME, 'RequestSnapshot')
  async requestSnapshot(@Payload() p: CommandPayloadMap['RequestSnapshot'], @Ctx() ctx: CommandContext) {
    return this.coordinator.requestSnapshot(p, ctx.idempotencyKey).catch(asCommandError);
  }

  @CommandHandler(SERVICE_NAME, 'ReleaseSnapshot')
  async releaseSnapshot(@Payload() p: CommandPayloadMap['ReleaseSnapshot']) {
    await this.coordinator.releaseSnapshot(p).catch(asCommandError);
    return undefined;
  }
}
