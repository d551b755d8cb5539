// Verify jobs: on a schedule (per repository, one per slot: the first mover to record
// VerifyStarted in `verify-<id>` runs it), re-read and check the restore points not verified
// within N days (PBS-style; what was checked, and when, is in the log's VerifyCompleted events),
// all of their chunks or a sampled fraction. Every restore point that uses a damaged object gets
// RestorePointDamaged, which the scheduler turns into a healing backup of its VM.
import { WrongExpectedRevisionError, handleCommand, type EventLog } from '@cairn/eventlog';
import { newEvent, type Actor, type EventDataMap } from '@cairn/contracts';
import { restorePointDecider } from '@cairn/jobs';
import type { Repository } from '@cairn/repository';

export interface VerifyJobOptions {
  readonly verifyId: string;
  readonly trigger: 'schedule' | 'manual' | 'replication';
  /** Restore points verified more recently than this are skipped (0: check all). */
  readonly olderThanDays: number;
  /** Fraction of the chosen points' distinct chunks read (1: all). */
  readonly sample: number;
  readonly now: Date;
  /** Awaited before each chunk is read (VerifyOptions.pace): a scheduled verify yields to backups there. */
  readonly pace?: () => Promise<void>;
}

export interface VerifyJobDeps {
  readonly log: EventLog;
  readonly site: string;
  readonly actor: Actor;
}

export type VerifyOutcome = EventDataMap['VerifyCompleted'];

/** When each restore point of `repository` was last verified (from VerifyCompleted in the log). */
async function lastVerified(log: EventLog, repository: string): Promise<Map<string, number>> {
  const at = new Map<string, number>();
  for await (const r of log.readAll({ category: 'verify', onInvalid: () => undefined })) {
    if (r.event.type !== 'VerifyCompleted' || r.event.data.repository !== repository) continue;
    for (const id of r.event.data.restorePoints) at.set(id, Date.parse(r.event.time));
  }
  return at;
}

/** Runs one verify job; undefined when another mover recorded this slot's start first. */
export async function runVerifyJob(deps: VerifyJobDeps, name: string, repo: Pick<Repository, 'listRestorePoints' | 'verify'>, o: VerifyJobOptions): Promise<VerifyOutcome | undefined> {
  const started = Date.now();
  const streamId = `verify-${o.verifyId}`;
  const meta = { site: deps.site, actor: deps.actor, streamId, correlationId: streamId };
  const checked = await lastVerified(deps.log, name);
  const cutoff = o.now.getTime() - o.olderThanDays * 86_400_000;
  const points = await repo.listRestorePoints();
  const vmOf = new Map(points.map((p) => [p.id, p.vm.id]));
  const chosen = points.filter((p) => o.olderThanDays === 0 || (checked.get(p.id) ?? 0) <= cutoff).map((p) => p.id);
  try {
    await deps.log.append(streamId, [newEvent('VerifyStarted', {
      verifyId: o.verifyId, repository: name, trigger: o.trigger, restorePoints: chosen.length, olderThanDays: o.olderThanDays, sample: o.sample,
    }, meta)], { expectedRevision: 'no_stream' });
  } catch (e) {
    if (e instanceof WrongExpectedRevisionError) return undefined;
    throw e;
  }
  const report = chosen.length
    ? await repo.verify({ restorePoints: chosen, sample: o.sample, ...(o.pace ? { pace: o.pace } : {}) })
    : { ok: true, restorePoints: [], chunksTotal: 0, chunksChecked: 0, bytesChecked: 0, pagesChecked: 0, damaged: [] };
  const damaged = report.damaged.map((d) => ({ kind: d.kind, id: d.id, damage: d.damage }));
  const byPoint = new Map<string, typeof damaged>();
  for (const d of report.damaged) {
    for (const u of d.uses) {
      const list = byPoint.get(u.restorePointId) ?? [];
      if (!list.some((x) => x.id === d.id)) list.push({ kind: d.kind, id: d.id, damage: d.damage });
      byPoint.set(u.restorePointId, list);
    }
  }
  for (const [restorePointId, list] of byPoint) {
    await handleCommand(deps.log, `restorepoint-${restorePointId}`, restorePointDecider, {
      kind: 'damaged',
      data: { restorePointId, vmId: vmOf.get(restorePointId) ?? 'unknown', verifyId: o.verifyId, damaged: list.slice(0, 100), damagedCount: list.length },
    }, { meta: { site: deps.site, actor: deps.actor, correlationId: streamId, causationId: null } });
  }
  const outcome: VerifyOutcome = {
    verifyId: o.verifyId, repository: name, restorePoints: [...report.restorePoints],
    chunksTotal: report.chunksTotal, chunksChecked: report.chunksChecked, bytesChecked: report.bytesChecked, pagesChecked: report.pagesChecked,
    damagedCount: damaged.length, damaged: damaged.slice(0, 100), affectedRestorePoints: [...byPoint.keys()], durationMs: Date.now() - started,
  };
  await deps.log.append(streamId, [newEvent('VerifyCompleted', outcome, meta)], { expectedRevision: 0n });
  return outcome;
}

/** The verify id of a repository's scheduled slot: the same for every mover, so one runs it. */
export function verifySlotId(repository: string, everyMs: number, now: Date): string {
  const slot = Math.floor(now.getTime() / everyMs) * everyMs;
  return `${repository.replace(/[^A-Za-z0-9_-]/g, '_')}-${new Date(slot).toISOString().replace(/[-:.]/g, '').replace('T', 't').replace('Z', 'z')}`;
}
