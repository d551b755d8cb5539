// Restore as a job (stream `restore-<restoreId>`): a request is recorded through the restore
// decider and put on the work queue `restores`; whichever data mover takes it decides the plan
// once (source, target checks), writes every disk under a temporary name that carries the job
// id and renames it at the end, records each disk and the outcome. A mover that dies stops
// extending its in-progress ack; JetStream redelivers the work, and the next mover follows the
// recorded plan, replaces the dead attempt's temporary file and skips disks already written.
import { randomUUID } from 'node:crypto';
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { verifyApproval, type Actor, type RequestRestoreV1, type RestoreFailureCode, type RestoreWork, type TraceContext } from '@cairn/contracts';
import { fold, handleCommand, type EventLog } from '@cairn/eventlog';
import { initialRestoreState, isRestoreOver, restoreDecider, RestoreCommandRejected, type RestoreCommand, type RestorePlan, type RestoreState } from '@cairn/jobs';
import type { KnownEvent } from '@cairn/contracts';
import type { Manifest, RestorePointReader } from '@cairn/repository';
import { RestoreRefused, type DataMover, type MoverLogger } from './data-mover.service.ts';
import { finishVmRestore, planVmRestore, type DefineRestoredVm } from './vm-restore.ts';
import { planInPlaceRestore, type InPlaceDeps } from './in-place-restore.ts';

export interface RestoreJobsConfig {
  readonly site: string;
  /** The data mover's own identity: it writes the job's progress and outcome. */
  readonly actor: Actor;
  /** Puts the work on the queue (idempotent: JetStream drops a second message with the same id). */
  readonly enqueue: (work: RestoreWork) => Promise<void>;
  /** Live progress, not logged (`cairn.<site>.progress.<restoreId>`). */
  readonly publishProgress: (restoreId: string, p: { disk: string; bytesDone: number; bytesPlanned: number; worker: string; at: string }) => void;
  /** Steps of a disk between two RestoreProgressed events in the log (default 4: every 25 %). */
  readonly loggedSteps?: number;
  /** Whole-VM restore onto libvirt: the coordinator defines the domain (DefineRestoredVm). */
  readonly defineRestoredVm?: DefineRestoredVm;
  /** In-place restore onto libvirt: the coordinator's PrepareInPlaceRestore. */
  readonly prepareInPlace?: InPlaceDeps['prepare'];
  /** In-place restore: the safety backup through the scheduler, waited for. */
  readonly safetyBackup?: InPlaceDeps['safetyBackup'];
}

/** A failure every delivery would meet again: the job fails with this code at once. */
export class RestoreJobRefused extends Error {
  constructor(readonly code: RestoreFailureCode, message: string) {
    super(message);
  }
}

/** What a stream not written yet folds to, at the revision an append to it expects. */
const noStreamYet = (): { state: RestoreState; revision: bigint } => ({ state: initialRestoreState(), revision: -1n });

const refusalCode = (c: RestoreRefused['code']): RestoreFailureCode => (c === 'invalid_command' ? 'invalid' : c);

type RestoreSource = { repo: RestorePointReader; source: 'local' | 'replica'; manifest: Manifest };

/** How long a source opened at a request waits for its work to be taken by this mover. */
const OPENED_FOR_MS = 10_000;

export class RestoreJobs {
  /**
   * The restore point's source (repository, manifest) opened while the request is recorded and
   * queued, for this mover's own run of the work: its plan then starts with the manifest read
   * (docs/benchmarks.md, "2026-12-07: the restore's control path"). Another mover's run, a
   * redelivery or a late one opens it again.
   */
  private readonly opened = new Map<string, { restorePointId: string; repository: string; source: Promise<RestoreSource> }>();

  constructor(
    private readonly config: RestoreJobsConfig,
    private readonly log: EventLog,
    private readonly mover: DataMover,
    private readonly logger: MoverLogger,
  ) {}

  private async decide(restoreId: string, command: RestoreCommand, actor: Actor, causationId: string | null, trace?: TraceContext, known?: { state: RestoreState; revision: bigint }) {
    return handleCommand(this.log, `restore-${restoreId}`, restoreDecider, command, {
      meta: { site: this.config.site, actor, correlationId: restoreId, causationId, ...(trace ? { trace } : {}) },
      ...(known ? { known } : {}),
    });
  }

  /** Records the request (the requester as actor) and queues the work; a retry changes nothing. */
  async request(cmd: RequestRestoreV1, actor: Actor, ownTarget: boolean, commandId: string, trace?: TraceContext): Promise<{ restoreId: string }> {
    const restoreId = cmd.restoreId ?? randomUUID();
    const data = {
      restoreId, restorePointId: cmd.restorePointId, repository: cmd.repository ?? 'default', target: cmd.target, ownTarget,
      ...(cmd.bandwidthBytesPerSec ? { bandwidthBytesPerSec: cmd.bandwidthBytesPerSec } : {}),
    };
    const t = cmd.target;
    if (t.kind === 'vm' && t.inPlace && t.approvalId) {
      // The approval is checked while it is unused (the gateway records it carried out once this is accepted).
      const events: KnownEvent[] = [];
      for await (const r of this.log.readStream(`approval-${t.approvalId}`)) events.push(r.event);
      const verdict = verifyApproval(t.approvalId, events, (a) => a.kind === 'restore-in-place' && a.vm === t.vmName && a.restorePointId === cmd.restorePointId);
      if (!verdict.ok) throw new RestoreRefused(verdict.code === 'conflict' ? 'conflict' : 'forbidden', verdict.message);
    }
    // Opened beside the append and the queue's publish (both wait for JetStream), taken by the plan.
    this.open(restoreId, cmd.restorePointId, data.repository);
    let recorded;
    try {
      // A restore id's stream is new but for a retry: decide on the empty stream and append
      // expecting none (one publish, no read); the log refuses it if the stream exists, and the
      // decider then decides again on what the stream holds.
      recorded = await this.decide(restoreId, { kind: 'request', data }, actor, commandId, trace, noStreamYet());
    } catch (e) {
      if (e instanceof RestoreCommandRejected) throw new RestoreRefused('conflict', e.message);
      throw e;
    }
    // Only when this call recorded the request is the stream known to say just that.
    const event = recorded.events.length === 1 ? recorded.events[0]! : undefined;
    await this.config.enqueue({
      ...data,
      ...(event ? { requested: { revision: Number(recorded.revision), eventId: event.id, requester: actor, requestedAt: event.time } } : {}),
    });
    this.logger.info({ restoreId, restorePointId: cmd.restorePointId, target: cmd.target }, 'restore requested');
    return { restoreId };
  }

  private open(restoreId: string, restorePointId: string, repository: string): void {
    // Not in this turn: the append's publish leaves first.
    const source = Promise.resolve().then(() => this.mover.restoreSource(restorePointId, repository));
    source.catch(() => undefined); // the plan meets the error if its work comes
    this.opened.set(restoreId, { restorePointId, repository, source });
    setTimeout(() => {
      if (this.opened.get(restoreId)?.source === source) this.opened.delete(restoreId);
    }, OPENED_FOR_MS).unref();
  }

  /** The restore point's source: the one opened at the request when it is this work's, else opened now. */
  private source(work: RestoreWork): Promise<RestoreSource> {
    const o = this.opened.get(work.restoreId);
    this.opened.delete(work.restoreId);
    return o && o.restorePointId === work.restorePointId && o.repository === work.repository ? o.source : this.mover.restoreSource(work.restorePointId, work.repository);
  }

  private async state(restoreId: string): Promise<RestoreState> {
    const events: KnownEvent[] = [];
    for await (const r of this.log.readStream(`restore-${restoreId}`)) events.push(r.event);
    return fold(restoreDecider, events);
  }

  /** The plan of a first attempt: where the point is read, where each file goes; refusals fail the job. */
  private async plan(work: RestoreWork, heartbeat: () => void): Promise<{ plan: RestorePlan; repo: RestorePointReader }> {
    try {
      const { repo, source, manifest } = await this.source(work);
      return { plan: await this.planOn(work, heartbeat, repo, source, manifest), repo };
    } catch (e) {
      if (e instanceof RestoreRefused) throw new RestoreJobRefused(refusalCode(e.code), e.message);
      throw e;
    }
  }

  private async planOn(work: RestoreWork, heartbeat: () => void, repo: RestorePointReader, source: RestoreSource['source'], manifest: Manifest): Promise<RestorePlan> {
    const t = work.target;
    if (t.kind === 'vm' && t.inPlace) {
      if (!t.host) throw new RestoreJobRefused('invalid', 'an in-place restore names the hypervisor of the VM (host)');
      const { prepareInPlace: prepare, safetyBackup } = this.config;
      if (!prepare || !safetyBackup) throw new Error('this data mover cannot reach the snapshot coordinator and the scheduler for an in-place restore');
      const { disks, vm } = await planInPlaceRestore(work.restoreId, manifest, t, { log: this.log, prepare, safetyBackup, heartbeat });
      return { source, sourceLocation: repo.location, disks, vm };
    }
    if (t.kind === 'vm') {
      // Disks attached to an existing vSphere VM are written in a directory of this restore's own.
      const dirName = t.attach ? `${t.vmName}-disks-${work.restoreId}` : t.vmName;
      const dir = await this.mover.checkRestoreTarget(join(t.storage ?? this.mover.defaultVmStorage(), dirName), work.ownTarget);
      if (await stat(dir).then(() => true, () => false)) throw new RestoreRefused('conflict', `${dir} exists: a VM named ${t.vmName} was restored there before; choose another --vm name`);
      const { disks, vm } = planVmRestore(work.restoreId, manifest, t, dir);
      return { source, sourceLocation: repo.location, disks, vm };
    }
    const disk = manifest.disks.find((d) => d.name === t.disk);
    if (!disk) throw new RestoreRefused('not_found', `restore point ${work.restorePointId} has no disk ${t.disk} (has ${manifest.disks.map((d) => d.name).join(', ')})`);
    const path = await this.mover.checkRestoreTarget(t.path, work.ownTarget);
    if (!t.overwrite && await stat(path).then(() => true, () => false)) throw new RestoreRefused('conflict', `${path} exists; pass --force to replace it`);
    return {
      source, sourceLocation: repo.location,
      disks: [{ disk: disk.name, path, partialPath: `${path}.cairn-restore-${work.restoreId}`, format: t.format, sizeBytes: disk.sizeBytes }],
    };
  }

  /**
   * Runs one delivery of the work; throws to have it redelivered. A first delivery of work that
   * says where the request left the stream starts the job there without reading it (a stream
   * that moved on is read by the decider's retry); a redelivery reads it.
   */
  async run(work: RestoreWork, heartbeat: () => void, redelivered = false): Promise<'completed' | 'skipped'> {
    return this.mover.whileBusy(() => this.runOnce(work, heartbeat, redelivered));
  }

  private async runOnce(work: RestoreWork, heartbeat: () => void, redelivered: boolean): Promise<'completed' | 'skipped'> {
    const restoreId = work.restoreId;
    const sent = work.requested && !redelivered ? work.requested : undefined;
    const state: RestoreState = sent ? {
      ...initialRestoreState(), status: 'requested', requester: sent.requester, requestedAt: sent.requestedAt, lastEventId: sent.eventId,
      request: {
        restoreId, restorePointId: work.restorePointId, repository: work.repository, target: work.target, ownTarget: work.ownTarget,
        ...(work.bandwidthBytesPerSec ? { bandwidthBytesPerSec: work.bandwidthBytesPerSec } : {}),
      },
    } : await this.state(restoreId);
    if (state.status === 'none') throw new RestoreJobRefused('not_found', `restore ${restoreId} was never requested`);
    if (isRestoreOver(state)) return 'skipped';
    const actor = this.config.actor;
    // A first attempt plans on the source it opens (or the request opened); it writes from that one too.
    const planned = state.plan ? undefined : await this.plan(work, heartbeat);
    const plan = state.plan ?? planned!.plan;
    const started = await this.decide(restoreId, { kind: 'start', worker: this.mover.worker, plan }, actor, state.lastEventId ?? null, undefined,
      sent ? { state, revision: BigInt(sent.revision) } : undefined);
    const attempt = started.state.attempts;
    // This mover is the stream's only writer while it runs the job: each later decision starts
    // from the state and revision the previous one left (no read of the stream per progress
    // step, disk and end); an append that meets another writer's event reads it and decides again.
    let known = { state: started.state, revision: started.revision };
    const record = async (command: RestoreCommand, by: Actor, causation: string | null) => {
      const r = await this.decide(restoreId, command, by, causation, undefined, known);
      known = { state: r.state, revision: r.revision };
      return r;
    };
    const repo = planned?.repo ?? (await this.mover.restoreSource(work.restorePointId, work.repository).catch((e: unknown) => {
      if (e instanceof RestoreRefused) throw new RestoreJobRefused(refusalCode(e.code), e.message);
      throw e;
    })).repo;
    const begunAt = Date.now();
    this.logger.info({ restoreId, restorePointId: work.restorePointId, worker: this.mover.worker, attempt, disks: plan.disks.map((d) => d.disk), skip: [...started.state.written.keys()] }, 'restore started');
    // The requester is the actor of DiskRestored: who restored what, to where (docs/audit-siem.md).
    const requester = started.state.requester ?? actor;
    let cause = started.events.at(-1)?.id ?? null;
    // The VM is built in its staging directory; once renamed into place (by an attempt that died
    // before recording the end) every disk is written and only the last steps remain.
    if (plan.vm && !(await stat(plan.vm.dir).then(() => true, () => false))) await mkdir(plan.vm.stagingDir, { recursive: true, mode: 0o700 });
    // One throttle for the whole job: its own limit (the request's) and the host's and site's.
    const throttle = this.mover.restoreThrottle(work.bandwidthBytesPerSec ?? started.state.request?.bandwidthBytesPerSec);
    for (const d of plan.disks) {
      if (started.state.written.has(d.disk)) continue;
      const steps = this.config.loggedSteps ?? 4;
      let logged = 0; let lastBeat = 0; let lastPublish = 0;
      let logging: Promise<unknown> = Promise.resolve();
      const result = await repo.restoreDisk(work.restorePointId, d.disk, d.writePath ?? d.path, {
        format: d.format, overwrite: true, partialPath: d.partialPath,
        ...(throttle ? { throttle: (bytes: number) => throttle.take(bytes) } : {}),
        onProgress: (done, total) => {
          const now = Date.now();
          if (now - lastBeat >= 1000) { lastBeat = now; heartbeat(); }
          if (now - lastPublish >= 250 || done === total) {
            lastPublish = now;
            this.config.publishProgress(restoreId, { disk: d.disk, bytesDone: done, bytesPlanned: total, worker: this.mover.worker, at: new Date(now).toISOString() });
          }
          const step = total > 0 ? Math.floor((done / total) * steps) : steps;
          if (step > logged && step < steps) {
            logged = step;
            logging = logging.then(() => record({ kind: 'progress', disk: d.disk, bytesDone: done, bytesTotal: total }, actor, cause))
              .catch((e: unknown) => this.logger.warn({ restoreId, err: (e as Error).message }, 'restore progress not recorded'));
          }
        },
      });
      await logging;
      // The split of the disk's time (docs/benchmarks.md reads it): chunks written, synced, renamed.
      this.logger.info({
        restoreId, disk: d.disk, chunksRead: result.chunksRead, chunksZero: result.chunksZero, restoreTimings: result.timings,
        ...(result.dropBehindUnavailable ? { dropBehindUnavailable: result.dropBehindUnavailable } : {}),
      }, 'restore disk written');
      const written = await record({ kind: 'diskWritten', disk: d.disk, sizeBytes: result.sizeBytes, actorPath: d.path }, requester, cause);
      cause = written.events.at(-1)?.id ?? cause;
      heartbeat();
    }
    const vm = plan.vm ? await finishVmRestore(plan.vm, plan.disks, restoreId, this.config.defineRestoredVm) : undefined;

    if (vm) this.logger.info({ restoreId, vm: vm.name, dir: vm.dir, uuid: vm.uuid, started: vm.started, pid: vm.pid }, 'VM restored');
    await record({ kind: 'complete', durationMs: Date.now() - begunAt, ...(vm ? { vm } : {}) }, actor, cause);
    this.logger.info({ restoreId, attempt, durationMs: Date.now() - begunAt }, 'restore completed');
    return 'completed';
  }

  /** Ends the job for good with the reason (nothing is left under the target name). */
  async fail(restoreId: string, code: RestoreFailureCode, reason: string): Promise<void> {
    this.logger.warn({ restoreId, code, reason }, 'restore failed');
    await this.decide(restoreId, { kind: 'fail', code, reason }, this.config.actor, null).catch((e: unknown) => {
      this.logger.warn({ restoreId, err: (e as Error).message }, 'RestoreFailed not recorded');
    });
  }
}
