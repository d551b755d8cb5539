// Command handlers: thin, each passes the validated payload to the coordinator (a
// SnapshotCommandError it throws is a Refusal: the caller's error).
import { Controller, Inject } from '@nestjs/common';
import { Ctx, Payload } from '@nestjs/microservices';
import type { CommandPayloadMap } from '@cairn/contracts';
import { CommandContext, CommandHandler } from '@cairn/messaging';
import { SnapshotCoordinator } from './snapshot-coordinator.service.ts';
import { defineRestoredVm, prepareInPlaceRestore } from './restored-vm.ts';
import { manageInstantDomain } from './instant-domain.ts';

export const SERVICE_NAME = 'snapshot-coordinator';

@Controller()
export class SnapshotCoordinatorHandlers {
  constructor(@Inject(SnapshotCoordinator) private readonly coordinator: SnapshotCoordinator) {}

  // Idempotent by the snapshot id, and a repeat is answered as the first (SnapshotAnswers): no reply store.
  @CommandHandler(SERVICE_NAME, 'RequestSnapshot', { replyStore: false })
  async requestSnapshot(@Payload() p: CommandPayloadMap['RequestSnapshot'], @Ctx() ctx: CommandContext) {
    return this.coordinator.requestSnapshot(p, ctx.idempotencyKey);
  }

  @CommandHandler(SERVICE_NAME, 'DefineRestoredVm')
  async defineRestoredVm(@Payload() p: CommandPayloadMap['DefineRestoredVm']) {
    return defineRestoredVm(p.restoreId, this.coordinator.log, this.coordinator.adapters);
  }

  @CommandHandler(SERVICE_NAME, 'ManageInstantDomain')
  async manageInstantDomain(@Payload() p: CommandPayloadMap['ManageInstantDomain']) {
    return manageInstantDomain(p.instantId, p.act, this.coordinator.log, this.coordinator.adapters);
  }

  @CommandHandler(SERVICE_NAME, 'PrepareInPlaceRestore')
  async prepareInPlaceRestore(@Payload() p: CommandPayloadMap['PrepareInPlaceRestore']) {
    return prepareInPlaceRestore(p.restoreId, this.coordinator.log, this.coordinator.adapters);
  }

  @CommandHandler(SERVICE_NAME, 'ReleaseSnapshot', { replyStore: false })
  async releaseSnapshot(@Payload() p: CommandPayloadMap['ReleaseSnapshot']) {
    await this.coordinator.releaseSnapshot(p);
    return undefined;
  }
}
