// Commands of the replication service (`cairn.<site>.cmd.replication.<name>`); a
// ReplicationRefused or TargetUnavailableError (Refusals) is the caller's error.
import { Controller, Inject } from '@nestjs/common';
import { Ctx, Payload } from '@nestjs/microservices';
import type { CommandPayloadMap } from '@cairn/contracts';
import { CommandContext, CommandHandler } from '@cairn/messaging';
import { Replication } from './replication.service.ts';

@Controller()
export class ReplicationHandlers {
  constructor(@Inject(Replication) private readonly replication: Replication) {}

  @CommandHandler('replication', 'CreateReplicationPolicy', { failureCode: 'replication_failed' })
  create(@Payload() p: CommandPayloadMap['CreateReplicationPolicy'], @Ctx() ctx: CommandContext) {
    return this.replication.createPolicy(p, ctx.actor, ctx.command.id);
  }

  @CommandHandler('replication', 'DeleteReplicationPolicy', { failureCode: 'replication_failed' })
  remove(@Payload() p: CommandPayloadMap['DeleteReplicationPolicy'], @Ctx() ctx: CommandContext) {
    return this.replication.deletePolicy(p.policyId, ctx.actor, ctx.command.id).then(() => undefined);
  }

  @CommandHandler('replication', 'ReplicateRestorePoint', { failureCode: 'replication_failed' })
  replicate(@Payload() p: CommandPayloadMap['ReplicateRestorePoint']) {
    // By hand: the whole copy, so a replica made before refs lists existed gets its list.
    return this.replication.copy(p.restorePointId, p.targetSite, { full: true }).then((r) => ({ ...r }));
  }

  @CommandHandler('replication', 'VerifyReplica', { failureCode: 'replication_failed' })
  verify(@Payload() p: CommandPayloadMap['VerifyReplica']) {
    return this.replication.verifyLocal(p.sourceSite).then((r) => ({
      ok: r.ok, objectsChecked: r.objectsChecked, bytesChecked: r.bytesChecked, damaged: r.damaged.map((d) => ({ kind: d.kind, id: d.id, damage: d.damage, detail: d.detail })),
    }));
  }

  @CommandHandler('replication', 'CollectReplicaGarbage', { failureCode: 'replication_failed' })
  gc(@Payload() p: CommandPayloadMap['CollectReplicaGarbage']) {
    return this.replication.collectGarbage(p.sourceSite, p.graceMs).then((r) => ({ ...r }));
  }

  @CommandHandler('replication', 'RepairReplica', { failureCode: 'replication_failed' })
  repair(@Payload() p: CommandPayloadMap['RepairReplica']) {
    return this.replication.repair(p.targetSite);
  }
}
