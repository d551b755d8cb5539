// Keeps one replica's read models following the log, and rebuilds them from position 0 on
// demand. A rebuild fills a fresh database beside the live one while queries go on being
// answered from the old one, then swaps them: nobody ever reads a half-built catalogue.
import type { EventLogReader, EventSubscriber, OnInvalidRecord, Recorded } from '@cairn/eventlog';
import type { Logger } from 'pino';
import { context as otelContext, SpanKind, trace } from '@opentelemetry/api';
import { contextOf, ensureContextManager, jobIdOf, withJobId } from '@cairn/telemetry';
import { SqliteCatalogueBackend } from './catalogue-db.adapter.ts';
import type { CatalogueBackend, CatalogueStore } from './catalogue-store.port.ts';

/** What the projector needs from the event log. */
export interface ProjectorLog extends EventSubscriber, EventLogReader {
  headPosition(): Promise<bigint>;
}

const tracer = trace.getTracer('@cairn/catalogue');

/** How long stopping the live projection may take before the projector goes on without it. */
const STOP_TIMEOUT_MS = 3_000;

interface LiveProjection {
  stop(): Promise<void>;
  /** Settles when the loop ends: resolves after stop, rejects when projecting failed. */
  readonly done: Promise<void>;
}

export interface ProjectorOptions {
  readonly log: ProjectorLog;
  /** Where the read models live (default: the SQLite file at `path`). */
  readonly backend?: CatalogueBackend;
  /** SQLite file of this replica, or `:memory:` (when no `backend` is given). */
  readonly path?: string;
  readonly logger: Logger;
  /** Most events per transaction, live or rebuilding (default 500). */
  readonly rebuildBatch?: number;
  /**
   * Live: how long a batch may wait for more events before it is applied (default 20 ms). Each
   * transaction rewrites the index pages it touches, so under a steady stream of events a few
   * dozen per transaction cost much less than one each; an event alone waits at most this long.
   */
  readonly liveBatchMs?: number;
  /** Delay before a failed live projection starts again (default 1 s, doubling to 30 s). */
  readonly retryDelayMs?: number;
}

export interface ProjectorStatus {
  position: bigint;
  projecting: boolean;
  rebuilding: boolean;
  /** Another replica holds the projector lease (shared PostgreSQL): this one only answers. */
  standby: boolean;
  lastError: string | null;
}

export interface RebuildOutcome {
  events: number;
  position: bigint;
  durationMs: number;
}

export class CatalogueProjector {
  private store: CatalogueStore | undefined;
  private readonly backend: CatalogueBackend;
  private lease: { lost: Promise<void>; release(): Promise<void> } | undefined;
  private leaseLoop: Promise<void> | undefined;
  private abort = new AbortController();
  private live: LiveProjection | undefined;
  private stopped = true;
  private rebuilding: Promise<RebuildOutcome> | undefined;
  private lastError: string | null = null;
  private retryTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  /** Set while a rebuild has stopped the live projection to finish and swap: nothing may restart it. */
  private swapping = false;

  constructor(private readonly options: ProjectorOptions) {
    this.backend = options.backend ?? new SqliteCatalogueBackend(options.path ?? ':memory:');
  }

  get dialect(): CatalogueStore['dialect'] {
    return this.backend.dialect;
  }

  /** The live store (replaced by a rebuild); open from `start()` on. */
  get current(): CatalogueStore {
    if (!this.store) throw new Error('catalogue projector not started');
    return this.store;
  }

  /**
   * Opens the store and projects; where replicas share the store (PostgreSQL), this replica
   * projects while it holds the lease and answers queries either way.
   */
  async start(): Promise<void> {
    this.stopped = false;
    this.abort = new AbortController();
    this.store ??= await this.backend.openLive();
    if (this.backend.acquireLease) this.leaseLoop = this.followLease();
    else await this.startLive();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    clearTimeout(this.retryTimer);
    await this.rebuilding?.catch(() => undefined);
    await this.stopLive();
    await this.leaseLoop?.catch(() => undefined);
    await this.lease?.release();
    this.lease = undefined;
    await this.store?.close();
    await this.backend.close?.();
  }

  private async followLease(): Promise<void> {
    const stopped = new Promise<void>((resolve) => this.abort.signal.addEventListener('abort', () => resolve(), { once: true }));
    while (!this.stopped) {
      let lease: { lost: Promise<void>; release(): Promise<void> };
      try {
        lease = await this.backend.acquireLease!(this.abort.signal);
      } catch {
        return; // stopped while waiting
      }
      if (this.stopped) { await lease.release(); return; }
      this.lease = lease;
      this.options.logger.info({ store: this.store?.describe }, 'catalogue projector lease held: projecting');
      await this.startLive();
      await Promise.race([lease.lost, stopped]);
      if (this.stopped) return;
      this.lease = undefined;
      this.options.logger.warn('catalogue projector lease lost: standing by');
      await this.stopLive();
      await lease.release();
    }
  }

  private get standby(): boolean {
    return this.backend.acquireLease !== undefined && this.lease === undefined;
  }

  async status(): Promise<ProjectorStatus> {
    return {
      position: this.store?.isOpen ? await this.store.position() : 0n,
      projecting: this.live !== undefined,
      rebuilding: this.rebuilding !== undefined,
      standby: this.standby,
      lastError: this.lastError,
    };
  }

  /** Resolves once the read models include the event at `position`. */
  async waitForPosition(position: bigint, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    // The live projection may be replaced by a rebuild meanwhile: poll the store itself.
    for (;;) {
      const at = await this.current.position();
      if (at >= position) return;
      if (Date.now() > deadline) throw new Error(`catalogue did not reach position ${position} within ${timeoutMs} ms (at ${at})`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Drops the read models and replays the whole log; one rebuild at a time (callers share it). */
  rebuild(): Promise<RebuildOutcome> {
    if (this.standby) {
      return Promise.reject(new Error('this catalogue replica is on standby: the replica holding the projector lease rebuilds (ask again)'));
    }
    if (!this.rebuilding) {
      this.rebuilding = this.doRebuild().finally(() => { this.rebuilding = undefined; });
    }
    return this.rebuilding;
  }

  private onInvalid(target: () => Promise<CatalogueStore>): OnInvalidRecord {
    return async (record) => {
      this.options.logger.warn({ position: String(record.position), location: record.location, err: record.error.message },
        'unreadable event recorded in the audit timeline only');
      await (await target()).applyUnreadable(record);
    };
  }

  /**
   * The live projection: follows the log from the checkpoint. Events that are already waiting
   * (catching up after a restart) are applied in one transaction per batch; an event that
   * arrives alone is applied at once. Each batch moves the checkpoint in its own transaction.
   */
  private async startLive(): Promise<void> {
    ensureContextManager();
    if (this.stopped || this.live || this.swapping || this.standby || !this.store) return;
    const maxBatch = this.options.rebuildBatch ?? 500;
    // Bound to this database: after a rebuild swapped it out (and closed it), a straggling
    // event from this loop fails here instead of landing out of order in the new one.
    const db = this.store;
    let batch: Recorded[] = [];
    let batchSince = 0;
    const batchMs = this.options.liveBatchMs ?? 20;
    const flush = async () => {
      if (!batch.length) return;
      const applied = batch;
      batch = [];
      const startTime = Date.now();
      await db.apply(applied);
      this.failures = 0;
      for (const { event: e, position } of applied) {
        // Each event of a job becomes a span of the job's trace (its projection into the read models).
        const jobId = jobIdOf(e);
        const span = jobId && e.trace ? tracer.startSpan(`catalogue project ${e.type}`, {
          kind: SpanKind.CONSUMER, startTime,
          attributes: { 'cairn.job.id': jobId, 'cairn.event.id': e.id, 'cairn.event.type': e.type, 'cairn.log.position': String(position) },
        }, contextOf(e.trace)) : undefined;
        if (e.type === 'JobRequested' || e.type === 'JobCompleted' || e.type === 'JobFailed' || e.type === 'JobCancelled') {
          const ctx = withJobId(span ? trace.setSpan(contextOf(e.trace), span) : otelContext.active(), jobId);
          otelContext.with(ctx, () => this.options.logger.info({ eventId: e.id, type: e.type, position: String(position) }, `projected ${e.type}`));
        }
        span?.end();
      }
    };
    const record = this.onInvalid(async () => {
      await flush(); // what came before the unreadable entry goes in first: the checkpoint moves past it
      return db;
    });
    const subscription = this.options.log.subscribe({ from: await db.position(), onInvalid: record });
    const done = (async () => {
      const events = subscription[Symbol.asyncIterator]();
      let next = events.next();
      for (;;) {
        // Is the next event already there? Then keep batching; otherwise apply what we have.
        const ready = await Promise.race([next.then(() => true, () => true), new Promise<false>((r) => setImmediate(() => r(false)))]);
        if (!ready) {
          // Nothing waiting: the next event may still join the batch while it is young.
          const left = batch.length ? batchMs - (Date.now() - batchSince) : 0;
          let timer: NodeJS.Timeout | undefined;
          const joined = left > 0 && await Promise.race([next.then(() => true, () => true), new Promise<false>((r) => { timer = setTimeout(() => r(false), left); })]);
          clearTimeout(timer);
          if (!joined) await flush();
        }
        const step = await next;
        if (step.done) break;
        if (batch.length === 0) batchSince = Date.now();
        batch.push(step.value);
        if (batch.length >= maxBatch) await flush();
        next = events.next();
      }
      await flush();
    })();
    const running: LiveProjection = { stop: () => subscription.stop(), done };
    this.live = running;
    done.then(
      () => { if (this.live === running) this.live = undefined; },
      (e: unknown) => {
        void subscription.stop().catch(() => undefined);
        if (this.live !== running) return;
        this.live = undefined;
        this.lastError = (e as Error).message;
        this.failures++;
        const delay = Math.min(30_000, (this.options.retryDelayMs ?? 1000) * 2 ** Math.min(this.failures - 1, 5));
        this.options.logger.error({ err: this.lastError, retryInMs: delay }, 'catalogue projection stopped; restarting');
        this.retryTimer = setTimeout(() => {
          void this.startLive().catch((err: unknown) => { this.lastError = (err as Error).message; });
        }, delay);
        this.retryTimer.unref();
      },
    );
  }

  private async stopLive(): Promise<void> {
    const running = this.live;
    this.live = undefined;
    if (!running) return;
    await running.stop();
    // Bounded: a subscription stopped before its consumer delivered anything may never settle
    // (seen with the JetStream adapter); the projector goes on without it, and an event it
    // might still hand over later is refused by the closed or newer database's checkpoint.
    let timer: NodeJS.Timeout | undefined;
    const gaveUp = await Promise.race([
      running.done.then(() => false, () => false),
      new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(true), STOP_TIMEOUT_MS); }),
    ]);
    clearTimeout(timer);
    if (gaveUp) this.options.logger.warn({ timeoutMs: STOP_TIMEOUT_MS }, 'log subscription did not stop in time; going on');
  }

  private async replayInto(target: CatalogueStore): Promise<number> {
    const batchSize = this.options.rebuildBatch ?? 500;
    let batch: Recorded[] = [];
    let count = 0;
    const recordUnreadable = this.onInvalid(async () => {
      // Whatever came before it must be in first: entries are recorded in log order.
      if (batch.length) {
        count += await target.apply(batch);
        batch = [];
      }
      count++;
      return target;
    });
    for await (const recorded of this.options.log.readAll({ fromPosition: await target.position(), onInvalid: recordUnreadable })) {
      batch.push(recorded);
      if (batch.length >= batchSize) {
        count += await target.apply(batch);
        batch = [];
      }
    }
    if (batch.length) count += await target.apply(batch);
    return count;
  }

  private async doRebuild(): Promise<RebuildOutcome> {
    const started = Date.now();
    const fresh = await this.backend.openFresh();
    let events = 0;
    try {
      // Most of the log while the old read models keep answering, then the tail with the live
      // projection stopped, so the swap loses nothing appended meanwhile.
      events += await this.replayInto(fresh);
      this.swapping = true;
      await this.stopLive();
      events += await this.replayInto(fresh);
    } catch (e) {
      await this.backend.discard(fresh).catch(() => undefined);
      this.swapping = false;
      await this.startLive();
      throw e;
    }
    const position = await fresh.position();
    this.store = await this.backend.swap(this.current, fresh);
    this.lastError = null;
    this.swapping = false;
    await this.startLive();
    const outcome = { events, position, durationMs: Date.now() - started };
    this.options.logger.info({ events, position: String(position), durationMs: outcome.durationMs }, 'catalogue rebuilt from the log');
    return outcome;
  }
}
