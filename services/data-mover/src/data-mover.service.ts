// The data mover: takes transfer work, records the job's transfer phase in its stream, runs
// the transfer, commits, and reports progress; restores disks; lets expired restore points go.
// Stateless: what it knows about a job comes with the work (where the scheduler left the job's
// stream, the lock of an immutable policy); it reads the stream only on a redelivery or when
// the stream moved on since.
import { randomUUID } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Refusal, immutabilityLockUntil, type Actor, type CommandPayloadMap, type CommandResultMap, type KnownEvent, type PolicyRetention } from '@cairn/contracts';
import { fold, handleCommand, type EventLog } from '@cairn/eventlog';
import { isTerminal, jobDecider, jobStateAsSent, JobRefusedError, policyDecider, restorePointDecider, type JobCommand, type JobState, type TransferWork } from '@cairn/jobs';
import type { Static } from '@sinclair/typebox';
import { RestorePointLockedError, type Manifest, type MaintenanceRole, type RestorePointReader, type RestorePointWriter, type RetentionRole } from '@cairn/repository';

/**
 * The roles a data mover takes on each configured repository: it writes backups, restores,
 * applies retention and collects the garbage retention leaves.
 */
export type MoverRepository = RestorePointWriter & RestorePointReader & RetentionRole & Pick<MaintenanceRole, 'repositoryId' | 'gc'>;
import { runTransfer, type TransferProgress } from './transfer.ts';
import { runTestRestore } from './test-restore.ts';
import { tmpdir } from 'node:os';
import type { RestoreExports } from './restore-exports.ts';
import { checkRestoreTarget, RestoreTargetRefused } from './restore-target.ts';
import { TransferBandwidth, type Throttle } from './bandwidth.ts';
import { ReadBufferPool } from './read-buffers.ts';

/** How often a transfer reports its progress (and renews its work's ack timer) at most. */
const PROGRESS_EVERY_MS = 500;

const withThrottle = (throttle: Throttle | undefined) => (throttle ? { throttle } : {});

export interface DataMoverConfig {
  readonly site: string;
  readonly actor: Actor;
  /** Restores write files only below these directories (and a person's own signed target elsewhere). */
  readonly restoreRoots: readonly string[];
  /** Never written by a restore: the repository, secrets, security material, the event store, the state file. */
  readonly forbiddenRestorePaths?: readonly string[];
  /** The stack's data directory: no restore inside it except below a root there (`<data>/restores`). */
  readonly dataDir?: string;
  readonly connections: number;
  /**
   * What an incremental reads from the hypervisor: only the changed blocks (default; the rest of
   * each chunk is the parent's, referred to without reading it) or the whole chunks holding them
   * (transfer.ts `unchangedFrom`).
   */
  readonly incrementalReads?: 'changed-blocks' | 'whole-chunks';
  /** The host's and the site's bandwidth, shared by every transfer of this mover (bandwidth.ts). */
  readonly bandwidth?: TransferBandwidth;
  /**
   * Finds a restore point the site's own repository does not hold: a replica of another
   * site's repository kept here (disaster recovery at a surviving site).
   */
  readonly locateRestorePoint?: (restorePointId: string) => Promise<RestorePointReader | undefined>;
  /** Repositories deleted (four-eyes) while this mover ran: name → why they are gone. Shared with SecurityActs. */
  readonly deletedRepositories?: Map<string, string>;
}

/** The log lines the data mover writes (pino's shape). */
export interface MoverLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface ProgressSink {
  publish(jobId: string, progress: TransferProgress & { worker: string; at: string }): void;
}

/** A failure the same work can never get past (bad repository, corrupt parent): do not retry. */
export class TransferRefused extends Refusal {
  constructor(message: string) {
    super('not_found', message);
  }
}

export class RestoreRefused extends Refusal {
  constructor(override readonly code: 'not_found' | 'conflict' | 'forbidden' | 'invalid_command', message: string) {
    super(code, message);
  }
}

export class DataMover {
  readonly worker = `data-mover@${process.pid}-${randomUUID().slice(0, 8)}`;

  /** The host's and site's limits; none configured still holds each job to its own. */
  private readonly bandwidth: TransferBandwidth;

  /** The NBD read buffers this mover's transfers hand on to each other (read-buffers.ts). */
  private readonly readBuffers = new ReadBufferPool();

  /** The limits of one restore job (restore-job.ts): its own (the request's), the host's and the site's. */
  restoreThrottle(jobBytesPerSec?: number): Throttle | undefined {
    return this.bandwidth.forJob(jobBytesPerSec);
  }

  constructor(
    private readonly config: DataMoverConfig,
    private readonly log: EventLog,
    private readonly repositories: ReadonlyMap<string, MoverRepository>,
    private readonly progress: ProgressSink,
    private readonly logger: MoverLogger = { info: () => undefined, warn: () => undefined },
    private readonly exports?: RestoreExports,
  ) {
    this.bandwidth = config.bandwidth ?? new TransferBandwidth();
  }

  /** The repository held under `name` (or deleted since), else RestoreRefused not_found. */
  describeRepository(name: string): { repository: string; repositoryId: string; deleted?: string } {
    const gone = this.config.deletedRepositories?.get(name);
    if (gone) return { repository: name, repositoryId: '', deleted: gone };
    try {
      return { repository: name, repositoryId: this.repository(name).repositoryId };
    } catch (e) {
      throw new RestoreRefused('not_found', (e as Error).message);
    }
  }

  private repository(name: string): MoverRepository {
    const gone = this.config.deletedRepositories?.get(name);
    if (gone) throw new TransferRefused(`repository ${JSON.stringify(name)} was deleted (${gone}): nothing can be written to or read from it`);
    const repo = this.repositories.get(name);
    if (!repo) throw new TransferRefused(`repository ${JSON.stringify(name)} is not configured on this data mover (have: ${[...this.repositories.keys()].join(', ')})`);
    return repo;
  }

  private async decide(jobId: string, command: JobCommand, causationId: string | null): Promise<string | null> {
    const r = await handleCommand(this.log, `job-${jobId}`, jobDecider, command, {
      meta: { site: this.config.site, actor: this.config.actor, correlationId: jobId, causationId },
    });
    return r.events.at(-1)?.id ?? r.state.lastEventId ?? causationId;
  }

  /**
   * Handles one transfer delivery; throws to have it redelivered. A first delivery decides on
   * the job as the scheduler queued it (no read); a redelivery reads the job's stream once.
   */
  async transfer(work: TransferWork, redelivered = false): Promise<'committed' | 'skipped'> {
    return this.whileBusy(() => this.transferOnce(work, redelivered));
  }

  /** Transfers and restore jobs under way in this mover now (a scheduled verify waits while there are any). */
  jobsRunning = 0;

  /** Runs a job's work counted in `jobsRunning`. */
  async whileBusy<T>(work: () => Promise<T>): Promise<T> {
    this.jobsRunning++;
    try {
      return await work();
    } finally {
      this.jobsRunning--;
    }
  }

  private async transferOnce(work: TransferWork, redelivered: boolean): Promise<'committed' | 'skipped'> {
    const streamId = `job-${work.jobId}`;
    let known: { state: JobState; revision: bigint; position?: bigint; cause: string | null; committedAt?: string };
    if (work.jobRevision !== undefined && !redelivered) {
      known = { state: jobStateAsSent({ jobId: work.jobId, snapshotId: work.snapshotId, transferQueued: true }), revision: BigInt(work.jobRevision), cause: work.causationId ?? null,
        ...(work.jobPosition !== undefined ? { position: BigInt(work.jobPosition) } : {}) };
    } else {
      const events = [];
      let revision = -1n;
      for await (const r of this.log.readStream(streamId)) { events.push(r.event); revision = r.revision; }
      const state = fold(jobDecider, events);
      known = { state, revision, cause: state.lastEventId ?? null, committedAt: events.find((e) => e.type === 'RestorePointCommitted')?.time };
    }
    const skip = async (state: JobState, committedAt: string | undefined): Promise<'skipped' | undefined> => {
      if (state.status === 'none') throw new TransferRefused(`job ${work.jobId} does not exist`);
      if (state.committed) {
        // Delivered again after the commit (a mover died before acknowledging): the lock of an
        // immutable policy may be missing, so make sure of it (extend-only, idempotent).
        await this.lockForPolicy(work, state.committed.restorePointId, new Date(committedAt ?? state.phaseSince ?? Date.now()), state.lastEventId ?? null);
        return 'skipped';
      }
      return isTerminal(state) ? 'skipped' : undefined;
    };
    const before = await skip(known.state, known.committedAt);
    if (before) return before;
    // Only a delivery that started the transfer (TransferStarted, appended before any write) can
    // have committed this job's restore point and died before recording it: the repository is
    // asked (every restore point listed) only then, not on every redelivery of work still queued.
    const startedBefore = redelivered && known.state.transfer?.worker !== undefined;
    let started;
    try {
      started = await handleCommand(this.log, streamId, jobDecider, { kind: 'startTransfer', worker: this.worker }, {
        meta: { site: this.config.site, actor: this.config.actor, correlationId: work.jobId, causationId: known.cause },
        known: { state: known.state, revision: known.revision, position: known.position },
      });
    } catch (e) {
      // The stream moved on to the job's end (cancelled, failed by a timeout) meanwhile.
      if (e instanceof JobRefusedError && e.code === 'ended') return 'skipped';
      if (e instanceof JobRefusedError) throw new TransferRefused(e.message);
      throw e;
    }
    if (started.events.length === 0) {
      const after = await skip(started.state, undefined);
      if (after) return after;
    }
    const repo = this.repository(work.repository);
    this.logger.info({ jobId: work.jobId, vmId: work.vmId, worker: this.worker, disks: work.nbd.exports.map((e) => `${e.disk}:${e.mode}`) }, 'transfer started');
    const startedAt = Date.now();
    let lastReport = 0;
    const config = work.consistency || work.vmConfig ? { ...(work.consistency ? { consistency: work.consistency } : {}), ...(work.vmConfig ? { hypervisor: work.vmConfig } : {}) } : undefined;
    const result = await runTransfer({
      jobId: work.jobId, vm: { id: work.vmId, name: work.vmName, ...(config ? { config } : {}) }, nbd: work.nbd, mode: work.mode,
      ...(work.parent !== undefined ? { parent: work.parent } : {}), redelivered: startedBefore, ...(work.fileIndex === false ? { fileIndex: false } : {}),
      ...(work.heal?.length ? { heal: work.heal } : {}),
    }, {
      repository: repo,
      buffers: this.readBuffers,
      connections: this.config.connections,
      unchangedFrom: this.config.incrementalReads === 'whole-chunks' ? 'source' : 'parent',
      ...withThrottle(this.bandwidth.forJob(work.bandwidthBytesPerSec)),
      onProgress: (p) => {
        // The first report, then at most one per PROGRESS_EVERY_MS, and each disk's last: a
        // report per extent was two NATS messages per changed chunk (an incremental's extents
        // are mostly single chunks). No in-progress ack with it: the consumer keeps the work
        // alive on its own timer (a third of the ack wait), and an ack per report was 2-3 more
        // messages per job to the consumer's leader (scale.ts --count-subjects: $JS.ACK 3.9 per job).
        const now = Date.now();
        if (now - lastReport < PROGRESS_EVERY_MS && p.bytesDone !== p.bytesPlanned) return;
        lastReport = now;
        this.progress.publish(work.jobId, { ...p, worker: this.worker, at: new Date(now).toISOString() });
      },
    });
    await handleCommand(this.log, streamId, jobDecider, {
      kind: 'commit',
      data: {
        restorePointId: result.restorePointId,
        jobId: work.jobId,
        vmId: work.vmId,
        parentId: result.parentId,
        disks: result.disks.map((d) => ({ name: d.name, sizeBytes: d.sizeBytes, bytesRead: d.bytesRead, bytesStored: d.bytesStored, chunksNew: d.chunksNew, chunksReused: d.chunksReused })),
      },
    }, {
      meta: { site: this.config.site, actor: this.config.actor, correlationId: work.jobId, causationId: started.events.at(-1)?.id ?? started.state.lastEventId ?? known.cause },
      known: { state: started.state, revision: started.revision, position: started.position },
    });
    // Before the work is acknowledged: a mover that dies between the commit and the lock gets
    // the work delivered again and locks then (the branch above).
    await this.lockForPolicy(work, result.restorePointId, new Date(), null);
    this.logger.info({
      jobId: work.jobId, restorePointId: result.restorePointId, parentId: result.parentId, durationMs: Date.now() - startedAt, timings: result.timings,
      disks: result.disks.map((d) => ({ disk: d.name, mode: d.mode, reason: d.reason, bytesRead: d.bytesRead, bytesStored: d.bytesStored })),
    }, 'restore point committed');
    return 'committed';
  }

  /**
   * A restore point of an immutable policy is locked as soon as it is committed, until the end
   * of its retention period (`immutabilityLockUntil`), by this service's identity, through the
   * same path as LockRestorePoint. Nothing happens when the log already records a lock that long.
   */
  private async lockForPolicy(work: TransferWork, restorePointId: string, committedAt: Date, causationId: string | null): Promise<void> {
    if (!work.policyId) return;
    const retention = work.lockRetention !== undefined ? work.lockRetention : await this.policyLock(work.policyId);
    if (!retention) return;
    const until = immutabilityLockUntil(retention, committedAt);
    if (!until || until.getTime() <= Date.now()) return;
    for await (const r of this.log.readStream(`restorepoint-${restorePointId}`)) {
      if (r.event.type === 'RestorePointLocked' && Date.parse(r.event.data.retainUntil) >= until.getTime()) return;
    }
    await this.lock({ restorePointId, retainUntil: until.toISOString() }, this.config.actor, causationId ?? `commit-${restorePointId}`, work.repository);
    this.logger.info({ restorePointId, policyId: work.policyId, retainUntil: until.toISOString() }, 'restore point of an immutable policy locked until the end of its retention');
  }

  /** Work queued without the lock (by an older scheduler): the policy's stream says. */
  private async policyLock(policyId: string): Promise<Static<typeof PolicyRetention> | null> {
    const events: KnownEvent[] = [];
    for await (const r of this.log.readStream(`policy-${policyId}`)) events.push(r.event);
    const policy = fold(policyDecider, events).policy;
    return policy?.immutable ? policy.retention : null;
  }

  /** Gives up on a job whose transfer cannot succeed; the scheduler then releases its snapshot. */
  async failJob(jobId: string, reason: string): Promise<void> {
    this.logger.warn({ jobId, reason }, 'transfer failed for good');
    await this.decide(jobId, { kind: 'fail', phase: 'transfer', reason, retryable: false }, null).catch(() => undefined);
  }

  /** Where restores may write (docs/security.md, Restore targets); `ownTarget`: the person's own signed `--to`. */
  async allowedTarget(path: string, ownTarget: boolean): Promise<string> {
    try {
      return await checkRestoreTarget(path, {
        roots: this.config.restoreRoots, forbidden: this.config.forbiddenRestorePaths ?? [],
        ...(this.config.dataDir !== undefined ? { dataDir: this.config.dataDir } : {}), ownTarget,
      });
    } catch (e) {
      if (e instanceof RestoreTargetRefused) throw new RestoreRefused(e.code, e.message);
      throw e;
    }
  }

  async restore(cmd: CommandPayloadMap['RestoreDisk'], repository = 'default', opts: { readonly ownTarget?: boolean } = {}) {
    if (cmd.target.kind === 'nbd-export') return this.export(cmd, cmd.target.exportName, repository);
    if (cmd.target.kind !== 'file') throw new RestoreRefused('invalid_command', `restore to ${cmd.target.kind} is not supported by this data mover yet; restore to a file or an NBD export`);
    const target = await this.allowedTarget(cmd.target.path, opts.ownTarget === true);
    const exists = await stat(target).then(() => true, () => false);
    if (exists && !cmd.overwrite) throw new RestoreRefused('conflict', `${target} exists; pass --force to replace it`);
    let repo: RestorePointReader = this.repository(repository);
    const ids = new Set((await repo.listRestorePoints()).map((p) => p.id));
    if (!ids.has(cmd.restorePointId)) {
      const replica = await this.config.locateRestorePoint?.(cmd.restorePointId);
      if (!replica) throw new RestoreRefused('not_found', `no restore point ${cmd.restorePointId} in repository ${repository}`);
      this.logger.info({ restorePointId: cmd.restorePointId, replica: replica.location }, 'restoring from a replica of another site');
      repo = replica;
    }
    const startedAt = Date.now();
    const result = await repo.restoreDisk(cmd.restorePointId, cmd.disk, target, { format: cmd.format ?? 'raw', overwrite: cmd.overwrite ?? false });
    return { restoreId: randomUUID(), path: result.path, sizeBytes: result.sizeBytes, durationMs: Date.now() - startedAt };
  }

  /**
   * Where a restore point is read: the named repository of this site, or else a replica of
   * another site's repository kept here. Decided once per restore job (restore-job.ts).
   */
  async restoreSource(restorePointId: string, repository = 'default'): Promise<{ repo: RestorePointReader; source: 'local' | 'replica'; manifest: Manifest }> {
    const own = this.repository(repository);
    const manifest = await own.getManifest(restorePointId).catch((e: Error) => {
      if (e.name === 'RestorePointNotFoundError') return undefined;
      throw e;
    });
    if (manifest) return { repo: own, source: 'local', manifest };
    // A replica this site cannot open (no key for it here: the site was not declared lost; its
    // escrow missing) is refused at once with the reason, not retried as a passing fault: a restore
    // job would try it five times over half a minute and say the same.
    const replica = await this.config.locateRestorePoint?.(restorePointId).catch((e: unknown) => {
      throw new RestoreRefused('forbidden', e instanceof Error ? e.message : String(e));
    });
    if (!replica) throw new RestoreRefused('not_found', `no restore point ${restorePointId} in repository ${repository}`);
    this.logger.info({ restorePointId, replica: replica.location }, 'restoring from a replica of another site');
    return { repo: replica, source: 'replica', manifest: await replica.getManifest(restorePointId) };
  }

  /** Where a whole-VM restore makes the VM's directory when the request names no storage. */
  defaultVmStorage(): string {
    const root = this.config.restoreRoots[0];
    if (!root) throw new RestoreRefused('invalid_command', 'this data mover has no restore directory: name the storage of the VM');
    return join(root, 'vms');
  }

  /** The restore-target rule (docs/security.md), for the restore job. */
  checkRestoreTarget(path: string, ownTarget: boolean): Promise<string> {
    return this.allowedTarget(path, ownTarget);
  }

  /** Serves a restore point over NBD, read-write with an overlay (instant recovery's ground). */
  private async export(cmd: CommandPayloadMap['RestoreDisk'], exportName: string, repository: string) {
    if (!this.exports) throw new RestoreRefused('invalid_command', 'this data mover serves no NBD exports');
    if (this.exports.names().includes(exportName)) throw new RestoreRefused('conflict', `export ${exportName} is already served; stop it first`);
    const own = this.repository(repository);
    const repo = (await own.listRestorePoints()).some((p) => p.id === cmd.restorePointId)
      ? own : (await this.config.locateRestorePoint?.(cmd.restorePointId)) ?? own;
    const started = Date.now();
    let disk;
    try {
      disk = await repo.openDisk(cmd.restorePointId, cmd.disk);
    } catch (e) {
      throw new RestoreRefused('not_found', (e as Error).message);
    }
    const nbd = await this.exports.add(exportName, disk, { restorePointId: cmd.restorePointId, disk: cmd.disk, purpose: 'restore' });
    this.logger.info({ restorePointId: cmd.restorePointId, disk: cmd.disk, ...nbd }, 'restore point served over NBD');
    return { restoreId: randomUUID(), nbd, sizeBytes: disk.sizeBytes, durationMs: Date.now() - started };
  }

  /** The restore points this mover serves over NBD now (`cairn restore-export list`). */
  /** Starts a test restore in the background (it boots for minutes) and answers its id at once. */
  async startTestRestore(cmd: CommandPayloadMap['TestRestore'], repository = 'default'): Promise<CommandResultMap['TestRestore']> {
    if (!this.exports) throw new RestoreRefused('invalid_command', 'this data mover serves no NBD exports');
    const repo = this.repository(repository);
    if (!(await repo.listRestorePoints()).some((p) => p.id === cmd.restorePointId)) throw new RestoreRefused('not_found', `no restore point ${cmd.restorePointId} in repository ${repository}`);
    let script: { name: string; file: string; timeoutMs?: number } | undefined;
    if (cmd.script) {
      // Only a script the mover's operator placed runs (a command names it, never a path): docs/security.md.
      const file = join(this.config.dataDir ?? tmpdir(), 'test-restore-scripts', cmd.script);
      const st = await stat(file).catch(() => undefined);
      if (!st?.isFile() || (st.mode & 0o111) === 0) throw new RestoreRefused('invalid_command', `no executable test-restore script ${cmd.script} in this data mover's ${join(this.config.dataDir ?? tmpdir(), 'test-restore-scripts')}`);
      script = { name: cmd.script, file, ...(cmd.scriptTimeoutSeconds ? { timeoutMs: cmd.scriptTimeoutSeconds * 1000 } : {}) };
    }
    const testRestoreId = cmd.testRestoreId ?? randomUUID();
    const deps = { log: this.log, site: this.config.site, actor: this.config.actor, repository: repo, exports: this.exports, workDir: join(this.config.dataDir ?? tmpdir(), 'test-restores') };
    void runTestRestore(deps, {
      restorePointId: cmd.restorePointId, serialPattern: cmd.serialPattern, testRestoreId,
      ...(cmd.timeoutSeconds ? { timeoutMs: cmd.timeoutSeconds * 1000 } : {}),
      boot: { ...(cmd.kernel ? { kernel: cmd.kernel } : {}), ...(cmd.initrd ? { initrd: cmd.initrd } : {}), ...(cmd.append ? { append: cmd.append } : {}) },
      ...(cmd.agent ? { agent: cmd.agent } : {}), ...(cmd.tcpPorts ? { tcpPorts: cmd.tcpPorts } : {}), ...(script ? { script } : {}), ...(cmd.policyId ? { policyId: cmd.policyId } : {}),
    }).catch((e: unknown) => this.logger.warn({ testRestoreId, err: (e as Error).message }, 'test restore not recorded'));
    return { testRestoreId, worker: this.worker };
  }

  listExports(): CommandResultMap['ListRestoreExports'] {
    return { worker: this.worker, items: this.exports?.list() ?? [] };
  }

  async stopExport(exportName: string): Promise<void> {
    if (!(await this.exports?.remove(exportName))) throw new RestoreRefused('not_found', `no export named ${exportName}`);
  }

  private readonly gcDue = new Set<string>();

  /**
   * Locks a restore point (and all it references) until `retainUntil`; extend only. Records
   * RestorePointLocked with the lock that now holds (a longer earlier lock stays).
   */
  async lock(cmd: CommandPayloadMap['LockRestorePoint'], actor: Actor, causationId: string, repository = 'default') {
    const until = new Date(cmd.retainUntil);
    if (!(until.getTime() > Date.now())) throw new RestoreRefused('invalid_command', `retainUntil ${cmd.retainUntil} is not in the future`);
    const repo = this.repository(repository);
    const report = await repo.lockRestorePoint(cmd.restorePointId, until).catch((e: Error) => {
      if (e.name === 'RestorePointNotFoundError') throw new RestoreRefused('not_found', `no restore point ${cmd.restorePointId} in repository ${repository}`);
      throw e;
    });
    const holds = (await repo.restorePointLockedUntil(cmd.restorePointId)) ?? until;
    const data = { restorePointId: cmd.restorePointId, retainUntil: holds.toISOString(), objectsLocked: report.objectsLocked };
    // Recorded through the restore point's decider, at the revision it read (not again for a lock no longer than one recorded).
    await handleCommand(this.log, `restorepoint-${cmd.restorePointId}`, restorePointDecider, { kind: 'recordLock', data }, {
      meta: { site: this.config.site, actor, causationId, correlationId: `restorepoint-${cmd.restorePointId}` },
    });
    this.logger.info({ ...data, repository }, 'restore point locked');
    return data;
  }

  /** Retention let a restore point go: its manifest is deleted; GC frees its chunks later. */
  async expire(restorePointId: string, repository = 'default'): Promise<void> {
    if (this.config.deletedRepositories?.has(repository)) return; // went with its repository
    const repo = this.repository(repository);
    let lockedUntil: Date | undefined;
    await repo.deleteRestorePoint(restorePointId).catch((e: Error) => {
      // Immutable until its lock ends (docs/security.md): retention cannot shorten that.
      if (e instanceof RestorePointLockedError) { lockedUntil = e.retainUntil; return; }
      if (e.name !== 'RestorePointNotFoundError') throw e;
    });
    if (lockedUntil) {
      this.logger.warn({ restorePointId, repository, lockedUntil: lockedUntil.toISOString() }, 'restore point expired but locked: kept until its lock ends');
      return;
    }
    this.gcDue.add(repository);
    this.logger.info({ restorePointId, repository }, 'restore point expired: manifest deleted, chunks go at the next garbage collection');
  }

  /** Garbage-collects the repositories that lost restore points since the last round. */
  async collectGarbage(graceMs: number): Promise<void> {
    for (const name of [...this.gcDue]) {
      if (this.config.deletedRepositories?.has(name)) { this.gcDue.delete(name); continue; }
      const report = await this.repository(name).gc({ graceMs });
      if (!report.deferred) this.gcDue.delete(name);
      this.logger.info({ repository: name, ...report }, report.deferred ? 'garbage collection deferred: backups were running' : 'garbage collected');
    }
  }
}
