// The snapshot coordinator's rules: open a point-in-time view for a job and record it as
// SnapshotTaken (or SnapshotFailed), release it when the job ends or its lease runs out, keep
// the inventory in the log, and after a crash keep what is still leased and remove the rest.
// Every view is remembered in a record file before its event is written, so a restarted
// coordinator never loses track of a view it announced. What the job's stream says (snapshot
// id, mode, policy, its revision) comes in the command: the coordinator records its facts in
// the job's stream through the job decider, expecting that revision, and reads the stream only
// when it moved on since (or for a lease that ran out, which no command announces).
import { createHash, randomUUID } from 'node:crypto';
import { Refusal, newEvent, type Actor, type QuiescePolicy, type TraceContext } from '@cairn/contracts';
import { WrongExpectedRevisionError, activeTraceContext, fold, handleCommand, type EventAppender, type EventLogReader, type EventStreamReader } from '@cairn/eventlog';
import { jobDecider, jobStateAsSent, JobRefusedError, type JobCommand, type JobState } from '@cairn/jobs';
import { inSpan } from '@cairn/telemetry';
import type { GuestAgentPort, HypervisorAdapter, View } from '@cairn/hypervisor';
import { decideInventory, decideRemoval, evolveVm, unknownVm, vmIdFromName, type InventoryChange, type KnownVm, type ObservedVm } from './inventory.decider.ts';
import { CoalescedRound } from './coalesced-round.ts';
import { LoggedVms } from './logged-vms.ts';
import { expiredRecords, type ViewRecord, type ViewRecordFile } from './view-records.ts';
import { SnapshotAnswers } from './snapshot-answers.ts';

export interface CoordinatorLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface CoordinatorSettings {
  readonly site: string;
  readonly actor: Actor;
  readonly leaseMs: number;
}

/** A refusal with a command error code (`not_found`, `conflict`, `snapshot_failed`...). */
export class SnapshotCommandError extends Refusal {
  override readonly name = 'SnapshotCommandError';
}

export interface RequestSnapshotInput {
  readonly jobId: string;
  readonly vmId: string;
  readonly disks?: readonly string[];
  /** `required`, `preferred` (default), `off`; true/false mean preferred/off. */
  readonly quiesce?: boolean | QuiescePolicy;
  readonly leaseMs?: number;
  /** The snapshot id the job asked for (else the idempotency key). */
  readonly snapshotId?: string;
  readonly mode?: 'auto' | 'full';
  readonly policyId?: string | null;
  /** What the transfer will build on, or why nothing (then the view is full). */
  readonly parent?: { readonly restorePointId: string; readonly snapshotId: string } | { readonly none: string };
  /** Where the sender left the job's stream (see the RequestSnapshot command). */
  readonly jobRevision?: number;
  /** Position of the event at `jobRevision`, sent with it: the append expects it, no head read. */
  readonly jobPosition?: number;
  readonly causationId?: string;
}

export interface ReleaseSnapshotInput {
  readonly jobId: string;
  readonly snapshotId: string;
  readonly outcome?: 'success' | 'failure';
  readonly jobRevision?: number;
  /** Position of the event at `jobRevision`, sent with it: the append expects it, no head read. */
  readonly jobPosition?: number;
  readonly causationId?: string;
}

/** The job as the command's sender left it, when it said where (no read needed). */
interface SentPosition { readonly state: JobState; readonly revision: bigint; readonly position?: bigint | undefined; readonly causationId: string | null }

const ID = /^[A-Za-z0-9_-]{1,200}$/;
const MAX_VM_CONFIG = 256 * 1024;
/** Reads and decisions of one VM's inventory before a conflict is given up (the next round tries again). */
const INVENTORY_ATTEMPTS = 4;

function alreadyReleased(snapshotId: string): SnapshotCommandError {
  return new SnapshotCommandError('not_found', `snapshot ${snapshotId} was already released (its lease ran out): its changes stay for the next backup`);
}

/** Chain (bitmap) name for a policy: one changed-block history per policy and disk. */
export function chainFor(policyId: string | null | undefined): string {
  if (!policyId) return 'manual';
  return /^[A-Za-z0-9_-]{1,64}$/.test(policyId) ? policyId : createHash('sha256').update(policyId).digest('hex').slice(0, 32);
}

export class SnapshotCoordinator {
  readonly #locks = new Map<string, Promise<unknown>>();
  /** vmId -> the instance that holds it and its name there (the first VM of that id in its inventory). */
  readonly #vmHost = new Map<string, { instance: string; name: string }>();
  /** Instances whose first successful inventory round of this run has compared them with the whole log. */
  readonly #seeded = new Set<string>();
  readonly #inventoryRounds = new Map<string, CoalescedRound>();
  /** The log's VMs, brought up to date at each inventory round by reading only the new `vm` events. */
  readonly #logged: LoggedVms;
  /** Answers for snapshots no longer open: its commands keep no replies in the reply store. */
  readonly #answers = new SnapshotAnswers();

  constructor(
    private readonly settings: CoordinatorSettings,
    readonly adapters: ReadonlyMap<string, HypervisorAdapter>,
    readonly log: EventAppender & EventStreamReader & EventLogReader,
    private readonly records: ViewRecordFile,
    private readonly logger: CoordinatorLogger,
  ) {
    this.#logged = new LoggedVms(log);
  }

  /** After a (re)start: keep views still leased, remove every other leftover of earlier runs. */
  async recover(): Promise<void> {
    const records = await this.records.load();
    for (const r of records) this.adapters.get(r.instance)?.adoptView(r.view);
    for (const [name, adapter] of this.adapters) {
      await this.#locked(name, async () => {
        const keep = new Set(records.filter((r) => r.instance === name).map((r) => r.view.viewId));
        const report = await adapter.reapOrphans(keep);
        const n = report.exports.length + report.jobs.length + report.nodes.length + report.files.length + report.bitmaps.length;
        if (n > 0) this.logger.warn({ instance: name, ...report }, 'removed leftovers of an earlier run');
      });
    }
    await this.reapExpired();
  }

  /**
   * Opens a view and records SnapshotTaken. A repeat (same snapshot id and job) is answered as the
   * first request was: while the view is open by recording it again (the job decider records
   * nothing twice), after that from the remembered answer (SnapshotAnswers).
   */
  async requestSnapshot(input: RequestSnapshotInput, idempotencyKey: string): Promise<{ snapshotId: string }> {
    const snapshotId = input.snapshotId ?? (ID.test(idempotencyKey) ? idempotencyKey : randomUUID());
    if (!this.records.get(snapshotId)) {
      const answered = this.#answers.request(snapshotId, input.jobId);
      if (answered) throw answered;
      if (answered === null) return { snapshotId };
    }
    try {
      await this.#requestSnapshot(input, snapshotId);
    } catch (e) {
      if (e instanceof SnapshotCommandError) this.#answers.rememberRequest(snapshotId, input.jobId, e);
      throw e;
    }
    this.#answers.rememberRequest(snapshotId, input.jobId, null);
    return { snapshotId };
  }

  async #requestSnapshot(input: RequestSnapshotInput, snapshotId: string): Promise<void> {
    // Nothing to build on: a full view, whatever the changed-block history holds (its generation still steps).
    const noParent = input.parent && 'none' in input.parent && input.mode !== 'full' ? input.parent.none : undefined;
    const job = { mode: noParent ? 'full' as const : input.mode ?? 'auto', policyId: input.policyId ?? null };
    const quiesce: QuiescePolicy = input.quiesce === true || input.quiesce === undefined ? 'preferred' : input.quiesce === false ? 'off' : input.quiesce;
    const sent: SentPosition | undefined = input.jobRevision === undefined ? undefined : {
      state: jobStateAsSent({ jobId: input.jobId, snapshotId }), revision: BigInt(input.jobRevision), causationId: input.causationId ?? null,
      ...(input.jobPosition !== undefined ? { position: BigInt(input.jobPosition) } : {}),
    };
    const existing = this.records.get(snapshotId);
    if (existing) {
      // A retry of a request that already got a view: record it (the decider says whether it is already).
      await this.#recordTaken(existing, sent);
      return;
    }
    const found = await this.#vmOf(input.vmId);
    if (!found) {
      await this.#record(input.jobId, { kind: 'recordSnapshotFailure', snapshotId, reason: `VM ${input.vmId} is on none of this coordinator's hypervisors` }, sent);
      throw new SnapshotCommandError('not_found', `VM ${input.vmId} is on none of this coordinator's hypervisors`);
    }
    const instance = found.instance;
    const adapter = this.adapters.get(instance)!;
    const leaseMs = input.leaseMs ?? this.settings.leaseMs;
    let record: ViewRecord;
    try {
      record = await this.#locked(instance, async () => {
        // A repeat that came while the first was opening the view: that view.
        const opening = this.records.get(snapshotId);
        if (opening) return opening;
        // Its name as the inventory saw it: no second inventory (for QEMU four QMP queries, ~3 ms
        // before openView asks them again) on every snapshot's path.
        const vmName = found.name;
        const opened = await adapter.openView({
          vm: vmName, mode: job.mode, jobId: input.jobId, chain: chainFor(job.policyId), leaseMs,
          ...(input.disks ? { disks: input.disks } : {}), ...(quiesce !== 'off' ? { quiesce: true } : {}),
        });
        const view = noParent ? { ...opened, disks: opened.disks.map((d) => (d.mode === 'full' && d.reason === 'full backup requested' ? { ...d, reason: noParent } : d)) } : opened;
        if (quiesce === 'required' && !view.quiesced?.frozen) {
          await adapter.releaseView(view.viewId, { success: false });
          throw new Error(`quiesce is required but the guest was not frozen: ${view.quiesced?.reason ?? 'the hypervisor cannot quiesce'}`);
        }
        const trace = activeTraceContext();
        const r: ViewRecord = { snapshotId, jobId: input.jobId, instance, view, expiresAt: view.expiresAt, ...(trace ? { trace } : {}) };
        await this.records.put(r);
        return r;
      });
    } catch (e) {
      const reason = `could not open a view of ${input.vmId}: ${(e as Error).message}`;
      this.logger.warn({ jobId: input.jobId, snapshotId, err: (e as Error).message }, 'snapshot failed');
      await this.#record(input.jobId, { kind: 'recordSnapshotFailure', snapshotId, reason: reason.slice(0, 4096) }, sent);
      throw new SnapshotCommandError('snapshot_failed', reason);
    }
    try {
      await this.#recordTaken(record, sent);
    } catch (e) {
      if (!(e instanceof SnapshotCommandError)) throw e;
      // The job did not ask for this view (or is gone): give it back rather than hold the disk.
      await this.#locked(instance, async () => {
        if (this.records.get(snapshotId) !== record) return; // a concurrent repeat gave it back
        await adapter.releaseView(record.view.viewId, { success: false });
        await this.records.delete(snapshotId);
      });
      throw e;
    }
    this.logger.info({
      jobId: input.jobId, snapshotId, viewId: record.view.viewId,
      disks: record.view.disks.map((d) => ({ disk: d.disk, mode: d.mode, reason: d.reason, changedBytes: d.changedBytes })),
    }, 'snapshot taken');
  }

  /** Releases a view; a repeat is answered as the first release was (SnapshotAnswers). */
  async releaseSnapshot(input: ReleaseSnapshotInput): Promise<void> {
    const record = this.records.get(input.snapshotId);
    const answered = record ? undefined : this.#answers.release(input.snapshotId, input.jobId, input.outcome === 'success');
    if (answered) throw answered;
    if (answered === null) return;
    if (!record) throw new SnapshotCommandError('not_found', `no open snapshot ${input.snapshotId} (never taken, or already released)`);
    if (record.jobId !== input.jobId) throw new SnapshotCommandError('conflict', `snapshot ${input.snapshotId} belongs to job ${record.jobId}`);
    const sent: SentPosition | undefined = input.jobRevision === undefined ? undefined : {
      state: jobStateAsSent({ jobId: input.jobId, snapshotId: input.snapshotId }), revision: BigInt(input.jobRevision), causationId: input.causationId ?? null,
      ...(input.jobPosition !== undefined ? { position: BigInt(input.jobPosition) } : {}),
    };
    if (!await this.#release(record, input.outcome === 'success', 'job_ended', sent)) throw alreadyReleased(input.snapshotId);
  }

  /** Releases every view whose lease ran out (as failed: its changes stay for the next backup). */
  async reapExpired(now = new Date()): Promise<number> {
    const expired = expiredRecords(this.records.all(), now);
    for (const r of expired) {
      try {
        await this.#release(r, false, 'lease_expired');
      } catch (e) {
        this.logger.error({ snapshotId: r.snapshotId, err: (e as Error).message }, 'could not release an expired view (retried on the next round)');
      }
    }
    return expired.length;
  }

  /** Removes leftovers that belong to no recorded view (e.g. after the hypervisor restarted). */
  async reapOrphans(): Promise<void> {
    for (const [name, adapter] of this.adapters) {
      await this.#locked(name, async () => {
        const keep = new Set(this.records.all().filter((r) => r.instance === name).map((r) => r.view.viewId));
        await adapter.reapOrphans(keep);
      });
    }
  }

  /**
   * Appends VmDiscovered / DiskAttached / DiskDetached / VmPowerStateChanged where the hypervisors
   * differ from the log, and VmRemoved for a VM an earlier round of this run saw and this one does
   * not (the first round of an instance also takes the log's VMs on it: removed while none ran).
   * One round at a time per hypervisor instance: the periodic round, `cairn hypervisor add` and
   * libvirt's domain events and vSphere's property updates all come here, and triggers during a round share the next one.
   */
  async syncInventory(): Promise<void> {
    for (const instance of [...this.adapters.keys()]) {
      let round = this.#inventoryRounds.get(instance);
      if (!round) {
        round = new CoalescedRound(() => this.#inventoryRound(instance));
        this.#inventoryRounds.set(instance, round);
      }
      await round.run();
    }
  }

  async #inventoryRound(instance: string): Promise<void> {
    const adapter = this.adapters.get(instance);
    if (!adapter) return;
    let vms;
    try { vms = await adapter.inventory(); } catch (e) {
      this.logger.warn({ instance, err: (e as Error).message }, 'inventory unavailable');
      for (const [vmId, host] of this.#vmHost) if (host.instance === instance) this.#vmHost.delete(vmId);
      return;
    }
    // Other coordinators' writes since the last round (and, the first time, the whole category).
    await this.#logged.refresh();
    const ids = new Set<string>();
    for (const vm of vms) {
      const seen: ObservedVm = {
        vmId: vmIdFromName(vm.name), name: vm.name, host: instance, kind: adapter.kind ?? 'qemu', ...(vm.tags ? { tags: vm.tags } : {}),
        ...(vm.state ? { state: vm.state } : {}), disks: vm.disks.map((d) => ({ name: d.id, sizeBytes: d.sizeBytes })),
      };
      if (!ids.has(seen.vmId)) this.#vmHost.set(seen.vmId, { instance, name: vm.name });
      ids.add(seen.vmId);
      await this.#syncVm(seen.vmId, (known) => decideInventory(known, seen));
    }
    // Listed by an earlier round of this instance (or, in the first round of this run, by the log
    // as on this instance), not by this one: gone from the hypervisor.
    const gone = new Set<string>();
    for (const [vmId, host] of this.#vmHost) if (host.instance === instance && !ids.has(vmId)) gone.add(vmId);
    if (!this.#seeded.has(instance)) {
      for (const vmId of this.#logged.onHost(instance)) if (!ids.has(vmId)) gone.add(vmId);
      this.#seeded.add(instance);
    }
    for (const vmId of gone) {
      this.#vmHost.delete(vmId);
      await this.#syncVm(vmId, (known) => decideRemoval(known, vmId, instance));
    }
  }

  /**
   * Brings one VM's stream in line with what is observed, at the revision decided on: first on
   * the stream as the last refresh of the log's VMs left it (no read), then, when another writer
   * got there in between (another coordinator, an older round), on the stream read again, a few
   * times at most.
   */
  async #syncVm(vmId: string, decide: (known: KnownVm) => InventoryChange[]): Promise<void> {
    const streamId = `vm-${vmId}`;
    for (let attempt = 1; ; attempt++) {
      let vm = attempt === 1 ? this.#logged.get(vmId) : undefined;
      if (!vm) {
        let known = unknownVm;
        let revision = -1n;
        for await (const r of this.log.readStream(streamId)) { known = evolveVm(known, r.event); revision = r.revision; }
        vm = { known, revision };
        this.#logged.set(vmId, vm);
      }
      const { known, revision } = vm;
      const changes = decide(known);
      if (changes.length === 0) return;
      const events = changes.map((c) => newEvent(c.type, c.data as never, { site: this.settings.site, actor: this.settings.actor, streamId }));
      try {
        const result = await this.log.append(streamId, events, { expectedRevision: revision < 0n ? 'no_stream' : revision });
        this.#logged.appended(vmId, vm, events, result.nextRevision);
      } catch (e) {
        if (!(e instanceof WrongExpectedRevisionError) || attempt >= INVENTORY_ATTEMPTS) throw e;
        this.logger.info({ vmId, attempt, err: e.message }, 'inventory: the VM\'s stream moved on; deciding again');
        continue;
      }
      this.logger.info({ vmId, changes: changes.map((c) => c.type) }, 'inventory changed');
      return;
    }
  }

  openSnapshots(): ViewRecord[] { return this.records.all(); }

  /**
   * Releases a recorded view once: a release command and the lease reaper may race, and only
   * the first one decides success or failure. Resolves false when someone else released it.
   */
  async #release(record: ViewRecord, success: boolean, cause: 'job_ended' | 'lease_expired', sent?: SentPosition): Promise<boolean> {
    const adapter = this.adapters.get(record.instance);
    if (!adapter) throw new Error(`snapshot ${record.snapshotId}: hypervisor instance ${record.instance} is no longer configured`);
    return this.#locked(record.instance, async () => {
      if (this.records.get(record.snapshotId) !== record) return false;
      await adapter.releaseView(record.view.viewId, { success });
      const release = () => this.#record(record.jobId, { kind: 'recordRelease', snapshotId: record.snapshotId, cause }, sent);
      // Outside a command (a lease that ran out, a restart's clean-up): a span of the job's own trace.
      if (activeTraceContext() || !record.trace) await release();
      else await inSpan('@cairn/snapshot-coordinator', 'snapshot-coordinator SnapshotReleased', { jobId: record.jobId, parent: record.trace }, release);
      await this.records.delete(record.snapshotId);
      this.#answers.rememberRelease(record.snapshotId, record.jobId, cause === 'job_ended' ? null : alreadyReleased(record.snapshotId), success);
      this.logger.info({ jobId: record.jobId, snapshotId: record.snapshotId, viewId: record.view.viewId, success, cause }, 'snapshot released');
      return true;
    });
  }

  async #recordTaken(r: ViewRecord, sent: SentPosition | undefined): Promise<void> {
    const v: View = r.view;
    const exports = v.disks.map((d) => ({
      disk: d.disk, exportName: d.exportName, sizeBytes: d.sizeBytes, mode: d.mode, reason: d.reason,
      ...(d.bitmapContext ? { dirtyBitmapContext: d.bitmapContext } : {}),
      ...(d.changedBytes !== undefined ? { changedBytes: d.changedBytes } : {}),
    }));
    const nbd = 'socketPath' in v.nbd ? { socket: v.nbd.socketPath, exports } : { host: v.nbd.host, port: v.nbd.port, exports, ...(v.nbd.tls ? { tls: { ...v.nbd.tls } } : {}) };
    const why = (v.quiesced?.reason || (v.quiesced ? 'the hypervisor gave no reason' : 'quiesce is off for this job')).slice(0, 1024);
    const consistency = { level: v.quiesced?.frozen ? 'application' as const : 'crash' as const, reason: why };
    const vmConfig = v.vmConfig && JSON.stringify(v.vmConfig).length <= MAX_VM_CONFIG ? v.vmConfig as { kind: string } : undefined;
    if (v.vmConfig && !vmConfig) this.logger.warn({ jobId: r.jobId, snapshotId: r.snapshotId }, 'VM configuration larger than 256 KiB: not kept in the restore point');
    await this.#record(r.jobId, {
      kind: 'recordSnapshot',
      data: { jobId: r.jobId, snapshotId: r.snapshotId, nbd, leaseExpiresAt: r.expiresAt, consistency, ...(vmConfig ? { vmConfig } : {}) },
    }, sent);
  }

  /**
   * Records one of the coordinator's facts in the job's stream through the job decider: on the
   * job as the command's sender left it when it said so (no read), else as read from the stream.
   * Caused by the sender's latest event (else the stream's latest event).
   */
  async #record(jobId: string, command: JobCommand, sent: SentPosition | undefined): Promise<void> {
    const streamId = `job-${jobId}`;
    let known = sent;
    let latestTrace: TraceContext | undefined;
    if (!known) {
      let revision = -1n;
      const events = [];
      for await (const r of this.log.readStream(streamId)) { events.push(r.event); revision = r.revision; latestTrace = r.event.trace ?? latestTrace; }
      const state = fold(jobDecider, events);
      known = { state, revision, causationId: state.lastEventId ?? null };
    }
    try {
      await handleCommand(this.log, streamId, jobDecider, command, {
        meta: {
          site: this.settings.site, actor: this.settings.actor, correlationId: jobId, causationId: known.causationId,
          // Outside any span (a reaper round): the job's own trace, as its latest event has it.
          ...(!activeTraceContext() && latestTrace ? { trace: latestTrace } : {}),
        },
        known: { state: known.state, revision: known.revision, position: known.position },
      });
    } catch (e) {
      if (e instanceof JobRefusedError) throw new SnapshotCommandError(e.code === 'ended' ? 'conflict' : e.code, e.message);
      throw e;
    }
  }

  /** The guest agent of a VM on one of this coordinator's hypervisors (file write-back). */
  async guestAgentOf(vmId: string): Promise<GuestAgentPort> {
    const found = await this.#vmOf(vmId);
    if (!found) throw new SnapshotCommandError('not_found', `VM ${vmId} is on none of this coordinator's hypervisors`);
    const instance = found.instance;
    const adapter = this.adapters.get(instance)!;
    const agent = adapter.guestAgent?.(found.name);
    if (!agent) throw new SnapshotCommandError('forbidden', `VM ${vmId} has no guest agent Cairn can reach (its hypervisor ${instance} names no guest agent socket), so files cannot be written into it`);
    return agent;
  }

  /** The instance holding a VM and its name there: as the last inventory saw them, else asked now. */
  async #vmOf(vmId: string): Promise<{ instance: string; name: string } | undefined> {
    const cached = this.#vmHost.get(vmId);
    if (cached) return cached;
    for (const [instance, adapter] of this.adapters) {
      try {
        const vm = (await adapter.inventory()).find((v) => vmIdFromName(v.name) === vmId);
        if (vm) {
          const found = { instance, name: vm.name };
          this.#vmHost.set(vmId, found);
          return found;
        }
      } catch { /* an unreachable instance does not hold it as far as we can tell */ }
    }
    return undefined;
  }

  /** One change at a time per hypervisor instance, so the orphan scan never sees a half-opened view. */
  #locked<T>(instance: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#locks.get(instance) ?? Promise.resolve();
    const next = prev.catch(() => undefined).then(fn);
    this.#locks.set(instance, next.catch(() => undefined));
    return next;
  }
}
