// Commands of the replication service (`cairn.<site>.cmd.replication.<name>`).
import { Controller, Inject } from '@nestjs/common';
import { Ctx, Payload } from '@nestjs/microservices';
import type { CommandPayloadMap } from '@cairn/contracts';
import { CommandContext, CommandFailedError, CommandHandler } from '@cairn/messaging';
import { Replication, ReplicationRefused } from './replication.service.ts';
import { TargetUnavailableError } from './remote-sink.ts';

async function refusals<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof ReplicationRefused) throw new CommandFailedError(e.code, e.message);
    if (e instanceof TargetUnavailableError) throw new CommandFailedError('unavailable', e.message);
    throw new CommandFailedError('replication_failed', (e as Error).message);
  }
}

@Controller()
export class ReplicationHandlers {
  constructor(@Inject(Replication) private readonly replication: Replication) {}

  @CommandHandler('replication', 'CreateReplicationPolicy')
  create(@Payload() p: CommandPayloadMap['CreateReplicationPolicy'], @Ctx() ctx: CommandContext) {
    return refusals(() => this.replication.createPolicy(p, ctx.actor, ctx.command.id));
  }

  @CommandHandler('replication', 'DeleteReplicationPolicy')
  remove(@Payload() p: CommandPayloadMap['DeleteReplicationPolicy'], @Ctx() ctx: CommandContext) {
    return refusals(async () => { await this.replication.deletePolicy(p.policyId, ctx.actor, ctx.command.id); return undefined; });
  }

  @CommandHandler('replication', 'ReplicateRestorePoint')
  replicate(@Payload() p: CommandPayloadMap['ReplicateRestorePoint']) {
    return refusals(async () => {
      // By hand: the whole copy, so a replica made before refs lists existed gets its list.
      const r = await this.replication.copy(p.restorePointId, p.targetSite, { full: true });
      return { ...r };
    });
  }

  @CommandHandler('replication', 'VerifyReplica')
  verify(@Payload() p: CommandPayloadMap['VerifyReplica']) {
    return refusals(async () => {
      const r = await this.replication.verifyLocal(p.sourceSite);
      return { ok: r.ok, objectsChecked: r.objectsChecked, bytesChecked: r.bytesChecked, damaged: r.damaged.map((d) => ({ kind: d.kind, id: d.id, damage: d.damage, detail: d.detail })) };
    });
  }

  @CommandHandler('replication', 'CollectReplicaGarbage')
  gc(@Payload() p: CommandPayloadMap['CollectReplicaGarbage']) {
    return refusals(async () => ({ ...(await this.replication.collectGarbage(p.sourceSite, p.graceMs)) }));
  }

  @CommandHandler('replication', 'RepairReplica')
  repair(@Payload() p: CommandPayloadMap['RepairReplica']) {
    return refusals(() => this.replication.repair(p.targetSite));
  }
}
