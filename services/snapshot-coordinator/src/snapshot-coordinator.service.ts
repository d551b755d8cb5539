// The snapshot coordinator's rules: open a point-in-time view for a job and record it as
// SnapshotTaken (or SnapshotFailed), release it when the job ends or its lease runs out, keep
// the inventory in the log, and after a crash keep what is still leased and remove the rest.
// Every view is remembered in a record file before its event is written, so a restarted
// coordinator never loses track of a view it announced.
import { createHash, randomUUID } from 'node:crypto';
import { newEvent, type Actor, type EventDataMap, type EventType, type KnownEvent, type TraceContext } from '@cairn/contracts';
import { activeTraceContext, type EventAppender, type EventStreamReader } from '@cairn/eventlog';
import { inSpan } from '@cairn/messaging';
import type { HypervisorAdapter, View } from '@cairn/hypervisor';
import { decideInventory, evolveVm, unknownVm, vmIdFromName, type ObservedVm } from './inventory.decider.ts';
import { expiredRecords, type ViewRecord, type ViewRecordFile } from './view-records.ts';

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
export class SnapshotCommandError extends Error {
  override readonly name = 'SnapshotCommandError';
  constructor(readonly code: string, message: string) { super(message); }
}

export interface RequestSnapshotInput {
  readonly jobId: string;
  readonly vmId: string;
  readonly disks?: readonly string[];
  readonly quiesce?: boolean;
  readonly leaseMs?: number;
}

export interface ReleaseSnapshotInput {
  readonly jobId: string;
  readonly snapshotId: string;
  readonly outcome?: 'success' | 'failure';
}

const ID = /^[A-Za-z0-9_-]{1,200}$/;

/** A UUID derived from a name: re-emitting the same fact gets the same event id (dropped as duplicate). */
function stableEventId(name: string): string {
  const h = createHash('sha256').update(name).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${((parseInt(h.slice(16, 18), 16) & 0x3f) | 0x80).toString(16)}${h.slice(18, 20)}-${h.slice(20, 32)}`;
}

/** Chain (bitmap) name for a policy: one changed-block history per policy and disk. */
export function chainFor(policyId: string | null | undefined): string {
  if (!policyId) return 'manual';
  return /^[A-Za-z0-9_-]{1,64}$/.test(policyId) ? policyId : createHash('sha256').update(policyId).digest('hex').slice(0, 32);
}

export class SnapshotCoordinator {
  readonly #locks = new Map<string, Promise<unknown>>();
  #vmHost = new Map<string, string>(); // vmId -> instance

  constructor(
    private readonly settings: CoordinatorSettings,
    private readonly adapters: ReadonlyMap<string, HypervisorAdapter>,
    private readonly log: EventAppender & EventStreamReader,
    private readonly records: ViewRecordFile,
    private readonly logger: CoordinatorLogger,
  ) {}

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

  async requestSnapshot(input: RequestSnapshotInput, idempotencyKey: string): Promise<{ snapshotId: string }> {
    const job = await this.#jobFacts(input.jobId);
    const snapshotId = job.snapshotId ?? (ID.test(idempotencyKey) ? idempotencyKey : randomUUID());
    const existing = this.records.get(snapshotId);
    if (existing) {
      // A retry of a request that already got a view: announce it again (same event id).
      await this.#emitTaken(existing);
      return { snapshotId };
    }
    const instance = await this.#instanceOf(input.vmId);
    if (!instance) {
      await this.#emitFailed(input.jobId, snapshotId, `VM ${input.vmId} is on none of this coordinator's hypervisors`);
      throw new SnapshotCommandError('not_found', `VM ${input.vmId} is on none of this coordinator's hypervisors`);
    }
    const adapter = this.adapters.get(instance)!;
    const leaseMs = input.leaseMs ?? this.settings.leaseMs;
    let record: ViewRecord;
    try {
      record = await this.#locked(instance, async () => {
        const vmName = (await adapter.inventory()).find((v) => vmIdFromName(v.name) === input.vmId)?.name ?? input.vmId;
        const view = await adapter.openView({
          vm: vmName, mode: job.mode, jobId: input.jobId, chain: chainFor(job.policyId), leaseMs,
          ...(input.disks ? { disks: input.disks } : {}), ...(input.quiesce ? { quiesce: true } : {}),
        });
        const r: ViewRecord = { snapshotId, jobId: input.jobId, instance, view, expiresAt: view.expiresAt };
        await this.records.put(r);
        return r;
      });
    } catch (e) {
      const reason = `could not open a view of ${input.vmId}: ${(e as Error).message}`;
      this.logger.warn({ jobId: input.jobId, snapshotId, err: (e as Error).message }, 'snapshot failed');
      await this.#emitFailed(input.jobId, snapshotId, reason);
      throw new SnapshotCommandError('snapshot_failed', reason);
    }
    await this.#emitTaken(record);
    this.logger.info({
      jobId: input.jobId, snapshotId, viewId: record.view.viewId,
      disks: record.view.disks.map((d) => ({ disk: d.disk, mode: d.mode, reason: d.reason, changedBytes: d.changedBytes })),
    }, 'snapshot taken');
    return { snapshotId };
  }

  async releaseSnapshot(input: ReleaseSnapshotInput): Promise<void> {
    const record = this.records.get(input.snapshotId);
    if (!record) throw new SnapshotCommandError('not_found', `no open snapshot ${input.snapshotId} (never taken, or already released)`);
    if (record.jobId !== input.jobId) throw new SnapshotCommandError('conflict', `snapshot ${input.snapshotId} belongs to job ${record.jobId}`);
    if (!await this.#release(record, input.outcome === 'success', 'job_ended')) {
      throw new SnapshotCommandError('not_found', `snapshot ${input.snapshotId} was already released (its lease ran out): its changes stay for the next backup`);
    }
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

  /** Appends VmDiscovered / DiskAttached / DiskDetached where the hypervisors differ from the log. */
  async syncInventory(): Promise<void> {
    const hosts = new Map<string, string>();
    for (const [instance, adapter] of this.adapters) {
      let vms;
      try { vms = await adapter.inventory(); } catch (e) {
        this.logger.warn({ instance, err: (e as Error).message }, 'inventory unavailable');
        continue;
      }
      for (const vm of vms) {
        const vmId = vmIdFromName(vm.name);
        hosts.set(vmId, instance);
        const streamId = `vm-${vmId}`;
        let known = unknownVm;
        for await (const r of this.log.readStream(streamId)) known = evolveVm(known, r.event);
        const seen: ObservedVm = { vmId, name: vm.name, host: instance, disks: vm.disks.map((d) => ({ name: d.id, sizeBytes: d.sizeBytes })) };
        const changes = decideInventory(known, seen);
        if (changes.length === 0) continue;
        const events = changes.map((c) => newEvent(c.type, c.data as never, { site: this.settings.site, actor: this.settings.actor, streamId }));
        await this.log.append(streamId, events, { expectedRevision: 'any' });
        this.logger.info({ vmId, changes: changes.map((c) => c.type) }, 'inventory changed');
      }
    }
    this.#vmHost = hosts;
  }

  openSnapshots(): ViewRecord[] { return this.records.all(); }

  /**
   * Releases a recorded view once: a release command and the lease reaper may race, and only
   * the first one decides success or failure. Resolves false when someone else released it.
   */
  async #release(record: ViewRecord, success: boolean, cause: 'job_ended' | 'lease_expired'): Promise<boolean> {
    const adapter = this.adapters.get(record.instance);
    if (!adapter) throw new Error(`snapshot ${record.snapshotId}: hypervisor instance ${record.instance} is no longer configured`);
    return this.#locked(record.instance, async () => {
      if (this.records.get(record.snapshotId) !== record) return false;
      await adapter.releaseView(record.view.viewId, { success });
      await this.#emit(record.jobId, 'SnapshotReleased', { jobId: record.jobId, snapshotId: record.snapshotId, cause }, `SnapshotReleased:${record.snapshotId}`);
      await this.records.delete(record.snapshotId);
      this.logger.info({ jobId: record.jobId, snapshotId: record.snapshotId, viewId: record.view.viewId, success, cause }, 'snapshot released');
      return true;
    });
  }

  async #emitTaken(r: ViewRecord): Promise<void> {
    const v: View = r.view;
    const exports = v.disks.map((d) => ({
      disk: d.disk, exportName: d.exportName, sizeBytes: d.sizeBytes, mode: d.mode, reason: d.reason,
      ...(d.bitmapContext ? { dirtyBitmapContext: d.bitmapContext } : {}),
      ...(d.changedBytes !== undefined ? { changedBytes: d.changedBytes } : {}),
    }));
    const nbd = 'socketPath' in v.nbd ? { socket: v.nbd.socketPath, exports } : { host: v.nbd.host, port: v.nbd.port, exports };
    await this.#emit(r.jobId, 'SnapshotTaken', { jobId: r.jobId, snapshotId: r.snapshotId, nbd, leaseExpiresAt: r.expiresAt }, `SnapshotTaken:${r.snapshotId}`);
  }

  async #emitFailed(jobId: string, snapshotId: string, reason: string): Promise<void> {
    await this.#emit(jobId, 'SnapshotFailed', { jobId, snapshotId, reason: reason.slice(0, 4096) }, `SnapshotFailed:${snapshotId}`);
  }

  async #emit<K extends EventType>(jobId: string, type: K, data: EventDataMap[K], idName: string): Promise<void> {
    const streamId = `job-${jobId}`;
    const id = stableEventId(idName);
    // Caused by the latest step of the job (the request, or the commit or failure that ended it).
    let causationId: string | null = null;
    let latestTrace: TraceContext | undefined;
    for await (const r of this.log.readStream(streamId)) {
      if (r.event.id === id) continue;
      causationId = r.event.id;
      latestTrace = r.event.trace ?? latestTrace;
    }
    const append = () => {
      // The span handling the command (a child of the job's trace) is the event's trace.
      const trace = activeTraceContext();
      return this.log.append(streamId, [newEvent(type, data, {
        site: this.settings.site, actor: this.settings.actor, streamId, correlationId: jobId, causationId, id, ...(trace ? { trace } : {}),
      })], { expectedRevision: 'any' });
    };
    // Outside a command (a lease that ran out, a restart's clean-up): a span of the job's own trace.
    if (activeTraceContext() || !latestTrace) await append();
    else await inSpan('@cairn/snapshot-coordinator', `snapshot-coordinator ${type}`, { jobId, parent: latestTrace }, append);
  }

  /** What the job's stream says: the snapshot id the scheduler chose, the mode and the policy. */
  async #jobFacts(jobId: string): Promise<{ snapshotId?: string; mode: 'auto' | 'full'; policyId: string | null }> {
    let mode: 'auto' | 'full' = 'auto';
    let policyId: string | null = null;
    let snapshotId: string | undefined;
    try {
      for await (const r of this.log.readStream(`job-${jobId}`)) {
        const e: KnownEvent = r.event;
        if (e.type === 'JobRequested') { mode = e.data.mode; policyId = e.data.policyId; }
        if (e.type === 'SnapshotRequested') snapshotId = e.data.snapshotId;
      }
    } catch (e) {
      this.logger.warn({ jobId, err: (e as Error).message }, 'job stream unreadable: defaults used');
    }
    return { mode, policyId, ...(snapshotId ? { snapshotId } : {}) };
  }

  async #instanceOf(vmId: string): Promise<string | undefined> {
    const cached = this.#vmHost.get(vmId);
    if (cached) return cached;
    for (const [instance, adapter] of this.adapters) {
      try {
        if ((await adapter.inventory()).some((v) => vmIdFromName(v.name) === vmId)) {
          this.#vmHost.set(vmId, instance);
          return instance;
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
