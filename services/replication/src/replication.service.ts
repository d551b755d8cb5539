// The replication service of one site. As a source it keeps the site's replication policies
// (folded from the log), follows the site's RestorePointCommitted events with one durable
// consumer per target site (after-backup policies; outages are waited out, nothing is
// skipped or taken twice), sweeps for missing replicas on a schedule, and copies restore
// points through a RemoteSink. As a target it runs the ReplicaReceiver.
//
// Replica expiry: one more durable consumer per target site (every site a policy ever named,
// and any this process copied to) follows the site's restore-point events; each
// RestorePointExpired / RestorePointDeleted is sent to the target (`expire`), which removes its
// replica. A target that is away gets it when it returns (the consumer waits, in order); a
// restore point locked at the source keeps its replicas until the lock ends.
//
// Lag watch (`watchLag`, every `lagWatchMs`): per own policy and target, the restore points in
// scope not at the target (known from this process's copies, else asked of the target; all of
// them while it does not answer) go to replicationLagDecider on `repllag-<policy>-<target>`:
// ReplicationBehind once when the oldest is older than the policy's maxLagMinutes,
// ReplicationCaughtUp once when no longer. Several instances append at the folded revision.
import { randomUUID } from 'node:crypto';
import { Cron } from 'croner';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import {
  assertSite, eventStreamName, eventSubjectFilter, type Actor, type CommandPayloadMap, type KnownEvent, type ReplicationPolicy,
} from '@cairn/contracts';
import { handleCommand, type EventLog, type EventSubscription } from '@cairn/eventlog';
import { replicationLagDecider, replicationLagStreamId, replicationMaxLagMinutes, replicationPolicyDecider, type UnreplicatedPoint } from '@cairn/jobs';
import { DurableConsumers, RetryLaterError, readableEvents, type JetStreamContext, type RunningConsumer } from '@cairn/messaging';
import { Semaphore, copyRestorePoint, type ReplicationSource, type ReplicationSourceRole } from '@cairn/repository';
import { RemoteSink, TargetUnavailableError } from './remote-sink.ts';
import { TransferError } from './transfer-protocol.ts';
import type { ReplicaReceiver } from './replica-receiver.ts';
import { Refusal } from '@cairn/contracts';
import { sealEscrow, verifyEscrowStatement } from '@cairn/nats-security';

export interface ReplicationConfig {
  readonly site: string;
  readonly actor: Actor;
  /** Unacknowledged time of a policy consumer's message before it comes again (default 60 s; kept alive while copying). */
  readonly ackWaitMs: number;
  /** Longest wait between two attempts at an unreachable target (default 30 s). */
  readonly maxRetryDelayMs: number;
  /**
   * Key escrow (docs/sites.md, disaster recovery): with every target it copies to, this site
   * leaves its repository secret sealed for that target's escrow key, which the hub CA vouches
   * for; again whenever the key set changes (a rotation). Without it, nothing is escrowed.
   */
  readonly escrow?: { readonly hubCaPem: string; readonly secret: () => Promise<string> };
  /** How often the lag watch runs (absent or 0: only when `watchLag` is called). */
  readonly lagWatchMs?: number;
}

export class ReplicationRefused extends Refusal {
  override readonly name: string = 'ReplicationRefused';
}

export interface CopyReport {
  readonly restorePointId: string;
  readonly targetSite: string;
  readonly committed: boolean;
  readonly chunksSent: number;
  readonly chunkBytesSent: number;
  readonly pagesSent: number;
  readonly bytesSent: number;
  readonly durationMs: number;
}

export class Replication {
  readonly policies = new Map<string, ReplicationPolicy>();
  private readonly source: ReplicationSource;
  /** One copy, expiry or GC at a time per target site. */
  private readonly locks = new Map<string, Semaphore>();
  /** Per target: the key ids it was last given (see `copy`). */
  private readonly adopted = new Map<string, string>();
  /** Per target: the key ids its escrow was last sealed for. */
  private readonly escrowed = new Map<string, string>();
  private readonly durables: DurableConsumers;
  private readonly consumers = new Map<string, Promise<RunningConsumer>>();
  /** Per target site: the consumer that sends it the expiries of this site's restore points. */
  private readonly expiryConsumers = new Map<string, Promise<RunningConsumer>>();
  /** Every site a policy ever named as a target, and every site this process copied to. */
  readonly knownTargets = new Set<string>();
  /** Replicas expired at targets by this process (for health and tests). */
  expiriesSent = 0;
  /** Expiries put off because the restore point was locked (for tests). */
  expiriesWaitingForLock = 0;
  /** The running schedule of each scheduled policy (interval or cron). */
  private readonly timers = new Map<string, { stop(): void }>();
  private policySub?: EventSubscription;
  private closed = false;
  /** The latest copies done by this process (at most 1,000; for health and tests). */
  readonly copies: CopyReport[] = [];
  /** Copies done since start. */
  copiesDone = 0;
  /** `<target>/<restorePointId>` known to be at the target (copied, or it said so): the lag watch asks no more. */
  private readonly atTarget = new Set<string>();
  /** When each policy was created (an after-backup policy copies what was committed since). */
  private readonly policySince = new Map<string, number>();
  private lagTimer?: ReturnType<typeof setInterval>;

  constructor(
    private readonly config: ReplicationConfig,
    private readonly nc: NatsConnection,
    private readonly log: EventLog,
    /** The replication source role: what it lists and sends (no writer, no maintenance). */
    private readonly repository: ReplicationSourceRole,
    private readonly logger: Logger,
    readonly receiver?: ReplicaReceiver,
  ) {
    this.source = repository.replicationSource();
    this.durables = new DurableConsumers(nc, {
      site: config.site, actor: config.actor, eventLog: log,
      logger: { log: (m) => logger.info(m), warn: (m) => logger.warn(m), error: (m) => logger.error(m) },
    });
  }

  get site(): string { return this.config.site; }

  /** Loads the policies and keeps following them. */
  async start(): Promise<void> {
    // How many policy events the log holds now: the policies are loaded once that many came.
    const jsm = await jetstreamManager(this.nc);
    const info = await jsm.streams.info(eventStreamName(this.site), { subjects_filter: `cairn.${this.site}.evt.replpolicy.*` });
    let expected = Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
    let resolveLoaded: () => void = () => undefined;
    const loaded = new Promise<void>((r) => { resolveLoaded = r; });
    if (expected === 0) resolveLoaded();
    const sub = this.log.subscribe({ from: 'start', category: 'replpolicy', fewStreams: true });
    this.policySub = sub;
    void (async () => {
      try {
        for await (const r of sub) {
          const e = r.event;
          if (e.type === 'ReplicationPolicyCreated') {
            this.policies.set(e.data.policyId, e.data);
            this.policySince.set(e.data.policyId, Date.parse(e.time));
            if (e.data.sourceSite === this.site) for (const t of e.data.targetSites) this.knownTargets.add(t);
          }
          else if (e.type === 'ReplicationPolicyDeleted') this.policies.delete(e.data.policyId);
          if (--expected === 0) resolveLoaded();
          this.reconcile();
        }
      } catch (err) {
        if (!this.closed) this.logger.error({ err: (err as Error).message }, 'replication policies: subscription failed');
      }
    })();
    await loaded;
    this.reconcile();
    if (this.config.lagWatchMs) {
      this.lagTimer = setInterval(() => {
        this.watchLag().catch((err: unknown) => this.logger.warn({ err: (err as Error).message }, 'replication lag watch failed; next round tries again'));
      }, this.config.lagWatchMs);
      this.lagTimer.unref();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.lagTimer) clearInterval(this.lagTimer);
    await this.policySub?.stop();
    for (const t of this.timers.values()) t.stop();
    this.timers.clear();
    const all = [...this.consumers.values(), ...this.expiryConsumers.values()];
    await Promise.allSettled(all.map(async (c) => (await c).stop()));
    this.consumers.clear();
    this.expiryConsumers.clear();
  }

  // ---- policies --------------------------------------------------------------------------

  async createPolicy(p: CommandPayloadMap['CreateReplicationPolicy'], actor: Actor, causationId: string): Promise<{ policyId: string }> {
    const sourceSite = p.sourceSite ?? this.site;
    if (sourceSite !== this.site) throw new ReplicationRefused('invalid_command', `a policy lives at its source site: send it to ${sourceSite}, this is ${this.site}`);
    if (p.targetSites.includes(this.site)) throw new ReplicationRefused('invalid_command', `site ${this.site} cannot replicate to itself`);
    for (const t of p.targetSites) assertSite(t);
    if (p.trigger.kind === 'cron') {
      try {
        new Cron(p.trigger.cron, { timezone: p.trigger.timezone, paused: true });
      } catch (e) {
        throw new ReplicationRefused('invalid_command', `trigger.cron ${JSON.stringify(p.trigger.cron)} in ${p.trigger.timezone}: ${(e as Error).message}`);
      }
    }
    const policyId = p.policyId ?? randomUUID();
    const policy: ReplicationPolicy = { ...p, policyId, sourceSite };
    const streamId = `replpolicy-${policyId}`;
    // Through the policy's decider at the revision read: an id that exists is a conflict.
    await handleCommand(this.log, streamId, replicationPolicyDecider, { kind: 'create', policy }, { meta: { site: this.site, actor, causationId, correlationId: streamId } });
    this.policies.set(policyId, policy);
    if (!this.policySince.has(policyId)) this.policySince.set(policyId, Date.now());
    for (const t of policy.targetSites) this.knownTargets.add(t);
    this.reconcile();
    this.logger.info({ policyId, targets: policy.targetSites, trigger: policy.trigger }, 'replication policy created');
    return { policyId };
  }

  async deletePolicy(policyId: string, actor: Actor, causationId: string): Promise<void> {
    if (!this.policies.has(policyId)) throw new ReplicationRefused('not_found', `no replication policy ${policyId}`);
    const streamId = `replpolicy-${policyId}`;
    await handleCommand(this.log, streamId, replicationPolicyDecider, { kind: 'delete', policyId }, { meta: { site: this.site, actor, causationId, correlationId: streamId } });
    this.policies.delete(policyId);
    this.reconcile();
  }

  private policiesFor(target: string, vmId: string, kind: ReplicationPolicy['trigger']['kind']): ReplicationPolicy[] {
    return [...this.policies.values()].filter((p) => p.sourceSite === this.site && p.targetSites.includes(target)
      && p.trigger.kind === kind && (!p.vmIds || p.vmIds.includes(vmId)));
  }

  /** One consumer per target of an after-backup policy, one timer per scheduled policy. */
  private reconcile(): void {
    if (this.closed) return;
    const targets = new Set<string>();
    for (const p of this.policies.values()) {
      if (p.sourceSite !== this.site) continue;
      if (p.trigger.kind === 'after-backup') for (const t of p.targetSites) targets.add(t);
    }
    for (const t of targets) if (!this.consumers.has(t)) this.consumers.set(t, this.follow(t));
    for (const t of this.knownTargets) {
      if (!this.expiryConsumers.has(t)) this.expiryConsumers.set(t, this.followExpiries(t));
    }
    for (const [t, c] of this.consumers) if (!targets.has(t)) { void c.then((r) => r.stop()); this.consumers.delete(t); }
    for (const p of this.policies.values()) {
      if (p.trigger.kind === 'after-backup' || p.sourceSite !== this.site || this.timers.has(p.policyId)) continue;
      if (p.trigger.kind === 'schedule') {
        const timer = setInterval(() => { void this.sweep(p.policyId); }, p.trigger.everyMs);
        timer.unref();
        this.timers.set(p.policyId, { stop: () => clearInterval(timer) });
      } else {
        const job = new Cron(p.trigger.cron, { timezone: p.trigger.timezone, protect: true, unref: true }, () => { void this.sweep(p.policyId); });
        this.timers.set(p.policyId, { stop: () => job.stop() });
      }
    }
    for (const [id, timer] of this.timers) if (!this.policies.has(id)) { timer.stop(); this.timers.delete(id); }
  }

  // ---- after each backup -----------------------------------------------------------------

  private follow(target: string): Promise<RunningConsumer> {
    return this.durable(`replication-to-${target}`, `cairn.${this.site}.evt.job.*`, (e, ctx) => this.onJobEvent(target, e, ctx));
  }

  private followExpiries(target: string): Promise<RunningConsumer> {
    return this.durable(`replica-expiry-to-${target}`, eventSubjectFilter(this.site, 'restorepoint'), (e, ctx) => this.onRestorePointEvent(target, e, ctx));
  }

  /**
   * One durable consumer on the site's stream, one message at a time in log order (a parent
   * reaches the target before its children), never given up on: an outage is waited out.
   * An event this build cannot read is passed over (null): the catalogue and audit report it.
   */
  private durable(durable: string, filterSubject: string, handler: (event: KnownEvent | null, ctx: JetStreamContext) => Promise<void>): Promise<RunningConsumer> {
    return this.durables.start<KnownEvent | null>({
      stream: eventStreamName(this.site), durable, filterSubject, ackWaitMs: this.config.ackWaitMs,
      maxAckPending: 1, maxDeliver: Number.POSITIVE_INFINITY, validate: readableEvents, dedup: false,
    }, handler);
  }

  /** Delay before trying a failed copy or expiry again: growing with the attempts, capped. */
  private retryDelay(ctx: JetStreamContext): number {
    return Math.min(this.config.maxRetryDelayMs, 500 * 2 ** Math.min(ctx.deliveryCount - 1, 10));
  }

  private async onJobEvent(target: string, event: KnownEvent | null, ctx: JetStreamContext): Promise<void> {
    if (event?.type !== 'RestorePointCommitted') return;
    const policies = this.policiesFor(target, event.data.vmId, 'after-backup');
    if (policies.length === 0) return;
    const delayMs = Math.max(...policies.map((p) => p.delayMs));
    const due = Date.parse(event.time) + delayMs;
    if (Date.now() < due) throw new RetryLaterError('the policy\'s delay has not passed', Math.min(due - Date.now(), 3600_000));
    // The strictest bandwidth limit among the policies that cover it.
    const policy = policies.reduce((p, q) => ((q.bandwidthBytesPerSec ?? Infinity) < (p.bandwidthBytesPerSec ?? Infinity) ? q : p));
    try {
      await this.copy(event.data.restorePointId, target, { policy, jobId: event.data.jobId });
    } catch (e) {
      if (e instanceof ReplicationRefused && e.code === 'not_found') {
        // Expired or deleted at this site before it was copied: nothing to copy any more.
        this.logger.info({ target, restorePointId: event.data.restorePointId }, 'restore point gone at the source before its copy: skipped');
        return;
      }
      const delay = this.retryDelay(ctx);
      const unavailable = e instanceof TargetUnavailableError;
      this.logger.warn({ target, restorePointId: event.data.restorePointId, attempt: ctx.deliveryCount, retryInMs: delay, err: (e as Error).message },
        unavailable ? 'target site unreachable; the copy waits for it' : 'replication failed; trying again');
      throw new RetryLaterError((e as Error).message, delay);
    }
  }

  // ---- replica expiry -------------------------------------------------------------------

  private async onRestorePointEvent(target: string, event: KnownEvent | null, ctx: JetStreamContext): Promise<void> {
    if (event?.type !== 'RestorePointExpired' && event?.type !== 'RestorePointDeleted') return;
    const restorePointId = event.data.restorePointId;
    const reason = event.type === 'RestorePointExpired' ? `expired: ${event.data.reason}` : `deleted (approval ${event.data.approvalId})`;
    // Replicas carry no lock of their own: they keep the source's. A locked restore point's
    // replicas stay until its lock ends (retention does not expire it before; if it did, the
    // expiry waits here).
    const lockedUntil = await this.lockedUntil(restorePointId);
    if (lockedUntil > Date.now()) {
      this.expiriesWaitingForLock++;
      this.logger.info({ target, restorePointId, lockedUntil: new Date(lockedUntil).toISOString() }, 'replica expiry waits for the lock to end');
      throw new RetryLaterError('the restore point is locked', Math.min(lockedUntil - Date.now() + 1000, 3600_000));
    }
    try {
      const r = await this.expireAt(target, restorePointId, reason);
      if (r.held) this.expiriesSent++;
    } catch (e) {
      const delay = this.retryDelay(ctx);
      this.logger.warn({ target, restorePointId, attempt: ctx.deliveryCount, retryInMs: delay, err: (e as Error).message },
        e instanceof TargetUnavailableError ? 'target site unreachable; the replica expiry waits for it' : 'replica expiry failed; trying again');
      throw new RetryLaterError((e as Error).message, delay);
    }
  }

  /** Tells a target to remove its replica of a restore point (after any copy to it under way). */
  expireAt(target: string, restorePointId: string, reason: string): Promise<{ held: boolean }> {
    assertSite(target);
    return this.lock(target).run(async () => {
      const r = await new RemoteSink(this.nc, this.site, target).expire(restorePointId, reason);
      this.logger.info({ target, restorePointId, reason, held: r.held }, r.held ? 'replica expired at the target' : 'the target held no replica of it');
      return r;
    });
  }

  /** The latest lock end recorded for a restore point at this site (0: never locked). */
  private async lockedUntil(restorePointId: string): Promise<number> {
    let until = 0;
    for await (const r of this.log.readStream(`restorepoint-${restorePointId}`)) {
      if (r.event.type === 'RestorePointLocked') until = Math.max(until, Date.parse(r.event.data.retainUntil));
    }
    return until;
  }

  /** Replica GC of this site's copy of `sourceSite`'s repository. */
  async collectGarbage(sourceSite: string, graceMs?: number) {
    if (!this.receiver) throw new ReplicationRefused('unavailable', 'this replication service holds no replicas');
    return this.receiver.gc(assertSite(sourceSite), graceMs);
  }

  // ---- on a schedule ---------------------------------------------------------------------

  /** Copies every restore point a scheduled policy covers that a target lacks, oldest first. */
  async sweep(policyId: string): Promise<CopyReport[]> {
    const p = this.policies.get(policyId);
    if (!p) return [];
    const out: CopyReport[] = [];
    const points = (await this.repository.listRestorePoints()).filter((rp) => !p.vmIds || p.vmIds.includes(rp.vm.id));
    for (const target of p.targetSites) {
      try {
        for (const rp of points) out.push(await this.copy(rp.id, target, { policy: p, jobId: rp.labels?.['jobId'] ?? null }));
      } catch (e) {
        this.logger.warn({ policyId, target, err: (e as Error).message }, 'scheduled replication stopped; next round tries again');
      }
    }
    return out;
  }

  // ---- one copy --------------------------------------------------------------------------

  private lock(target: string): Semaphore {
    let l = this.locks.get(target);
    if (!l) { l = new Semaphore(1); this.locks.set(target, l); }
    return l;
  }

  /**
   * Leaves this site's repository secret sealed for `target` (key escrow): the target's escrow
   * key must carry the hub CA's signature for that site name. A failure is logged, never fails
   * the copy; it is tried again with the next copy to that target.
   */
  private async escrowFor(sink: RemoteSink, target: string, repositoryId: string, keyIds: readonly string[], fingerprint: string): Promise<void> {
    const escrow = this.config.escrow!;
    try {
      const statement = await sink.escrowKey();
      verifyEscrowStatement(statement, escrow.hubCaPem, target);
      const envelope = sealEscrow({ sourceSite: this.site, recipient: statement, repositoryId, keyIds, secret: { passphrase: await escrow.secret() } });
      const r = await sink.escrow(envelope);
      this.escrowed.set(target, fingerprint);
      this.logger.info({ target, repositoryId, keyIds, stored: r.stored }, 'repository key escrowed for the target');
    } catch (e) {
      this.logger.warn({ target, err: (e as Error).message }, 'repository key not escrowed for the target (tried again with the next copy)');
    }
  }

  /** Copies one restore point to a target site: only what it lacks, manifest last. */
  /**
   * `full`: go through the whole copy even when the target holds the restore point (asks
   * about every page, sends nothing it holds, and its refs list again: how a replica copied
   * before refs lists existed gets one).
   */
  copy(restorePointId: string, target: string, o: { policy?: ReplicationPolicy; jobId?: string | null; full?: boolean } = {}): Promise<CopyReport> {
    assertSite(target);
    if (target === this.site) return Promise.reject(new ReplicationRefused('invalid_command', 'a site does not replicate to itself'));
    if (!this.knownTargets.has(target)) { this.knownTargets.add(target); this.reconcile(); }
    return this.lock(target).run(async () => {
      try {
        return await this.copyOnce(restorePointId, target, o);
      } catch (e) {
        // The target lost its copy (or was set up again): give it the identity, then go on.
        if (!(e instanceof TransferError && e.code === 'not_adopted')) throw e;
        this.adopted.delete(target);
        return this.copyOnce(restorePointId, target, o);
      }
    });
  }

  private async copyOnce(restorePointId: string, target: string, o: { policy?: ReplicationPolicy; jobId?: string | null; full?: boolean }): Promise<CopyReport> {
    const started = Date.now();
    let manifest;
    try {
      manifest = await this.source.manifest(restorePointId);
    } catch (e) {
      if ((e as Error).name === 'RestorePointNotFoundError') throw new ReplicationRefused('not_found', `no restore point ${restorePointId} at site ${this.site}`);
      throw e;
    }
    const sink = new RemoteSink(this.nc, this.site, target, o.policy?.bandwidthBytesPerSec ? { bandwidthBytesPerSec: o.policy.bandwidthBytesPerSec } : {});
    sink.commitMeta = {
      vmId: manifest.vm.id, vmName: manifest.vm.name, jobId: o.jobId ?? manifest.labels?.['jobId'] ?? null, policyId: o.policy?.policyId ?? null,
      sourceCommittedAt: manifest.committedAt, disks: manifest.disks.map((d) => ({ name: d.name, sizeBytes: d.sizeBytes })),
      chunksSent: 0, pagesSent: 0,
    };
    // The target takes the repository's config and key objects once, and again when the key
    // set changed (a rotation at the source adds a key object).
    const identity = await this.source.identity();
    const fingerprint = identity.keys.map((k) => k.keyId).sort().join(',');
    const adoptedNow = this.adopted.get(target) !== fingerprint;
    if (adoptedNow) {
      await sink.adopt(identity);
      this.adopted.set(target, fingerprint);
    }
    // The escrow follows the key set: sealed again after a rotation, tried again while it failed.
    if (this.config.escrow && this.escrowed.get(target) !== fingerprint) await this.escrowFor(sink, target, identity.repositoryId, identity.keys.map((k) => k.keyId), fingerprint);
    if (!adoptedNow && !o.full && await sink.hasRestorePoint(restorePointId)) {
      this.atTarget.add(`${target}/${restorePointId}`);
      const r = { restorePointId, targetSite: target, committed: false, chunksSent: 0, chunkBytesSent: 0, pagesSent: 0, bytesSent: sink.stats.bytesSent, durationMs: Date.now() - started };
      return r;
    }
    const base = manifest.parentId && (await sink.hasRestorePoint(manifest.parentId)) ? manifest.parentId : undefined;
    let chunksSent = 0;
    let pagesSent = 0;
    const result = await copyRestorePoint(this.source, {
      adopt: async () => undefined,
      missing: (r) => sink.missing(r),
      put: async (obj) => {
        await sink.put(obj);
        if (obj.kind === 'chunk') chunksSent++; else pagesSent++;
        sink.commitMeta = { ...sink.commitMeta!, chunksSent, pagesSent };
      },
      commit: (mf, pages) => sink.commit(mf, pages),
      putRefs: (id, refs) => sink.putRefs(id, refs),
    }, restorePointId, { adopted: true, ...(base ? { base } : {}) }).catch((e: unknown) => {
      // Expired at the source while this copy ran, and removed at the target: nothing to do.
      if (e instanceof TransferError && e.code === 'expired') return undefined;
      throw e;
    });
    if (!result) {
      this.logger.info({ restorePointId, target }, 'restore point expired while it was being copied: the target refused it');
      return { restorePointId, targetSite: target, committed: false, chunksSent, chunkBytesSent: 0, pagesSent, bytesSent: sink.stats.bytesSent, durationMs: Date.now() - started };
    }
    const report: CopyReport = {
      restorePointId, targetSite: target, committed: result.committed, chunksSent: result.chunksSent, chunkBytesSent: result.chunkBytesSent,
      pagesSent: result.pagesSent, bytesSent: sink.stats.bytesSent, durationMs: Date.now() - started,
    };
    this.atTarget.add(`${target}/${restorePointId}`);
    this.copies.push(report);
    this.copiesDone++;
    if (this.copies.length > 1000) this.copies.splice(0, this.copies.length - 1000);
    this.logger.info({ ...report, base: base ?? null, chunksAsked: result.chunksAsked }, result.committed ? 'restore point replicated' : 'restore point was at the target already');
    return report;
  }

  // ---- lag watch ---------------------------------------------------------------------------

  /**
   * Per own policy and target: which restore points in its scope are not at the target, and
   * through the lag decider ReplicationBehind / ReplicationCaughtUp once each (see the top).
   */
  async watchLag(now: Date = new Date()): Promise<void> {
    const own = [...this.policies.values()].filter((p) => p.sourceSite === this.site);
    if (own.length === 0) return;
    const points = await this.repository.listRestorePoints();
    for (const p of own) {
      const since = p.trigger.kind === 'after-backup' ? this.policySince.get(p.policyId) ?? 0 : 0;
      const scope = points.filter((rp) => (!p.vmIds || p.vmIds.includes(rp.vm.id)) && Date.parse(rp.committedAt) >= since - 1000);
      for (const target of p.targetSites) {
        const unreplicated: UnreplicatedPoint[] = [];
        let answering = true;
        const sink = new RemoteSink(this.nc, this.site, target);
        for (const rp of scope) {
          const key = `${target}/${rp.id}`;
          if (this.atTarget.has(key)) continue;
          if (answering) {
            try {
              if (await sink.hasRestorePoint(rp.id)) { this.atTarget.add(key); continue; }
            } catch (err) {
              // Away: everything not known to be there counts as not there.
              answering = false;
              this.logger.info({ target, err: (err as Error).message }, 'replication lag watch: the target does not answer');
            }
          }
          unreplicated.push({ restorePointId: rp.id, vmId: rp.vm.id, committedAt: rp.committedAt });
        }
        const streamId = replicationLagStreamId(p.policyId, target);
        const r = await handleCommand(this.log, streamId, replicationLagDecider, {
          kind: 'check', policyId: p.policyId, sourceSite: this.site, targetSite: target, maxLagMinutes: replicationMaxLagMinutes(p), unreplicated, now,
        }, { meta: { site: this.site, actor: this.config.actor, correlationId: streamId, causationId: null } });
        for (const e of r.events) {
          if (e.type === 'ReplicationBehind') this.logger.warn({ policyId: p.policyId, target, data: e.data }, 'replication target is behind');
          else this.logger.info({ policyId: p.policyId, target, data: e.data }, 'replication target caught up');
        }
      }
    }
  }

  // ---- verify and repair -----------------------------------------------------------------

  async verifyLocal(sourceSite: string) {
    if (!this.receiver) throw new ReplicationRefused('unavailable', 'this replication service holds no replicas');
    return this.receiver.verify(sourceSite);
  }

  /** Asks a target which objects of its copy are damaged and sends them again from here. */
  async repair(target: string): Promise<{ damaged: number; repaired: number; unrepairable: string[] }> {
    return this.lock(target).run(async () => {
      const sink = new RemoteSink(this.nc, this.site, target);
      const report = await sink.verify();
      sink.repairing = true;
      const repaired: Array<{ kind: string; id: string; damage: string }> = [];
      const unrepairable: string[] = [];
      for (const d of report.damaged) {
        try {
          await sink.put(await this.source.sealed(d.kind, d.id));
          repaired.push({ kind: d.kind, id: d.id, damage: d.damage });
        } catch (e) {
          if (e instanceof TargetUnavailableError) throw e;
          unrepairable.push(`${d.kind} ${d.id}: ${(e as Error).message}`);
        }
      }
      if (repaired.length) await sink.repaired(repaired);
      this.logger.info({ target, damaged: report.damaged.length, repaired: repaired.length, unrepairable: unrepairable.length }, 'replica repaired from the source');
      return { damaged: report.damaged.length, repaired: repaired.length, unrepairable };
    });
  }
}
