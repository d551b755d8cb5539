// Starts a data mover as a Nest microservice on the JetStream transport.
import 'reflect-metadata';
import { Module, type DynamicModule, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { pino, type Logger } from 'pino';
import { Refusal, progressSubject, RESTORE_QUEUE, streamReplicas, workSubject, type Actor } from '@cairn/contracts';
import { eventProvenanceOf, type EventLog } from '@cairn/eventlog';
import { CommandBus, FileStreamServer, JetStreamServer } from '@cairn/messaging';
import type { Repository } from '@cairn/repository';
import { ensureWorkStream } from '@cairn/work-queue';
import { DataMover, RestoreRefused, type DataMoverConfig, type ProgressSink } from './data-mover.service.ts';
import { TransferBandwidth, type BandwidthLimits } from './bandwidth.ts';
import { RestoreExports } from './restore-exports.ts';
import { rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dataMoverHandlers } from './data-mover.handlers.ts';
import { SecurityActs } from './security-acts.ts';
import { publishKeyJournal } from '@cairn/repository';
import { RestoreJobRefused, RestoreJobs } from './restore-job.ts';
import { restoreJobHandlers } from './restore-job.handlers.ts';
import { FileBrowser, type FileBrowserOptions } from './file-browser.ts';
import { FilesHandlers, fileIndexHandlers } from './files.handlers.ts';
import { runVerifyJob, verifySlotId } from './verify-job.ts';
import { InstantRecoveries, type ExporterLauncher } from './instant-recovery.ts';
import { InstantHandlers } from './instant.handlers.ts';

/** How long a scheduled verify waits for transfers and restores to end, in all, before it reads beside them. */
const VERIFY_YIELD_MAX_MS = 3_600_000;
const VERIFY_YIELD_POLL_MS = 250;

@Module({})
class DataMoverModule {
  static with(mover: DataMover, acts: SecurityActs, restores: RestoreJobs, files: FileBrowser, instant: InstantRecoveries, log: EventLog, site: string, ackWaitMs: number, maxDeliver: number, backoffMs: readonly number[], transfers?: number): DynamicModule {
    return {
      module: DataMoverModule,
      controllers: [dataMoverHandlers({ site, ackWaitMs, maxDeliver, backoffMs, ...(transfers ? { transfers } : {}) }), restoreJobHandlers({ site, ackWaitMs, maxDeliver, backoffMs }), FilesHandlers, InstantHandlers, ...(files.indexing ? [fileIndexHandlers(site)] : [])],
      providers: [{ provide: DataMover, useValue: mover }, { provide: SecurityActs, useValue: acts }, { provide: RestoreJobs, useValue: restores }, { provide: FileBrowser, useValue: files }, { provide: InstantRecoveries, useValue: instant }],
    };
  }
}

export interface StartDataMoverOptions {
  readonly nc: NatsConnection;
  readonly log: EventLog;
  readonly site: string;
  readonly repositories: ReadonlyMap<string, Repository>;
  readonly restoreRoots: readonly string[];
  /** Never written by a restore (repository, secrets, security, event store, state file). */
  readonly forbiddenRestorePaths?: readonly string[];
  /** The data directory: refused as a restore target except below a root inside it. */
  readonly dataDir?: string;
  readonly actor?: Actor;
  readonly connections?: number;
  /**
   * What an incremental reads from the hypervisor (DataMoverConfig.incrementalReads); default
   * from CAIRN_INCREMENTAL_READS, else only the changed blocks.
   */
  readonly incrementalReads?: 'changed-blocks' | 'whole-chunks';
  /**
   * Bandwidth of backup and restore transfers: this host's limit and the site's (cairn.yaml),
   * in bytes per second; or a TransferBandwidth shared with other movers of this process.
   */
  readonly bandwidth?: BandwidthLimits | TransferBandwidth;
  /** Finds restore points of other sites' replicas kept here (disaster recovery). */
  readonly locateRestorePoint?: (restorePointId: string) => Promise<Repository | undefined>;
  /** Key escrow: opens the key a site escrowed here and checks it against its replica (DeclareSiteLost). */
  readonly checkEscrow?: (site: string) => Promise<{ repositoryId: string; keyIds: string[]; wrappedAt: string }>;
  /** Unacknowledged time before another mover gets the work (default 30 s; kept alive while running). */
  readonly ackWaitMs?: number;
  readonly maxDeliver?: number;
  readonly backoffMs?: readonly number[];
  /**
   * Transfers run at once by this mover (default 1). Small or incremental transfers spend most
   * of their time waiting on round trips (NBD, the log, the repository's fsyncs), so several at
   * once keep the process busy; each holds its NBD connections and a few MiB of buffers.
   */
  readonly transfers?: number;
  readonly logger?: Logger;
  /** Approvals need both people's signatures (default: when the connection checks event provenance, a secure site). */
  readonly signedApprovals?: boolean;
  /** Where the NBD socket and overlays of restore points served over NBD live (keep it short). */
  readonly runDir?: string;
  /** How often repositories that lost restore points are garbage-collected (default 1 h). */
  readonly gcEveryMs?: number;
  /** Unreferenced chunks younger than this are kept (default 24 h). */
  readonly gcGraceMs?: number;
  /**
   * How often the repositories' key journals are published again (default 5 min; also at
   * start): key operations done offline reach the log this way.
   */
  readonly keyJournalEveryMs?: number;
  /** A download nobody pulls for this long is dropped (default 1 min). */
  readonly fileStreamIdleMs?: number;
  /** File-level restore: appliance memory, idle time, how many at once (docs/files.md). */
  readonly files?: Omit<FileBrowserOptions, 'site'>;
  /**
   * Scheduled verify jobs of every repository: one per `everyMs` slot (default 24 h) across all
   * movers, checking the restore points not verified within `olderThanDays` (default 30; 0 =
   * all), `sample` of their chunks (default 1 = all). `everyMs: 0` turns them off.
   */
  readonly verify?: { readonly everyMs?: number; readonly olderThanDays?: number; readonly sample?: number };
  /** Instant recovery: how to start the exporter process of a session (none: instant recovery is refused). */
  readonly instantExporter?: ExporterLauncher;
}

export interface RunningDataMover {
  readonly mover: DataMover;
  readonly files: FileBrowser;
  /** NBD exports being served now (restore exports and browsing sessions). */
  exportNames(): string[];
  health(): { status: 'ok'; worker: string; bandwidth?: BandwidthLimits; deletedRepositories?: Record<string, string> };
  close(): Promise<void>;
}

export async function startDataMover(o: StartDataMoverOptions): Promise<RunningDataMover> {
  const deletedRepositories = new Map<string, string>();
  const config: DataMoverConfig = {
    site: o.site,
    actor: o.actor ?? { kind: 'service', id: `data-mover@${o.site}` },
    restoreRoots: o.restoreRoots,
    ...(o.forbiddenRestorePaths ? { forbiddenRestorePaths: o.forbiddenRestorePaths } : {}),
    ...(o.dataDir !== undefined ? { dataDir: o.dataDir } : {}),
    connections: o.connections ?? 2,
    incrementalReads: o.incrementalReads ?? (process.env['CAIRN_INCREMENTAL_READS'] === 'whole-chunks' ? 'whole-chunks' : 'changed-blocks'),
    ...(o.bandwidth ? { bandwidth: o.bandwidth instanceof TransferBandwidth ? o.bandwidth : new TransferBandwidth(o.bandwidth) } : {}),
    ...(o.locateRestorePoint ? { locateRestorePoint: o.locateRestorePoint } : {}),
    deletedRepositories,
  };
  const progress: ProgressSink = {
    publish: (jobId, p) => o.nc.publish(progressSubject(o.site, jobId), JSON.stringify(p)),
  };
  await ensureWorkStream(await jetstreamManager(o.nc), o.site, streamReplicas(o.nc.info));
  const logger = (o.logger ?? pino({ level: process.env['CAIRN_LOG_LEVEL'] ?? 'info' })).child({ service: 'data-mover', site: o.site });
  const runDir = o.runDir ?? join(tmpdir(), `cairn-mover-${process.pid}`);
  const exports = new RestoreExports(runDir);
  const mover = new DataMover(config, o.log, o.repositories, progress, logger, exports);
  const js = jetstream(o.nc);
  const commands = new CommandBus(o.nc, { site: o.site, actor: config.actor, defaultTimeoutMs: 60_000 });
  const restores = new RestoreJobs({
    site: o.site,
    actor: config.actor,
    enqueue: async (work) => { await js.publish(workSubject(o.site, RESTORE_QUEUE), JSON.stringify(work), { msgID: `restore-${work.restoreId}` }); },
    publishProgress: (restoreId, p) => o.nc.publish(progressSubject(o.site, restoreId), JSON.stringify(p)),
    // A libvirt domain is defined by the coordinator that holds the connection (from the job's own stream).
    defineRestoredVm: async (restoreId) => {
      const reply = await commands.send('snapshot-coordinator', 'DefineRestoredVm', { restoreId }, { timeoutMs: 180_000 });
      if (reply.accepted) return reply.result!;
      const why = `the snapshot coordinator did not define the domain: ${reply.error.message}`;
      // A refusal every attempt would meet again fails the job; anything else is tried again.
      if (reply.error.code === 'conflict' || reply.error.code === 'invalid_command') throw new RestoreJobRefused(reply.error.code === 'conflict' ? 'conflict' : 'invalid', why);
      if (reply.error.code === 'not_found') throw new RestoreJobRefused('not_found', why);
      throw new Error(why);
    },
    prepareInPlace: async (restoreId) => {
      const reply = await commands.send('snapshot-coordinator', 'PrepareInPlaceRestore', { restoreId }, { timeoutMs: 60_000 });
      if (reply.accepted) return reply.result!;
      const why = reply.error.message;
      if (reply.error.code === 'conflict') throw new RestoreJobRefused('conflict', why);
      if (reply.error.code === 'not_found' || reply.error.code === 'invalid_command') throw new RestoreJobRefused(reply.error.code === 'not_found' ? 'not_found' : 'invalid', why);
      throw new Error(`the snapshot coordinator did not answer for the in-place restore: ${why}`);
    },
    safetyBackup: (vmId, restoreId, heartbeat) => safetyBackup(commands, o.log, vmId, restoreId, heartbeat),
  }, o.log, mover, logger);
  // Downloads are pulled from here chunk by chunk (libs/messaging file-stream.ts).
  const fileStreams = new FileStreamServer(o.nc, o.site, o.fileStreamIdleMs !== undefined ? { idleMs: o.fileStreamIdleMs } : {});
  const files = new FileBrowser({
    site: o.site, ...o.files, publishProgress: (progressId, p) => o.nc.publish(progressSubject(o.site, progressId), JSON.stringify(p)),
  }, o.log, async (restorePointId) => {
    for (const [name, repository] of o.repositories) {
      if (deletedRepositories.has(name)) continue;
      if ((await repository.listRestorePoints()).some((p) => p.id === restorePointId)) return { repository, replica: false };
    }
    const replica = await o.locateRestorePoint?.(restorePointId);
    return replica ? { repository: replica, replica: true } : undefined;
  }, exports, (path, own) => mover.allowedTarget(path, own), logger.child({ component: 'files' }),
    () => [...o.repositories].filter(([name]) => !deletedRepositories.has(name)).map(([, r]) => r),
    fileStreams, async (cmd, actor, trace) => {
      const reply = await commands.send('snapshot-coordinator', 'WriteGuestFiles', cmd, { actor, timeoutMs: 3600_000, ...(trace ? { trace } : {}) });
      if (!reply.accepted) throw new Refusal(reply.error.code, `writing into VM ${cmd.vmId}: ${reply.error.message}`);
      return reply.result!;
    });
  fileStreams.start();
  const instant = new InstantRecoveries({
    site: o.site, actor: config.actor, ...(o.instantExporter ? { exporter: o.instantExporter } : {}),
    publishProgress: (instantId, p) => o.nc.publish(progressSubject(o.site, instantId), JSON.stringify(p)),
    // A libvirt session's domain: the coordinator holds the connection (and reads the session's stream).
    libvirtDomain: async (instantId, act) => {
      const reply = await commands.send('snapshot-coordinator', 'ManageInstantDomain', { instantId, act }, { timeoutMs: act === 'define' || act === 'pivot' || act === 'remove' ? 300_000 : 120_000 });
      if (reply.accepted) return reply.result!;
      const code = reply.error.code;
      throw new RestoreRefused(code === 'conflict' || code === 'not_found' ? code : 'invalid_command', `the snapshot coordinator (${act}): ${reply.error.message}`);
    },
  }, o.log, mover, logger.child({ component: 'instant' }));
  instant.follow();
  const app: INestMicroservice = await NestFactory.createMicroservice(
    DataMoverModule.with(mover, new SecurityActs({ site: o.site, log: o.log, repositories: o.repositories, logger, deletedRepositories, ...(o.checkEscrow ? { checkEscrow: o.checkEscrow } : {}), signedApprovals: o.signedApprovals ?? Boolean(eventProvenanceOf(o.nc)?.verify) }), restores, files, instant, o.log, o.site, o.ackWaitMs ?? 30_000, o.maxDeliver ?? 5, o.backoffMs ?? [1000, 5000, 15000], o.transfers),
    { strategy: new JetStreamServer({ connection: o.nc, site: o.site, actor: config.actor }), logger: ['error', 'warn'] },
  );
  await app.listen();
  // Key operations recorded in the repositories (offline rotations, exports) reach the log.
  const warned = new Set<string>();
  const publishKeys = async (): Promise<void> => {
    for (const [name, repo] of o.repositories) {
      if (deletedRepositories.has(name)) continue; // its key journal went with it
      await publishKeyJournal(o.log, o.site, repo, logger, warned)
        .catch((e: unknown) => logger.warn({ repository: name, err: (e as Error).message }, 'key journal not published (tried again next round)'));
    }
  };
  let keyRound: Promise<void> = publishKeys();
  await keyRound;
  const keyTimer = setInterval(() => { keyRound = keyRound.then(publishKeys); }, o.keyJournalEveryMs ?? 300_000);
  keyTimer.unref();
  let gcRound: Promise<void> = Promise.resolve();
  const gcTimer = setInterval(() => {
    gcRound = gcRound.then(() => mover.collectGarbage(o.gcGraceMs ?? 24 * 3600_000))
      .catch((e: unknown) => logger.warn({ err: (e as Error).message }, 'garbage collection failed (tried again next round)'));
  }, o.gcEveryMs ?? 3600_000);
  gcTimer.unref();
  const verifyEvery = o.verify?.everyMs ?? 24 * 3600_000;
  // A scheduled verify reads every chunk of the repository: it waits while this mover runs
  // transfers or restore jobs (their workers and event loop are not shared with it), up to
  // VERIFY_YIELD_MAX_MS per verify, after which it goes on beside them.
  const yieldToTransfers = (): (() => Promise<void>) => {
    let waitedMs = 0;
    return async () => {
      while (mover.jobsRunning > 0 && waitedMs < VERIFY_YIELD_MAX_MS) {
        await new Promise((r) => setTimeout(r, VERIFY_YIELD_POLL_MS));
        waitedMs += VERIFY_YIELD_POLL_MS;
      }
    };
  };
  const verifiedSlot = new Map<string, string>();
  let verifyRound: Promise<void> = Promise.resolve();
  const verifyDue = async (): Promise<void> => {
    const now = new Date();
    for (const [name, repo] of o.repositories) {
      if (deletedRepositories.has(name)) continue;
      const verifyId = verifySlotId(name, verifyEvery, now);
      if (verifiedSlot.get(name) === verifyId) continue;
      verifiedSlot.set(name, verifyId);
      const outcome = await runVerifyJob({ log: o.log, site: o.site, actor: config.actor }, name, repo, {
        verifyId, trigger: 'schedule', olderThanDays: o.verify?.olderThanDays ?? 30, sample: o.verify?.sample ?? 1, now, pace: yieldToTransfers(),
      }).catch((e: unknown) => { logger.warn({ repository: name, verifyId, err: (e as Error).message }, 'verify job failed (the next slot tries again)'); return undefined; });
      if (outcome) logger.info({ repository: name, verifyId, checked: outcome.restorePoints.length, damaged: outcome.damagedCount }, outcome.damagedCount ? 'verify found damage' : 'verify clean');
    }
  };
  const verifyTimer = verifyEvery > 0 ? setInterval(() => { verifyRound = verifyRound.then(verifyDue); }, Math.min(verifyEvery, 60_000)) : undefined;
  verifyTimer?.unref();
  return {
    mover,
    files,
    exportNames: () => exports.names(),
    health: () => ({
      status: 'ok', worker: mover.worker, ...(config.bandwidth ? { bandwidth: config.bandwidth.limits } : {}), ...(deletedRepositories.size ? { deletedRepositories: Object.fromEntries(deletedRepositories) } : {}) }),
    async close() {
      clearInterval(gcTimer);
      clearInterval(verifyTimer);
      await verifyRound;
      clearInterval(keyTimer);
      await gcRound;
      await keyRound;
      await app.close();
      await instant.close();
      fileStreams.close();
      await files.close();
      await exports.close();
      // The default run directory is this mover's own: gone with it once empty (another mover of
      // this process may still serve from it, so only empty directories are removed).
      if (o.runDir === undefined) for (const dir of [join(runDir, 'overlays'), runDir]) await rmdir(dir).catch(() => undefined);
    },
  };
}

/**
 * The backup an in-place restore takes of what it is about to overwrite: a job through the
 * scheduler (the same idempotency key for a redelivered restore, so one job), waited for.
 */
async function safetyBackup(commands: CommandBus, log: EventLog, vmId: string, restoreId: string, heartbeat: () => void): Promise<string> {
  const reply = await commands.send('scheduler', 'RequestBackup', { vmId, mode: 'auto' }, { idempotencyKey: `safety-${restoreId}`, timeoutMs: 60_000 });
  if (!reply.accepted) throw new RestoreJobRefused('failed', `the safety backup of ${vmId} was refused (${reply.error.message}); nothing was overwritten`);
  const jobId = reply.result!.jobId;
  for (;;) {
    heartbeat();
    let committed: string | undefined;
    for await (const r of log.readStream(`job-${jobId}`)) {
      const e = r.event;
      if (e.type === 'RestorePointCommitted') committed = e.data.restorePointId;
      if (e.type === 'JobFailed') throw new RestoreJobRefused('failed', `the safety backup (job ${jobId}) failed: ${e.data.reason}; nothing was overwritten`);
      if (e.type === 'JobCompleted' && committed) return committed;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}
