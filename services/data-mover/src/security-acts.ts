// Destructive and security-relevant acts of the data mover, recorded with the actor who asked:
// deleting a restore point (only with a four-eyes approval found in the log: requested by one
// person, granted by another, for this restore point, not used before; a locked restore point
// is refused by the repository until its lock ends) and restoring a disk (DiskRestored).
import { newEvent, verifyApproval, type Actor, type CommandPayloadMap, type KnownEvent, type TraceContext } from '@cairn/contracts';
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
    const verdict = verifyApproval(cmd.approvalId, events, (a) => a.kind === 'delete-restore-point' && a.restorePointId === cmd.restorePointId);
    if (!verdict.ok) throw new DeletionRefused(verdict.code, verdict.message);
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
      restorePointId: cmd.restorePointId, approvalId: cmd.approvalId, requestedBy: verdict.requestedBy, approvedBy: verdict.approvedBy,
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
