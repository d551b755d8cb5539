// Destructive and security-relevant acts of the data mover, recorded with the actor who asked:
// deleting a restore point (only with a four-eyes approval found in the log: requested by one
// person, granted by another, for this restore point, not used before; a locked restore point
// is refused by the repository until its lock ends) and restoring a disk (DiskRestored).
import { newEvent, type Actor, type CommandPayloadMap, type KnownEvent, type TraceContext } from '@cairn/contracts';
import type { EventLog } from '@cairn/eventlog';
import { RestorePointLockedError, type Repository } from '@cairn/repository';

/** Why a deletion was refused: a code the command reply carries. */
export class DeletionRefused extends Error {
  constructor(readonly code: 'approval_required' | 'not_found' | 'locked' | 'conflict', message: string) {
    super(message);
  }
}

export interface SecurityActsOptions {
  readonly site: string;
  readonly log: EventLog;
  readonly repositories: ReadonlyMap<string, Repository>;
  readonly logger?: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
}

export class SecurityActs {
  constructor(private readonly o: SecurityActsOptions) {}

  /**
   * Checks the approval in the log (defence in depth: the gateway checked it too) and deletes
   * the restore point's manifest; its chunks go at the next garbage collection.
   */
  async deleteRestorePoint(cmd: CommandPayloadMap['DeleteRestorePoint'], actor: Actor, causationId: string, trace?: TraceContext, repository = 'default') {
    const events: KnownEvent[] = [];
    for await (const r of this.o.log.readStream(`approval-${cmd.approvalId}`)) events.push(r.event);
    const requested = events.find((e) => e.type === 'ApprovalRequested');
    if (requested?.type !== 'ApprovalRequested') throw new DeletionRefused('approval_required', `no approval ${cmd.approvalId}: deleting a restore point needs one granted by a second administrator`);
    const action = requested.data.action;
    if (action.kind !== 'delete-restore-point' || action.restorePointId !== cmd.restorePointId) {
      throw new DeletionRefused('approval_required', `approval ${cmd.approvalId} is not for deleting restore point ${cmd.restorePointId}`);
    }
    const granted = events.find((e) => e.type === 'ApprovalGranted');
    if (granted?.type !== 'ApprovalGranted') throw new DeletionRefused('approval_required', `approval ${cmd.approvalId} is not granted yet`);
    if (granted.data.approvedBy === requested.data.requestedBy || granted.actor.id === requested.actor.id) {
      throw new DeletionRefused('approval_required', `approval ${cmd.approvalId} was granted by its own requester: four-eyes needs a second administrator`);
    }
    if (events.some((e) => e.type === 'ApprovalRejected' || e.type === 'ApprovalExecuted')) {
      throw new DeletionRefused('conflict', `approval ${cmd.approvalId} was already used or rejected`);
    }
    const repo = this.o.repositories.get(repository);
    if (!repo) throw new DeletionRefused('not_found', `repository ${repository} is not configured on this data mover`);
    let deleted = true;
    try {
      await repo.deleteRestorePoint(cmd.restorePointId);
    } catch (e) {
      if (e instanceof RestorePointLockedError) {
        throw new DeletionRefused('locked', `restore point ${cmd.restorePointId} is locked until ${e.retainUntil.toISOString()}: it cannot be deleted before`);
      }
      if ((e as Error).name !== 'RestorePointNotFoundError') throw e;
      deleted = false;
    }
    const streamId = `restorepoint-${cmd.restorePointId}`;
    await this.o.log.append(streamId, [newEvent('RestorePointDeleted', {
      restorePointId: cmd.restorePointId, approvalId: cmd.approvalId, requestedBy: requested.data.requestedBy, approvedBy: granted.data.approvedBy,
    }, { site: this.o.site, actor, streamId, causationId, correlationId: `approval-${cmd.approvalId}`, ...(trace ? { trace } : {}) })], { expectedRevision: 'any' });
    this.o.logger?.info({ restorePointId: cmd.restorePointId, approvalId: cmd.approvalId, actor: actor.id, deleted }, 'restore point deleted (four-eyes)');
    return { restorePointId: cmd.restorePointId, deleted };
  }

  /** Records a restore, with the person who asked for it. */
  async restored(cmd: CommandPayloadMap['RestoreDisk'], result: { restoreId: string; path?: string; sizeBytes: number }, actor: Actor, causationId: string, trace?: TraceContext) {
    const streamId = `restore-${result.restoreId}`;
    await this.o.log.append(streamId, [newEvent('DiskRestored', {
      restoreId: result.restoreId, restorePointId: cmd.restorePointId, disk: cmd.disk, target: cmd.target.kind,
      ...(result.path ? { path: result.path.slice(0, 4096) } : {}), sizeBytes: result.sizeBytes,
    }, { site: this.o.site, actor, streamId, causationId, ...(trace ? { trace } : {}) })], { expectedRevision: 'no_stream' });
  }
}
