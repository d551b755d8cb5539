// Destructive and security-relevant acts of the data mover, recorded with the actor who asked:
// deleting a restore point (only with a four-eyes approval found in the log: requested by one
// person, granted by another, for this restore point, not used before; a locked restore point
// is refused by the repository until its lock ends) and restoring a disk (DiskRestored). On a
// secure site the approval must also carry both people's own signatures with keys an endorsement
// chain vouches for (`checkSignedApproval`); an approval event that fails it is reported as a
// ProvenanceViolation (`person_signature`) naming the identity that wrote it.
import { Refusal, newEvent, type ApprovalAction, type Actor, type CommandPayloadMap, type TraceContext } from '@cairn/contracts';
import { handleCommand, provenanceViolation, type EventLog } from '@cairn/eventlog';
import { checkSignedApproval, loadUserRecords, readTrustRoot, restorePointDecider, type PositionedEvent, type SignedApprovalVerdict } from '@cairn/jobs';
import { RepositoryLockedError, RestorePointLockedError, type Repository } from '@cairn/repository';

/** Why a deletion was refused: a code the command reply carries. */
export class DeletionRefused extends Refusal {
  constructor(override readonly code: 'approval_required' | 'not_found' | 'locked' | 'conflict', message: string) {
    super(code, message);
  }
}

export interface SecurityActsOptions {
  readonly site: string;
  readonly log: EventLog;
  readonly repositories: ReadonlyMap<string, Repository>;
  readonly logger?: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
  /** Repositories deleted while this mover runs (name → why), shared with the DataMover. */
  readonly deletedRepositories?: Map<string, string>;
  /** A secure site: approvals need both people's signatures (docs/security.md, four-eyes). */
  readonly signedApprovals?: boolean;
  /** Key escrow: opens what `site` escrowed here and checks it opens its replica (the secret stays with the caller). */
  readonly checkEscrow?: (site: string) => Promise<{ repositoryId: string; keyIds: string[]; wrappedAt: string }>;
}

export class SecurityActs {
  constructor(private readonly o: SecurityActsOptions) {}

  /**
   * Checks the approval in the log (defence in depth: the gateway checked it too) and deletes
   * the restore point's manifest; its chunks go at the next garbage collection.
   */
  async deleteRestorePoint(cmd: CommandPayloadMap['DeleteRestorePoint'], actor: Actor, causationId: string, trace?: TraceContext, repository = 'default') {
    const verdict = await this.approval(cmd.approvalId, (a) => a.kind === 'delete-restore-point' && a.restorePointId === cmd.restorePointId);
    if (!verdict.ok) throw new DeletionRefused(verdict.code, verdict.message);
    const gone = this.o.deletedRepositories?.get(repository);
    if (gone) throw new DeletionRefused('not_found', `repository ${repository} was deleted (${gone})`);
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
    // Recorded through the restore point's decider, at the revision it read (once per point).
    await handleCommand(this.o.log, `restorepoint-${cmd.restorePointId}`, restorePointDecider, { kind: 'delete', data: {
      restorePointId: cmd.restorePointId, approvalId: cmd.approvalId, requestedBy: verdict.requestedBy, approvedBy: verdict.approvedBy,
    } }, { meta: { site: this.o.site, actor, causationId, correlationId: `approval-${cmd.approvalId}`, ...(trace ? { trace } : {}) } });
    this.o.logger?.info({ restorePointId: cmd.restorePointId, approvalId: cmd.approvalId, actor: actor.id, deleted }, 'restore point deleted (four-eyes)');
    return { restorePointId: cmd.restorePointId, deleted };
  }

  /**
   * Deletes a whole repository: only with a granted `delete-repository` approval for it (checked
   * here in the log), and only when no lock is live (refused with the latest lock's end). Then
   * every object goes, and RepositoryDeleted records both administrators. From then on this
   * mover reports the repository as deleted instead of touching it.
   */
  async deleteRepository(cmd: CommandPayloadMap['DeleteRepository'], actor: Actor, causationId: string, trace?: TraceContext) {
    const verdict = await this.approval(cmd.approvalId, (a) => a.kind === 'delete-repository' && a.repository === cmd.repository);
    if (!verdict.ok) throw new DeletionRefused(verdict.code, verdict.message);
    const gone = this.o.deletedRepositories?.get(cmd.repository);
    if (gone) throw new DeletionRefused('not_found', `repository ${cmd.repository} was deleted already (${gone})`);
    const repo = this.o.repositories.get(cmd.repository);
    if (!repo) throw new DeletionRefused('not_found', `repository ${cmd.repository} is not configured on this data mover`);
    const { repositoryId, location } = repo;
    let report;
    try {
      report = await repo.destroy({ approvalId: cmd.approvalId, requestedBy: verdict.requestedBy, approvedBy: verdict.approvedBy });
    } catch (e) {
      if (e instanceof RepositoryLockedError) {
        throw new DeletionRefused('locked', `repository ${cmd.repository} holds restore points locked until ${e.retainUntil.toISOString()}: it cannot be deleted before then`);
      }
      throw e;
    }
    this.o.deletedRepositories?.set(cmd.repository, `approval ${cmd.approvalId}, requested by ${verdict.requestedBy}, approved by ${verdict.approvedBy}`);
    const streamId = `repository-${repositoryId}`;
    await this.o.log.append(streamId, [newEvent('RepositoryDeleted', {
      repository: cmd.repository, repositoryId, location: location.slice(0, 4096), approvalId: cmd.approvalId,
      requestedBy: verdict.requestedBy, approvedBy: verdict.approvedBy, ...report,
    }, { site: this.o.site, actor, streamId, causationId, correlationId: `approval-${cmd.approvalId}`, ...(trace ? { trace } : {}) })], { expectedRevision: 'any' });
    this.o.logger?.warn({ repository: cmd.repository, repositoryId, location, approvalId: cmd.approvalId, actor: actor.id, ...report }, 'repository deleted (four-eyes)');
    return { repository: cmd.repository, repositoryId, ...report };
  }

  /**
   * Declares another site lost (disaster recovery): only with a granted `declare-site-lost`
   * approval for it (checked here in the log), and only when the key that site escrowed here
   * opens and opens its replica. Then SiteDeclaredLost records both administrators, once per
   * site; restores of that site's replicas open the escrowed key from then on.
   */
  async declareSiteLost(cmd: CommandPayloadMap['DeclareSiteLost'], actor: Actor, causationId: string, trace?: TraceContext) {
    const verdict = await this.approval(cmd.approvalId, (a) => a.kind === 'declare-site-lost' && a.site === cmd.site);
    if (!verdict.ok) throw new DeletionRefused(verdict.code, verdict.message);
    if (cmd.site === this.o.site) throw new DeletionRefused('conflict', `site ${cmd.site} is this site`);
    if (!this.o.checkEscrow) throw new DeletionRefused('not_found', 'this data mover has no key escrow (its site joined no hub with escrow keys)');
    let escrow;
    try {
      escrow = await this.o.checkEscrow(cmd.site);
    } catch (e) {
      throw new DeletionRefused('not_found', `site ${cmd.site} cannot be restored here: ${(e as Error).message}`);
    }
    const streamId = `repository-sitelost-${cmd.site}`;
    try {
      await this.o.log.append(streamId, [newEvent('SiteDeclaredLost', {
        site: cmd.site, repositoryId: escrow.repositoryId, keyIds: escrow.keyIds, escrowWrappedAt: escrow.wrappedAt,
        approvalId: cmd.approvalId, requestedBy: verdict.requestedBy, approvedBy: verdict.approvedBy,
      }, { site: this.o.site, actor, streamId, causationId, correlationId: `approval-${cmd.approvalId}`, ...(trace ? { trace } : {}) })], { expectedRevision: 'no_stream' });
    } catch (e) {
      if ((e as Error).name !== 'WrongExpectedRevisionError') throw e;
      return { site: cmd.site, repositoryId: escrow.repositoryId, declared: false };
    }
    this.o.logger?.warn({ site: cmd.site, repositoryId: escrow.repositoryId, approvalId: cmd.approvalId, actor: actor.id }, 'site declared lost (four-eyes): its escrowed key opens its replicas here');
    return { site: cmd.site, repositoryId: escrow.repositoryId, declared: true };
  }

  /** The approval as this mover reads it in the log; a forged four-eyes event is reported. */
  private async approval(approvalId: string, forThisAct: (a: ApprovalAction) => boolean): Promise<SignedApprovalVerdict> {
    const records: PositionedEvent[] = [];
    for await (const r of this.o.log.readStream(`approval-${approvalId}`)) records.push({ event: r.event, position: r.position });
    if (!this.o.signedApprovals) return checkSignedApproval(approvalId, records, forThisAct);
    const people = records.flatMap((r) => (r.event.type === 'ApprovalRequested' ? [r.event.data.requestedBy] : r.event.type === 'ApprovalGranted' ? [r.event.data.approvedBy] : []));
    const trust = { users: await loadUserRecords(this.o.log, people), root: await readTrustRoot(this.o.log) };
    const verdict = checkSignedApproval(approvalId, records, forThisAct, trust);
    if (!verdict.ok && verdict.offending) {
      const { event, position } = verdict.offending;
      const signedBy = event.provenance?.writer ?? null;
      const violation = provenanceViolation(event, position, { ok: false, failure: 'person_signature', signedBy, message: verdict.message }, { site: this.o.site, detectedBy: 'data-mover' });
      await this.o.log.append(violation.streamId, [violation], { expectedRevision: 'any' })
        .catch((e: unknown) => this.o.logger?.warn({ err: e, eventId: event.id }, 'ProvenanceViolation not recorded'));
      this.o.logger?.warn({ approvalId, eventId: event.id, type: event.type, writtenBy: signedBy }, verdict.message);
    }
    return verdict;
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
