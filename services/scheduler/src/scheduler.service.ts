// The scheduler: owns policies, turns due slots into jobs exactly once, and drives each job
// through its phases as a process manager over the log. All state is folded from the log;
// every action it takes is idempotent, so a standby that takes over simply carries on.
import { createHash, randomUUID } from 'node:crypto';
import { Refusal, newEvent, policyChangeApproval, type Actor, type CommandPayloadMap, sitePolicyId, type GlobalPolicyStatement, type KnownEvent, type Policy, type TraceContext } from '@cairn/contracts';
import { fold, handleCommand, type EventLog, type EventSubscription, WrongExpectedRevisionError } from '@cairn/eventlog';
import {
  applyRetention, checkSignedApproval, dueSlots, dueTestRestoreSlots, loadUserRecords, readTrustRoot, evolveJob, restorePointDecider, inBackupWindow, initialJobState, isTerminal, jobDecider, nextJobStep, policyDecider,
  PolicyInvalidError, JobRefusedError, checkGlobalPolicyStatement, managedByHubProblem, selects, TRANSFER_QUEUE, policyRpoMinutes, rpoDecider, rpoStreamId, expiryDecider, expiryStreamId, type ExpiryState,
  type JobCommand, type JobState, type TransferWork, type RpoCheck, type RpoState,
} from '@cairn/jobs';
import { inSpan } from '@cairn/telemetry';
import type { SchedulerConfig } from './scheduler.config.ts';
import { startGate } from './start-gate.ts';
import { readSiteCertificates, type SiteCertificate } from './site-certificates.ts';

/** The log lines the scheduler writes (pino's shape). */
export interface SchedulerLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

const silent: SchedulerLogger = { info: () => undefined, warn: () => undefined };

export interface VmRecord {
  readonly vmId: string;
  readonly name: string;
  readonly tags: readonly string[];
  readonly host: string;
}

/** What the scheduler asks of other services (adapters wire these to NATS). */
export interface SchedulerPorts {
  /** Carries what the job's stream says (mode, policy) and where it stands, so the coordinator reads nothing. */
  requestSnapshot(input: {
    jobId: string; vmId: string; snapshotId: string; mode: 'auto' | 'full'; policyId: string | null; jobRevision: number; jobPosition?: number; causationId: string | null;
    /** The policy's quiesce option (default preferred). */
    quiesce?: 'required' | 'preferred' | 'off';
    /** The restore point the transfer will build on and its snapshot, or why there is none (a full view). */
    parent: { restorePointId: string; snapshotId: string } | { none: string };
  }): Promise<void>;
  releaseSnapshot(input: { jobId: string; snapshotId: string; success: boolean; jobRevision: number; jobPosition?: number; causationId: string | null }): Promise<void>;
  enqueueTransfer(work: TransferWork): Promise<void>;
  /** Asks a data mover to boot-test a restore point (a policy's testRestore schedule); answers once it started. */
  requestTestRestore?(cmd: CommandPayloadMap['TestRestore']): Promise<void>;
}

export class SchedulerRefusal extends Refusal {
  constructor(override readonly code: 'not_found' | 'invalid_command' | 'conflict' | 'approval_required' | 'unauthenticated' | 'forbidden', message: string, details?: unknown) {
    super(code, message, details);
  }
}

/** What an incremental of a job builds on, or why nothing. */
type ParentChoice = { restorePointId: string; snapshotId: string; disks: Array<{ name: string; sizeBytes: number }> } | { none: string };

const transferParent = (p: ParentChoice): TransferWork['parent'] => ('none' in p ? null : { restorePointId: p.restorePointId, disks: p.disks });

interface Pending { readonly step: string; readonly at: number; readonly attempts: number }

export class Scheduler {
  private readonly jobs = new Map<string, JobState>();
  /**
   * Revision of each job stream as folded (the expected revision of the scheduler's next append
   * to it) and the position of the event at that revision, learnt with it: both are sent in commands.
   */
  private readonly heads = new Map<string, { readonly revision: bigint; readonly position: bigint }>();
  private readonly vms = new Map<string, VmRecord>();
  /** VM ids by name (a policy's selector names VMs; `findVm` takes a name). */
  private readonly vmsByName = new Map<string, Set<string>>();
  /** Every job of each VM (folded from its JobRequested): what a VM's queue and parent look at. */
  private readonly jobsOfVm = new Map<string, Set<string>>();
  /** Jobs the process manager still drives: not ended, or ended with a view not given back. */
  private readonly open = new Set<string>();
  /** Jobs that hold a slot of their host and repository (running, or being started by this scheduler): the host and repository they took it on. */
  private readonly active = new Map<string, { readonly host: string | undefined; readonly repository: string }>();
  /** Slots taken per host and per repository (counted from `active`). */
  private readonly activeOnHost = new Map<string | undefined, number>();
  private readonly activeOnRepository = new Map<string, number>();
  /** Per policy: the next slot of its schedule after the `after` it was computed from (no cron walk each tick). */
  private readonly nextSlot = new Map<string, { readonly policy: Policy; readonly after: number; readonly at: number }>();
  private readonly policies = new Map<string, Policy>();
  /** Restore points gone (expired by retention or deleted after an approval): no parent of an incremental. */
  private readonly expired = new Set<string>();
  /** Order in which jobs committed their restore points (the newest is an incremental's parent). */
  private readonly commitOrder = new Map<string, number>();
  /** When each locked restore point's lock ends (RestorePointLocked, extend only). */
  private readonly lockedUntil = new Map<string, number>();
  private readonly inflight = new Map<string, Pending>();
  /** The trace of each job's latest event: every step the scheduler takes for it continues it. */
  private readonly traces = new Map<string, TraceContext>();
  private readonly lastSlotCheck = new Map<string, Date>();
  private readonly lastTestRestoreCheck = new Map<string, Date>();
  /** Scheduled test restores started and not ended: id → `<policy>/<vm>` (one at a time per policy and VM). */
  private readonly testRestoresRunning = new Map<string, string>();
  private readonly policySince = new Map<string, number>();
  /** Paused policies: they schedule no new backups until resumed. */
  private readonly paused = new Set<string>();
  /** Jobs this scheduler started whose JobStarted it has not folded yet (for the per-host limit). */
  private readonly starting = new Set<string>();
  /** Restore points committed (not expired or deleted): VM and time, for the RPO watch. */
  private readonly restorePoints = new Map<string, { vmId: string; at: string }>();
  /** When each VM was first reported (a VM never backed up counts its RPO from when a policy first covered it). */
  private readonly vmSince = new Map<string, number>();
  /** Each VM's RPO stream as folded, and its revision. */
  private readonly rpo = new Map<string, { state: RpoState; revision: bigint }>();
  private readonly rpoOfPolicy = new WeakMap<Policy, number>();
  /** API tokens with an expiry, not revoked: for the expiry watch. */
  private readonly tokens = new Map<string, { owner: string; name: string; expiresAt: string }>();
  /** The site's certificates as last read, and when (read again after 10 minutes). */
  private certificates: { readonly at: number; readonly list: readonly SiteCertificate[] } | undefined;
  /** Each credential's expiry stream as folded, and its revision. */
  private readonly expiry = new Map<string, { state: ExpiryState; revision: bigint }>();
  /** Chunks a verify found damaged in restore points of each VM: its next backup reads whole and sends them again. */
  private readonly heal = new Map<string, Set<string>>();
  /** Jobs queued with a heal list: their commit ends the VM's list. */
  private readonly healing = new Map<string, string>();
  private subscription: EventSubscription | undefined;
  private consuming: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private ticking = false;
  private leader = false;
  private caughtUp = false;
  private position = 0n;

  constructor(
    private readonly config: SchedulerConfig,
    private readonly log: EventLog,
    private readonly ports: SchedulerPorts,
    private readonly now: () => Date = () => new Date(),
    private readonly logger: SchedulerLogger = silent,
  ) {}

  /** Folds the log so far, then follows it. */
  async start(): Promise<void> {
    const head = await this.log.headPosition();
    this.subscription = this.log.subscribe({ from: 'start', onInvalid: () => undefined });
    const sub = this.subscription;
    let resolveCaughtUp!: () => void;
    const caughtUp = new Promise<void>((r) => { resolveCaughtUp = r; });
    if (head === 0n) resolveCaughtUp();
    this.consuming = (async () => {
      for await (const r of sub) {
        this.position = r.position;
        this.apply(r.event);
        if (r.event.streamId.startsWith('job-')) this.heads.set(r.event.streamId.slice(4), { revision: r.revision, position: r.position });
        if (r.event.streamId.startsWith('expiry-')) {
          this.expiry.set(r.event.streamId, { state: expiryDecider.evolve(this.expiry.get(r.event.streamId)?.state ?? expiryDecider.initialState(), r.event), revision: r.revision });
        }
        if (r.event.streamId.startsWith('rpo-')) {
          const vmId = r.event.streamId.slice(4);
          this.rpo.set(vmId, { state: rpoDecider.evolve(this.rpo.get(vmId)?.state ?? rpoDecider.initialState(), r.event), revision: r.revision });
        }
        if (!this.caughtUp && r.position >= head) resolveCaughtUp();
        if (this.caughtUp && r.event.streamId.startsWith('job-')) {
          const jobId = r.event.streamId.slice(4);
          void this.drive(jobId);
          // A job that ended and gave its view back lets the next queued backup of its VM start.
          const job = this.jobs.get(jobId);
          if (job && isTerminal(job) && !(job.snapshot?.taken && !job.snapshot.released) && job.request) {
            for (const waiting of this.waitingOn(job.request.vmId)) void this.drive(waiting);
          }
        }
      }
    })();
    await caughtUp;
    this.caughtUp = true;
    // One timed pass at a time: with thousands of open jobs a pass can outlast the interval, and
    // passes piling up on each other would only look at the same jobs again.
    this.timer = setInterval(() => { if (!this.ticking) void this.tick(); }, this.config.tickMs);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.subscription?.stop();
    await this.consuming?.catch(() => undefined);
  }

  /** Only the leader acts; a standby keeps folding so it can take over at once. */
  setLeader(leader: boolean): void {
    if (leader !== this.leader) this.logger.info({ leader }, leader ? 'became the active scheduler' : 'standing by');
    this.leader = leader;
    if (leader) {
      // Steps that ended (or failed) under an earlier leadership are looked at again now; a step
      // still under way is not started a second time beside itself (two appends deciding on the
      // same revision: a clustered nats-server before 2.9.21 may store both, nats-server#4320).
      for (const [jobId, p] of this.inflight) if (p.at >= 0) this.inflight.delete(jobId);
      void this.tick();
    }
  }

  health(): { leader: boolean; position: string; jobsOpen: number; vms: number; policies: number; maxJobsPerHost: number; maxJobsPerRepository?: number } {
    return {
      maxJobsPerHost: this.config.maxJobsPerHost,
      ...(this.config.maxJobsPerRepository !== undefined ? { maxJobsPerRepository: this.config.maxJobsPerRepository } : {}),
      leader: this.leader,
      position: this.position.toString(),
      jobsOpen: [...this.open].filter((id) => !isTerminal(this.jobs.get(id)!)).length,
      vms: this.vms.size,
      policies: this.policies.size,
    };
  }

  /** Keeps the per-VM, open and active sets of one job in step with its folded state. */
  private index(jobId: string): void {
    const j = this.jobs.get(jobId);
    if (!j) return;
    if (j.request) {
      const of = this.jobsOfVm.get(j.request.vmId) ?? new Set<string>();
      of.add(jobId);
      this.jobsOfVm.set(j.request.vmId, of);
    }
    if (!isTerminal(j) || (j.snapshot?.taken && !j.snapshot.released)) this.open.add(jobId);
    else this.open.delete(jobId);
    const slot = this.active.get(jobId);
    if (j.status === 'running' || (j.status === 'requested' && this.starting.has(jobId))) {
      if (slot) return;
      const taken = { host: this.vms.get(j.request?.vmId ?? '')?.host, repository: this.repositoryOf(j) };
      this.active.set(jobId, taken);
      this.activeOnHost.set(taken.host, (this.activeOnHost.get(taken.host) ?? 0) + 1);
      this.activeOnRepository.set(taken.repository, (this.activeOnRepository.get(taken.repository) ?? 0) + 1);
    } else if (slot) {
      this.active.delete(jobId);
      this.activeOnHost.set(slot.host, this.activeOnHost.get(slot.host)! - 1);
      this.activeOnRepository.set(slot.repository, this.activeOnRepository.get(slot.repository)! - 1);
    }
  }

  /** The VMs a policy's selector covers (looked up by name when it names them; no scan of every VM). */
  private coveredVms(policy: Policy): VmRecord[] {
    const s = policy.selector;
    const candidates = s.names?.length
      ? s.names.flatMap((n) => [...(this.vmsByName.get(n) ?? [])].map((id) => this.vms.get(id)!))
      : [...this.vms.values()];
    return candidates.filter((vm) => selects(policy, { name: vm.name, tags: vm.tags, hypervisor: vm.host }));
  }

  private apply(event: KnownEvent): void {
    switch (event.type) {
      case 'VmDiscovered':
        if (!this.vmSince.has(event.data.vmId)) this.vmSince.set(event.data.vmId, Date.parse(event.time));
        this.forgetName(event.data.vmId);
        this.vms.set(event.data.vmId, { vmId: event.data.vmId, name: event.data.name, tags: event.data.tags, host: event.data.hypervisor.host });
        this.vmsByName.set(event.data.name, (this.vmsByName.get(event.data.name) ?? new Set<string>()).add(event.data.vmId));
        return;
      case 'VmRemoved':
        // Gone from its hypervisor: no policy schedules it (nor misses its RPO) until it is discovered again.
        this.forgetName(event.data.vmId);
        this.vms.delete(event.data.vmId);
        this.vmSince.delete(event.data.vmId);
        return;
      case 'PolicyCreated':
        this.policySince.set(event.data.policyId, Date.parse(event.time));
        this.policies.set(event.data.policyId, event.data);
        return;
      case 'PolicyUpdated':
        this.policies.set(event.data.policyId, event.data);
        return;
      case 'PolicyDeleted':
        // Its restore points stay (nothing expires them by this policy's retention any more).
        this.policies.delete(event.data.policyId);
        this.paused.delete(event.data.policyId);
        return;
      case 'PolicyPaused':
        this.paused.add(event.data.policyId);
        return;
      case 'PolicyResumed':
        this.paused.delete(event.data.policyId);
        // Slots that came due while paused are not owed: schedule from now on.
        this.lastSlotCheck.set(event.data.policyId, new Date(Math.max(Date.parse(event.time), this.lastSlotCheck.get(event.data.policyId)?.getTime() ?? 0)));
        return;
      case 'RestorePointExpired':
      case 'RestorePointDeleted':
        this.expired.add(event.data.restorePointId);
        this.restorePoints.delete(event.data.restorePointId);
        return;
      case 'RestorePointDamaged': {
        if (this.expired.has(event.data.restorePointId)) return;
        const set = this.heal.get(event.data.vmId) ?? new Set<string>();
        for (const d of event.data.damaged) if (d.kind === 'chunk') set.add(d.id);
        this.heal.set(event.data.vmId, set);
        return;
      }
      case 'TokenIssued':
        if (event.data.expiresAt) this.tokens.set(event.data.tokenId, { owner: event.data.userId, name: event.data.name, expiresAt: event.data.expiresAt });
        return;
      case 'TokenRevoked':
        this.tokens.delete(event.data.tokenId);
        return;
      case 'TestRestoreStarted':
        if (event.data.policyId) this.testRestoresRunning.set(event.data.testRestoreId, `${event.data.policyId}/${event.data.vmId}`);
        return;
      case 'TestRestorePassed':
      case 'TestRestoreFailed':
        this.testRestoresRunning.delete(event.data.testRestoreId);
        return;
      case 'RestorePointLocked': {
        const until = Date.parse(event.data.retainUntil);
        if (until > (this.lockedUntil.get(event.data.restorePointId) ?? 0)) this.lockedUntil.set(event.data.restorePointId, until);
        return;
      }
      default:
        if (event.streamId.startsWith('job-')) {
          const id = event.streamId.slice(4);
          if (event.trace) this.traces.set(id, event.trace);
          this.jobs.set(id, evolveJob(this.jobs.get(id) ?? initialJobState(), event));
          if (event.type === 'JobStarted') this.starting.delete(id);
          this.index(id);
          if (event.type === 'RestorePointCommitted') {
            this.commitOrder.set(id, this.commitOrder.size + 1);
            if (this.healing.get(id) === event.data.vmId) {
              this.heal.delete(event.data.vmId);
              this.healing.delete(id);
            }
            if (!this.expired.has(event.data.restorePointId)) this.restorePoints.set(event.data.restorePointId, { vmId: event.data.vmId, at: event.time });
          }
        }
    }
  }

  private forgetName(vmId: string): void {
    const old = this.vms.get(vmId);
    if (!old) return;
    const ids = this.vmsByName.get(old.name);
    ids?.delete(vmId);
    if (ids?.size === 0) this.vmsByName.delete(old.name);
  }

  // ---- commands -----------------------------------------------------------------------------

  findVm(ref: string): VmRecord | undefined {
    const byName = this.vmsByName.get(ref);
    return this.vms.get(ref) ?? (byName?.size ? this.vms.get(byName.values().next().value!) : undefined);
  }

  async requestBackup(input: { vmId: string; policyId?: string; mode: 'auto' | 'full'; bandwidthBytesPerSec?: number }, actor: Actor, causationId: string): Promise<{ jobId: string }> {
    const vm = this.findVm(input.vmId);
    if (!vm) {
      throw new SchedulerRefusal('not_found', `unknown VM ${JSON.stringify(input.vmId)}: no hypervisor reported it (see \`cairn vm list\`)`);
    }
    if (input.policyId && !this.policies.has(input.policyId)) {
      throw new SchedulerRefusal('not_found', `unknown policy ${JSON.stringify(input.policyId)}`);
    }
    const jobId = randomUUID();
    await this.runJobCommand(jobId, {
      kind: 'request',
      data: {
        jobId, vmId: vm.vmId, policyId: input.policyId ?? null, mode: input.mode, trigger: 'manual',
        ...(input.bandwidthBytesPerSec ? { bandwidthBytesPerSec: input.bandwidthBytesPerSec } : {}),
      },
    }, actor, causationId);
    return { jobId };
  }

  async createPolicy(policy: Omit<Policy, 'policyId'> & { policyId?: string }, actor: Actor, causationId: string): Promise<{ policyId: string }> {
    const policyId = policy.policyId ?? randomUUID();
    const full: Policy = { ...policy, policyId };
    try {
      await handleCommand(this.log, `policy-${policyId}`, policyDecider, { kind: 'create', policy: full, knownRepositories: this.config.repositories, minIntervalMs: this.config.minScheduleIntervalMs }, {
        meta: { site: this.config.site, actor, causationId, correlationId: `policy-${policyId}` },
      });
    } catch (e) {
      if (e instanceof PolicyInvalidError) {
        throw new SchedulerRefusal(e.code === 'invalid' ? 'invalid_command' : e.code, `policy refused: ${e.message}`, { problems: e.problems });
      }
      throw e;
    }
    return { policyId };
  }

  /**
   * Replaces a policy. Keeping fewer restore points of any kind (shortening retention), or
   * locking new ones less (turning immutability off, a shorter lock period), needs a granted
   * four-eyes approval of that kind for exactly this new policy, checked in the log here too.
   */
  async updatePolicy(policy: Policy, approvalId: string | undefined, actor: Actor, causationId: string): Promise<{ policyId: string }> {
    const streamId = `policy-${policy.policyId}`;
    const events: KnownEvent[] = [];
    for await (const r of this.log.readStream(streamId)) events.push(r.event);
    const state = fold(policyDecider, events);
    if (!state.policy || state.deleted) throw new SchedulerRefusal('not_found', `no policy ${policy.policyId}`);
    const managed = managedByHubProblem(state, 'edited');
    if (managed) throw new SchedulerRefusal('conflict', `policy refused: ${managed}`);
    // Keeping fewer restore points (shorten-retention) or locking new ones less (disable-immutability).
    const kind = policyChangeApproval(state.policy, policy, this.now());
    if (kind) {
      const what = kind === 'disable-immutability' ? 'locking new restore points less (immutability off or a shorter lock)' : 'keeping fewer restore points';
      if (!approvalId) throw new SchedulerRefusal('approval_required', `policy ${policy.policyId}: ${what} needs a four-eyes approval (${kind})`);
      const approval: Array<{ event: KnownEvent; position: bigint }> = [];
      for await (const r of this.log.readStream(`approval-${approvalId}`)) approval.push({ event: r.event, position: r.position });
      // A secure site: both people's own signatures, with keys an endorsement chain vouches for.
      const people = approval.flatMap((r) => (r.event.type === 'ApprovalRequested' ? [r.event.data.requestedBy] : r.event.type === 'ApprovalGranted' ? [r.event.data.approvedBy] : []));
      const trust = this.config.signedApprovals ? { users: await loadUserRecords(this.log, people), root: await readTrustRoot(this.log) } : undefined;
      const verdict = checkSignedApproval(approvalId, approval, (a) => a.kind === kind && a.policyId === policy.policyId
        && a.policy !== undefined && stableJson(a.policy) === stableJson(policy), trust);
      if (!verdict.ok) throw new SchedulerRefusal(verdict.code, verdict.message);
    }
    try {
      await handleCommand(this.log, streamId, policyDecider, { kind: 'update', policy, knownRepositories: this.config.repositories, minIntervalMs: this.config.minScheduleIntervalMs }, {
        meta: { site: this.config.site, actor, causationId, correlationId: approvalId ? `approval-${approvalId}` : streamId },
      });
    } catch (e) {
      if (e instanceof PolicyInvalidError) {
        throw new SchedulerRefusal(e.code === 'invalid' ? 'invalid_command' : e.code, `policy refused: ${e.message}`, { problems: e.problems });
      }
      throw e;
    }
    return { policyId: policy.policyId };
  }

  /**
   * A global policy statement offered by the hub: applied as a hub-managed policy when a person
   * this site trusts signed it (checkGlobalPolicyStatement), else refused and recorded as
   * AccessDenied. A version the site already runs (or an older one) changes nothing. A signed
   * version that does not select this site deletes its copy (restore points kept), as a withdrawal.
   */
  async applyGlobalPolicy(statement: GlobalPolicyStatement, actor: Actor, causationId: string, subject = `cairn.${this.config.site}.cmd.scheduler.ApplyGlobalPolicy`): Promise<{ policyId: string; version: number; outcome: 'created' | 'updated' | 'deleted' | 'current' }> {
    const signers = statement.signatures.map((x) => x.userId);
    const verdict = checkGlobalPolicyStatement(statement, {
      site: this.config.site, tags: this.config.hub?.tags ?? [], hubId: this.config.hub?.id,
      users: await loadUserRecords(this.log, signers), root: await readTrustRoot(this.log),
    });
    if (!verdict.ok) {
      const streamId = `access-${this.now().toISOString().slice(0, 10)}`;
      const denied = newEvent('AccessDenied', {
        userId: (signers[0] ?? actor.id).slice(0, 256), roles: [], operation: 'ApplyGlobalPolicy', needed: verdict.needed, method: 'NATS', path: subject.slice(0, 2048),
      }, { site: this.config.site, actor: this.config.actor, streamId, causationId });
      await this.log.append(streamId, [denied], { expectedRevision: 'any' });
      this.logger.warn({ policyId: statement.policyId, version: statement.version, reason: verdict.reason }, 'global policy refused');
      throw new SchedulerRefusal(verdict.needed === 'policy' ? 'forbidden' : 'unauthenticated', verdict.reason);
    }
    const policyId = sitePolicyId(statement.policyId, this.config.site);
    const streamId = `policy-${policyId}`;
    // A version that no longer selects this site (its selector narrowed) takes the policy away here, as a withdrawal does.
    const withdrawn = Boolean(statement.withdrawn) || !verdict.selected;
    const events: KnownEvent[] = [];
    for await (const r of this.log.readStream(streamId)) events.push(r.event);
    const before = fold(policyDecider, events);
    const existed = Boolean(before.policy && !before.deleted);
    // The person who signed it is the actor of what the site records.
    const signer: Actor = { kind: 'user', id: verdict.signedBy.userId };
    let drafts: number;
    try {
      const r = await handleCommand(this.log, streamId, policyDecider, {
        kind: 'apply-global', policy: { ...statement.policy, policyId }, globalPolicyId: statement.policyId, version: statement.version, ...(withdrawn ? { withdrawn: true } : {}), knownRepositories: this.config.repositories, minIntervalMs: this.config.minScheduleIntervalMs,
      }, { meta: { site: this.config.site, actor: signer, causationId, correlationId: `globalpolicy-${statement.policyId}` } });
      drafts = r.events.length;
    } catch (e) {
      if (e instanceof PolicyInvalidError) throw new SchedulerRefusal(e.code === 'invalid' ? 'invalid_command' : e.code, `global policy refused: ${e.message}`, { problems: e.problems });
      throw e;
    }
    if (!drafts) {
      const current = before.policy?.globalVersion ?? statement.version;
      return { policyId, version: current, outcome: 'current' };
    }
    this.logger.info({ policyId, globalPolicyId: statement.policyId, version: statement.version, signedBy: verdict.signedBy.userId, ...(verdict.selected ? {} : { notSelected: true }) }, 'global policy applied');
    return { policyId, version: statement.version, outcome: withdrawn ? 'deleted' : existed ? 'updated' : 'created' };
  }

  /** Pauses, resumes or deletes a policy (deleting keeps its restore points). */
  async changePolicyState(kind: 'pause' | 'resume' | 'delete', policyId: string, actor: Actor, causationId: string): Promise<{ policyId: string }> {
    const streamId = `policy-${policyId}`;
    try {
      if (kind === 'delete') {
        const events: KnownEvent[] = [];
        for await (const r of this.log.readStream(streamId)) events.push(r.event);
        const state = fold(policyDecider, events);
        if (!state.policy || state.deleted) throw new SchedulerRefusal('not_found', `no policy ${policyId}`);
      }
      await handleCommand(this.log, streamId, policyDecider, { kind, policyId }, {
        meta: { site: this.config.site, actor, causationId, correlationId: streamId },
      });
    } catch (e) {
      if (e instanceof PolicyInvalidError) throw new SchedulerRefusal(e.code === 'invalid' ? 'invalid_command' : e.code, `policy ${kind} refused: ${e.message}`);
      throw e;
    }
    this.logger.info({ policyId, kind, actor: actor.id }, `policy ${kind}d`);
    return { policyId };
  }

  async cancelJob(jobId: string, reason: string, actor: Actor, causationId: string): Promise<void> {
    await this.runJobCommand(jobId, { kind: 'cancel', reason }, actor, causationId);
  }

  /** Where this scheduler's subscription left a job's stream: its revision and that event's position. */
  private sentPosition(jobId: string): { jobRevision: number; jobPosition?: number } {
    const head = this.heads.get(jobId);
    return head ? { jobRevision: Number(head.revision), jobPosition: Number(head.position) } : { jobRevision: 0 };
  }

  /**
   * Decides a command on the job as this scheduler has folded it and appends at that revision
   * (a new job: no stream); the stream is read only when it moved on since (a conflict).
   */
  private async runJobCommand(jobId: string, command: JobCommand, actor: Actor, causationId: string | null) {
    const known = this.jobs.get(jobId);
    const revision = this.heads.get(jobId)?.revision;
    try {
      return await handleCommand(this.log, `job-${jobId}`, jobDecider, command, {
        meta: { site: this.config.site, actor, causationId, correlationId: jobId },
        known: known && revision !== undefined ? { state: known, revision } : { state: initialJobState(), revision: -1n },
      });
    } catch (e) {
      if (e instanceof JobRefusedError) throw new SchedulerRefusal(e.code === 'ended' ? 'conflict' : e.code, e.message);
      throw e;
    }
  }

  // ---- the process manager ----------------------------------------------------------------

  private async tick(): Promise<void> {
    if (!this.leader || !this.caughtUp) return;
    this.ticking = true;
    const driven: Array<Promise<void>> = [];
    try {
      await this.scheduleDueSlots();
      await this.scheduleTestRestores();
      await this.watchRpo();
      await this.watchExpiry();
      // Higher-priority policies first, then the oldest request: they get the free slots of a host.
      // (Keys computed once per job, and compared as plain strings: ISO times; at 10,000 open jobs
      // a comparator with lookups and localeCompare cost tens of ms a tick.)
      const priority = (j: JobState) => (j.request?.policyId ? this.policies.get(j.request.policyId)?.priority ?? 0 : 0);
      const open = [...this.open].map((id) => { const j = this.jobs.get(id)!; return { id, j, p: priority(j), at: j.requestedAt ?? '' }; })
        .sort((a, b) => b.p - a.p || (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
      // Started in that order without waiting for each other: a job takes its host slot before
      // drive's first await, so the limits hold; a step that waits long on another service
      // (a snapshot command up to its timeout) holds up no other job's next step.
      for (const { id, j } of open) {
        // A request whose host runs as many jobs as it may would only be told to wait (its one
        // step is to start): not driven, so a tick costs the jobs that can move, not all open ones.
        if (j.status === 'requested' && this.hostFull(j)) continue;
        driven.push(this.drive(id));
      }
    } catch {
      // The next tick tries again; every step is idempotent.
    } finally {
      this.ticking = false;
    }
    await Promise.allSettled(driven);
  }

  /**
   * Another job of this VM holds (or is about to hold) a view of its disks: a second backup of
   * the VM waits its turn instead of failing on a disk that is in view (issue 22).
   */
  private vmBusy(vmId: string, jobId: string): boolean {
    for (const id of this.jobsOfVm.get(vmId) ?? []) {
      const j = this.jobs.get(id)!;
      if (id === jobId) continue;
      if (j.status === 'running' || (j.status === 'requested' && this.starting.has(id))) return true;
      if (j.snapshot?.taken && !j.snapshot.released) return true;
    }
    return false;
  }

  private repositoryOf(job: JobState): string {
    const policy = job.request?.policyId ? this.policies.get(job.request.policyId) : undefined;
    return policy?.repository ?? this.config.repositories[0]!;
  }

  /**
   * The restore point an incremental of this job builds on: the VM's newest one in the job's
   * repository that is still there, unless it is older than the last backup of the job's own
   * chain (its policy, or manual). That backup restarted the chain's changed-block history, so
   * what changed between an older point and it is no longer known: then none, and the view is
   * full. (A newer point from another chain is a sound base: the history holds a superset.)
   */
  private parentFor(jobId: string, job: JobState): ParentChoice {
    const repository = this.repositoryOf(job);
    const vmId = job.request?.vmId;
    const chain = job.request?.policyId ?? null;
    let best: { order: number; id: string; job: JobState } | undefined;
    let chainHead = -1;
    for (const id of this.jobsOfVm.get(vmId ?? '') ?? []) {
      const j = this.jobs.get(id)!;
      if (id === jobId || !j.committed) continue;
      const order = this.commitOrder.get(id) ?? 0;
      if ((j.request?.policyId ?? null) === chain) chainHead = Math.max(chainHead, order);
      if (this.expired.has(j.committed.restorePointId) || this.repositoryOf(j) !== repository) continue;
      if (!best || order > best.order) best = { order, id, job: j };
    }
    if (!best) return { none: `no earlier restore point of this VM in repository ${repository}` };
    const damaged = this.heal.get(vmId ?? '');
    if (damaged?.size) return { none: `a verify found ${damaged.size} damaged chunk(s) in restore points of this VM: read whole, sent again` };
    if (best.order < chainHead) {
      return { none: `the newest restore point of this VM in repository ${repository} (${best.job.committed!.restorePointId}) is older than the last backup of chain ${chain ?? 'manual'}, which restarted its changed-block history` };
    }
    const c = best.job.committed!;
    return { restorePointId: c.restorePointId, snapshotId: best.job.snapshot?.snapshotId ?? best.id, disks: c.disks.map((d) => ({ name: d.name, sizeBytes: d.sizeBytes })) };
  }

  /** Jobs of a VM waiting for their turn (requested, not started). */
  private waitingOn(vmId: string): string[] {
    return [...this.jobsOfVm.get(vmId) ?? []].filter((id) => this.jobs.get(id)!.status === 'requested');
  }

  private runningOnHost(host: string): number {
    return this.activeOnHost.get(host) ?? 0;
  }

  private hostFull(job: JobState): boolean {
    const vm = job.request ? this.vms.get(job.request.vmId) : undefined;
    return vm !== undefined && this.runningOnHost(vm.host) >= this.config.maxJobsPerHost;
  }

  private runningOnRepository(repository: string): number {
    return this.activeOnRepository.get(repository) ?? 0;
  }

  /** Takes the next step of one job, unless the same step is already under way. */
  async drive(jobId: string): Promise<void> {
    if (!this.leader) return;
    const state = this.jobs.get(jobId);
    if (!state) return;
    const step = nextJobStep(state, this.now(), this.config.timeouts);
    if (step.kind === 'none') return;
    const key = `${jobId}:${step.kind}:${'snapshotId' in step ? step.snapshotId : ''}`;
    const pending = this.inflight.get(jobId);
    const nowMs = this.now().getTime();
    if (pending && pending.step === key) {
      const backoff = Math.min(30_000, this.config.retryBaseMs * 2 ** pending.attempts);
      if (pending.at < 0 || nowMs - pending.at < backoff) return;
    }
    const attempts = pending?.step === key ? pending.attempts + 1 : 0;
    this.inflight.set(jobId, { step: key, at: -1, attempts });
    const actor = this.config.actor;
    const cause = state.lastEventId ?? null;
    if (step.kind === 'start') {
      const vm = this.vms.get(state.request!.vmId);
      const policy = state.request!.policyId ? this.policies.get(state.request!.policyId) : undefined;
      // A scheduled job waits for its policy's backup window; a manual one does not.
      const outsideWindow = state.request!.trigger === 'schedule' && policy && !inBackupWindow(policy.schedule, this.now());
      const vmBusy = this.vmBusy(state.request!.vmId, jobId);
      if (vmBusy && pending?.step !== key) this.logger.info({ jobId, vmId: state.request!.vmId }, 'another backup of this VM is in flight: queued until it ends');
      const gate = startGate({
        outsideWindow: Boolean(outsideWindow), vmBusy,
        runningOnHost: vm ? this.runningOnHost(vm.host) : undefined, maxJobsPerHost: this.config.maxJobsPerHost,
        runningOnRepository: this.runningOnRepository(this.repositoryOf(state)), maxJobsPerRepository: this.config.maxJobsPerRepository,
      });
      if (!gate.start) {
        if (gate.waitFor === 'repository' && pending?.step !== key) this.logger.info({ jobId, repository: this.repositoryOf(state) }, 'its repository runs as many jobs as it may: queued until one ends');
        this.inflight.set(jobId, { step: key, at: nowMs, attempts: 0 });
        return;
      }
    }
    // Each step is a span of the job's trace (continued from its latest event), so the events,
    // commands and work it causes carry the same trace.
    await inSpan('@cairn/scheduler', `scheduler ${step.kind}`, { jobId, parent: this.traces.get(jobId), attributes: { 'cairn.job.step': step.kind, 'cairn.job.attempt': attempts } }, async () => {
      this.logger.info({ jobId, step: step.kind, attempt: attempts }, `job step ${step.kind}`);
      try {
        switch (step.kind) {
          case 'start':
            this.starting.add(jobId);
            this.index(jobId);
            await this.runJobCommand(jobId, { kind: 'start', snapshotId: randomUUID() }, actor, cause);
            break;
          case 'requestSnapshot': {
            const quiesce = (state.request!.policyId ? this.policies.get(state.request!.policyId)?.quiesce : undefined) ?? 'preferred';
            const parent = this.parentFor(jobId, state);
            await this.ports.requestSnapshot({
              jobId, vmId: step.vmId, snapshotId: step.snapshotId, mode: state.request!.mode, policyId: state.request!.policyId,
              parent: 'none' in parent ? parent : { restorePointId: parent.restorePointId, snapshotId: parent.snapshotId },
              ...this.sentPosition(jobId), causationId: cause, quiesce,
            });
          }
            break;
          case 'queueTransfer': {
            // Recorded first, then published: a mover that takes the work at once finds the job
            // queued; a scheduler that dies in between publishes again later (idempotent).
            const queued = await this.runJobCommand(jobId, { kind: 'queueTransfer', queue: TRANSFER_QUEUE }, actor, cause);
            const taken = state.snapshot!.taken!;
            const vm = this.vms.get(state.request!.vmId);
            const policy = state.request!.policyId ? this.policies.get(state.request!.policyId) : undefined;
            await this.ports.enqueueTransfer({
              jobRevision: Number(queued.revision),
              ...(queued.position !== undefined ? { jobPosition: Number(queued.position) } : {}),
              causationId: queued.events.at(-1)?.id ?? queued.state.lastEventId ?? cause ?? jobId,
              lockRetention: policy?.immutable ? policy.retention : null,
              fileIndex: policy?.fileIndex !== false,
              parent: transferParent(this.parentFor(jobId, state)),
              jobId,
              vmId: state.request!.vmId,
              vmName: vm?.name ?? state.request!.vmId,
              snapshotId: taken.snapshotId,
              policyId: state.request!.policyId,
              repository: policy?.repository ?? this.config.repositories[0]!,
              mode: state.request!.mode,
              nbd: taken.nbd,
              ...((state.request!.bandwidthBytesPerSec ?? policy?.bandwidthBytesPerSec) ? { bandwidthBytesPerSec: state.request!.bandwidthBytesPerSec ?? policy!.bandwidthBytesPerSec! } : {}),
              ...(taken.consistency ? { consistency: taken.consistency } : {}),
              ...(taken.vmConfig ? { vmConfig: taken.vmConfig } : {}),
              ...(this.heal.get(state.request!.vmId)?.size ? { heal: [...this.heal.get(state.request!.vmId)!] } : {}),
            });
            if (this.heal.get(state.request!.vmId)?.size) this.healing.set(jobId, state.request!.vmId);
            break;
          }
          case 'release':
            await this.ports.releaseSnapshot({
              jobId, snapshotId: step.snapshotId, success: step.success, ...this.sentPosition(jobId), causationId: cause,
            });
            break;
          case 'complete': {
            const started = Date.parse(state.requestedAt ?? this.now().toISOString());
            await this.runJobCommand(jobId, { kind: 'complete', durationMs: Math.max(0, nowMs - started) }, actor, cause);
            await this.applyRetentionFor(jobId);
            break;
          }
          case 'fail':
            await this.runJobCommand(jobId, { kind: 'fail', phase: step.phase, reason: step.reason, retryable: false }, actor, cause);
            break;
        }
        this.stepDone(jobId, key, attempts);
      } catch (e) {
        this.logger.warn({ jobId, step: step.kind, attempt: attempts, err: (e as Error).message }, `job step ${step.kind} failed`);
        if (e instanceof SnapshotRefused) {
          await this.runJobCommand(jobId, { kind: 'fail', phase: 'snapshot', reason: e.message, retryable: false }, actor, cause).catch(() => undefined);
        }
        // Transient: try the same step again after a growing delay.
        this.stepDone(jobId, key, attempts);
      }
    });
  }

  /**
   * A step ended: the same step is not run again before its backoff. Unless the job's next step
   * began meanwhile (its event came in while this one's append was still being answered, as a
   * start's JobStarted does): that one's in-flight record stays, or it would be run twice.
   */
  private stepDone(jobId: string, key: string, attempts: number): void {
    const now = this.inflight.get(jobId);
    if (now && now.step !== key) return;
    this.inflight.set(jobId, { step: key, at: this.now().getTime(), attempts });
  }

  // ---- schedules and retention ----------------------------------------------------------------

  private async scheduleDueSlots(): Promise<void> {
    const now = this.now();
    const due: Array<{ policy: Policy; vm: VmRecord; slot: Date }> = [];
    for (const policy of this.policies.values()) {
      if (this.paused.has(policy.policyId)) continue;
      // A leader that has not looked at this policy yet may have just taken over from one that
      // died: slots that came due while the dead one still held the lease (up to its lifetime)
      // are still owed. Slot job ids make asking again a no-op; nothing before the policy.
      const lookback = now.getTime() - this.config.leaseTtlMs - this.config.tickMs * 2;
      const after = this.lastSlotCheck.get(policy.policyId) ?? new Date(Math.max(lookback, this.policySince.get(policy.policyId) ?? lookback));
      this.lastSlotCheck.set(policy.policyId, now);
      // The next slot after `after` is the same for every `after` before it: the cron is walked
      // again only once that slot has come (10,000 policies cost a comparison each per tick).
      const cached = this.nextSlot.get(policy.policyId);
      if (cached && cached.policy === policy && cached.after <= after.getTime() && after.getTime() < cached.at && now.getTime() < cached.at) continue;
      const slots = dueSlots(policy, after, now);
      // A scheduler that was down runs a missed schedule once, not once per missed slot.
      const slot = slots.at(-1);
      const next = dueSlots(policy, slot ?? after, new Date(8.64e15), 1)[0];
      this.nextSlot.set(policy.policyId, { policy, after: (slot ?? after).getTime(), at: next?.getTime() ?? Infinity });
      if (!slot) continue;
      for (const vm of this.coveredVms(policy)) due.push({ policy, vm, slot });
    }
    // Each job its own stream: requested a few dozen at a time, not one round trip after another.
    await inParallel(due, 32, async ({ policy, vm, slot }) => {
      const jobId = slotJobId(policy.policyId, vm.vmId, slot);
      // A scheduled job's trace starts here (a requested one continues its caller's).
      await inSpan('@cairn/scheduler', 'scheduler schedule', { jobId, root: true, attributes: { 'cairn.policy.id': policy.policyId } }, async () => {
        try {
          await this.runJobCommand(jobId, {
            kind: 'request',
            data: { jobId, vmId: vm.vmId, policyId: policy.policyId, mode: 'auto', trigger: 'schedule', slot: slot.toISOString() },
          }, this.config.actor, `schedule-${policy.policyId}`);
        } catch (e) {
          if (!(e instanceof WrongExpectedRevisionError)) throw e;
        }
      });
    });
  }

  /**
   * A policy's testRestore schedule: at its latest due slot, the newest restore point of each VM
   * it covers goes to a data mover to be booted in isolation. The test restore's id is made of
   * policy, VM and slot, and the mover records its start only in a new stream, so a slot asked
   * twice (a retry, a new leader looking back) boots once; a VM whose last scheduled test
   * restore is still running skips the slot.
   */
  /**
   * A scheduled test restore that did not start gets TestRestoreRefused in its own stream, only
   * while that is empty (a mover that started it after all, or a standby that recorded it, wins).
   */
  private async recordTestRestoreRefused(data: { testRestoreId: string; restorePointId: string; vmId: string; policyId: string; reason: string }): Promise<void> {
    const streamId = `testrestore-${data.testRestoreId}`;
    try {
      await this.log.append(streamId, [newEvent('TestRestoreRefused', data, { site: this.config.site, actor: this.config.actor, streamId, correlationId: streamId })], { expectedRevision: 'no_stream' });
    } catch (e) {
      if (!(e instanceof WrongExpectedRevisionError)) this.logger.warn({ testRestoreId: data.testRestoreId, err: (e as Error).message }, 'test restore refusal not recorded');
    }
  }

  async scheduleTestRestores(): Promise<void> {
    const now = this.now();
    for (const policy of this.policies.values()) {
      if (!policy.testRestore || this.paused.has(policy.policyId) || !this.ports.requestTestRestore) continue;
      const lookback = now.getTime() - this.config.leaseTtlMs - this.config.tickMs * 2;
      const after = this.lastTestRestoreCheck.get(policy.policyId) ?? new Date(Math.max(lookback, this.policySince.get(policy.policyId) ?? lookback));
      const slot = dueTestRestoreSlots(policy, after, now).at(-1);
      this.lastTestRestoreCheck.set(policy.policyId, now);
      if (!slot) continue;
      const running = new Set(this.testRestoresRunning.values());
      const { cron: _c, restorePoints: _r, ...checks } = policy.testRestore;
      for (const vm of this.coveredVms(policy)) {
        if (running.has(`${policy.policyId}/${vm.vmId}`)) {
          this.logger.info({ policyId: policy.policyId, vmId: vm.vmId, slot: slot.toISOString() }, 'test restore slot skipped: the last one is still running');
          continue;
        }
        let newest: { restorePointId: string; at: string } | undefined;
        for (const [restorePointId, p] of this.restorePoints) if (p.vmId === vm.vmId && (!newest || p.at > newest.at)) newest = { restorePointId, at: p.at };
        if (!newest) continue;
        const testRestoreId = `tr-${createHash('sha256').update(`${policy.policyId}\n${vm.vmId}\n${slot.toISOString()}`).digest('hex').slice(0, 32)}`;
        try {
          await this.ports.requestTestRestore({ restorePointId: newest.restorePointId, policyId: policy.policyId, testRestoreId, ...checks });
          this.logger.info({ policyId: policy.policyId, vmId: vm.vmId, restorePointId: newest.restorePointId, testRestoreId }, 'scheduled test restore started');
        } catch (e) {
          this.logger.warn({ policyId: policy.policyId, vmId: vm.vmId, testRestoreId, err: (e as Error).message }, 'scheduled test restore not started');
          await this.recordTestRestoreRefused({ testRestoreId, restorePointId: newest.restorePointId, vmId: vm.vmId, policyId: policy.policyId, reason: (e as Error).message.slice(0, 4096) || 'refused' });
        }
      }
    }
  }

  /**
   * RPO watch: every VM a policy covers, paused or not (stopped backups are what it is for),
   * against the policy's RPO; RpoMissed once, RpoRestored when back, through the VM's RPO stream.
   */
  async watchRpo(): Promise<void> {
    const now = this.now();
    const newest = new Map<string, { restorePointId: string; at: string }>();
    for (const [restorePointId, p] of this.restorePoints) {
      const n = newest.get(p.vmId);
      if (!n || p.at > n.at) newest.set(p.vmId, { restorePointId, at: p.at });
    }
    for (const policy of this.policies.values()) {
      let rpoMinutes = this.rpoOfPolicy.get(policy);
      if (rpoMinutes === undefined) this.rpoOfPolicy.set(policy, rpoMinutes = policyRpoMinutes(policy, now));
      for (const vm of this.coveredVms(policy)) {
        const since = Math.max(this.policySince.get(policy.policyId) ?? 0, this.vmSince.get(vm.vmId) ?? 0);
        const check: RpoCheck = {
          kind: 'check', vmId: vm.vmId, policyId: policy.policyId, rpoMinutes, newest: newest.get(vm.vmId) ?? null,
          coveredSince: new Date(since).toISOString(), now,
        };
        const known = this.rpo.get(vm.vmId) ?? { state: rpoDecider.initialState(), revision: -1n };
        if (rpoDecider.decide(check, known.state).length === 0) continue; // nothing to record: no I/O
        const result = await handleCommand(this.log, rpoStreamId(vm.vmId), rpoDecider, check, {
          meta: { site: this.config.site, actor: this.config.actor, correlationId: rpoStreamId(vm.vmId), causationId: null }, known,
        });
        this.rpo.set(vm.vmId, { state: result.state, revision: result.revision });
        for (const e of result.events) this.logger.warn({ vmId: vm.vmId, policyId: policy.policyId, rpoMinutes }, e.type === 'RpoMissed' ? 'VM out of its RPO' : 'VM within its RPO again');
      }
    }
  }

  /**
   * Expiry watch: every API token with an expiry, not revoked, and every TLS certificate of the
   * site's security directory (`certificateDir`), within `expiryWarnDays` of its expiry gets
   * CredentialExpiring once per expiry time, through its stream `expiry-api-token-<id>` /
   * `expiry-certificate-<file as id>`.
   */
  async watchExpiry(): Promise<void> {
    const now = this.now();
    const items: Array<{ credential: 'api-token' | 'certificate'; id: string; owner: string; name: string; expiresAt: string }> =
      [...this.tokens].map(([id, t]) => ({ credential: 'api-token' as const, id, ...t }));
    if (this.config.certificateDir) {
      if (!this.certificates || now.getTime() - this.certificates.at >= 600_000) {
        try {
          const list = await readSiteCertificates(this.config.certificateDir, (file, reason) => this.logger.warn({ file, reason }, 'a .pem file of the security directory is not a readable certificate'));
          this.certificates = { at: now.getTime(), list };
        } catch (err) {
          this.logger.warn({ dir: this.config.certificateDir, err: (err as Error).message }, 'the security directory cannot be read: its certificates are not watched for expiry');
          this.certificates = { at: now.getTime(), list: this.certificates?.list ?? [] };
        }
      }
      for (const c of this.certificates.list) items.push({ credential: 'certificate', id: c.id, owner: c.subject.slice(0, 256), name: c.file.slice(0, 256), expiresAt: c.validTo });
    }
    for (const t of items) {
      const id = t.id;
      if (Date.parse(t.expiresAt) <= now.getTime() - 86_400_000) continue; // long gone: nothing to warn of
      const streamId = expiryStreamId(t.credential, id);
      const check = { kind: 'check' as const, credential: t.credential, id, owner: t.owner, name: t.name, expiresAt: t.expiresAt, warnDays: this.config.expiryWarnDays ?? 14, now };
      const known = this.expiry.get(streamId) ?? { state: expiryDecider.initialState(), revision: -1n };
      if (expiryDecider.decide(check, known.state).length === 0) continue;
      const result = await handleCommand(this.log, streamId, expiryDecider, check, {
        meta: { site: this.config.site, actor: this.config.actor, correlationId: streamId, causationId: null }, known,
      });
      this.expiry.set(streamId, { state: result.state, revision: result.revision });
      this.logger.warn({ credential: t.credential, id, owner: t.owner, name: t.name, expiresAt: t.expiresAt }, t.credential === 'certificate' ? 'certificate expires soon' : 'API token expires soon');
    }
  }

  private async applyRetentionFor(jobId: string): Promise<void> {
    const job = this.jobs.get(jobId);
    const policyId = job?.request?.policyId;
    const policy = policyId ? this.policies.get(policyId) : undefined;
    if (!job?.request || !policy) return;
    const points = [...this.jobsOfVm.get(job.request.vmId) ?? []].map((id) => this.jobs.get(id)!)
      .filter((j) => j.request?.policyId === policyId && j.committed && !this.expired.has(j.committed.restorePointId))
      .map((j) => ({ id: j.committed!.restorePointId, time: j.phaseSince ?? j.requestedAt ?? '' }));
    const { expire } = applyRetention(points, policy.retention, policy.schedule.timezone);
    for (const [restorePointId, reason] of expire) {
      // A locked restore point is not expired before its lock ends: the next retention run of
      // this policy and VM (after a later backup) considers it again.
      if ((this.lockedUntil.get(restorePointId) ?? 0) > this.now().getTime()) {
        this.logger.info({ restorePointId, lockedUntil: new Date(this.lockedUntil.get(restorePointId)!).toISOString() }, 'retention would let it go, but it is locked: kept until its lock ends');
        continue;
      }
      // Through the restore point's decider, at the revision read (a locked point's stream
      // exists): not again once expired or deleted, not while a lock recorded there holds.
      await handleCommand(this.log, `restorepoint-${restorePointId}`, restorePointDecider, {
        kind: 'expire', data: { restorePointId, vmId: job.request.vmId, policyId: policy.policyId, reason }, now: this.now(),
      }, { meta: { site: this.config.site, actor: this.config.actor, correlationId: jobId, causationId: null, time: this.now() } });
    }
  }
}

/** A snapshot coordinator said no (as opposed to not answering): the job fails with its words. */
export class SnapshotRefused extends Error {}

/** One job per (policy, VM, slot), whichever scheduler gets there: the id is derived from them. */
export function slotJobId(policyId: string, vmId: string, slot: Date): string {
  const stamp = slot.toISOString().replace(/[-:]/g, '').slice(0, 13);
  const h = createHash('sha256').update(`${policyId}\n${vmId}\n${slot.toISOString()}`).digest('hex').slice(0, 16);
  return `s${stamp}-${h}`;
}

/** Runs `fn` over `items`, at most `limit` at a time; the first error is thrown once all settled. */
async function inParallel<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const errors: unknown[] = [];
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++]!;
      try { await fn(item); } catch (e) { errors.push(e); }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (errors.length) throw errors[0];
}

/** JSON with object keys sorted, to compare two policies whatever order their keys came in. */
function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v && typeof v === 'object') return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${stableJson((v as Record<string, unknown>)[k])}`).join(',')}}`;
  return JSON.stringify(v);
}
