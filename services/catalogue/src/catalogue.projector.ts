// Keeps one replica's read models following the log, and rebuilds them from position 0 on
// demand. A rebuild fills a fresh database beside the live one while queries go on being
// answered from the old one, then swaps them: nobody ever reads a half-built catalogue.
import { renameSync, rmSync } from 'node:fs';
import type { EventLogReader, EventSubscriber, OnInvalidRecord, Recorded } from '@cairn/eventlog';
import type { Logger } from 'pino';
import { context as otelContext, SpanKind, trace } from '@opentelemetry/api';
import { contextOf, ensureContextManager, jobIdOf, withJobId } from '@cairn/telemetry';
import { CatalogueDb } from './catalogue-db.adapter.ts';

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
  /** SQLite file of this replica, or `:memory:`. */
  readonly path: string;
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
  lastError: string | null;
}

export interface RebuildOutcome {
  events: number;
  position: bigint;
  durationMs: number;
}

export class CatalogueProjector {
  private db: CatalogueDb;
  private live: LiveProjection | undefined;
  private stopped = true;
  private rebuilding: Promise<RebuildOutcome> | undefined;
  private lastError: string | null = null;
  private retryTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  /** Set while a rebuild has stopped the live projection to finish and swap: nothing may restart it. */
  private swapping = false;

  constructor(private readonly options: ProjectorOptions) {
    this.db = CatalogueDb.open(options.path);
  }

  /** The live database (replaced by a rebuild). */
  get current(): CatalogueDb {
    return this.db;
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.startLive();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    await this.rebuilding?.catch(() => undefined);
    await this.stopLive();
    this.db.close();
  }

  status(): ProjectorStatus {
    return {
      position: this.db.isOpen ? this.db.position() : 0n,
      projecting: this.live !== undefined,
      rebuilding: this.rebuilding !== undefined,
      lastError: this.lastError,
    };
  }

  /** Resolves once the read models include the event at `position`. */
  async waitForPosition(position: bigint, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    // The live projection may be replaced by a rebuild meanwhile: poll the database itself.
    while (this.db.position() < position) {
      if (Date.now() > deadline) throw new Error(`catalogue did not reach position ${position} within ${timeoutMs} ms (at ${this.db.position()})`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Drops the read models and replays the whole log; one rebuild at a time (callers share it). */
  rebuild(): Promise<RebuildOutcome> {
    if (!this.rebuilding) {
      this.rebuilding = this.doRebuild().finally(() => { this.rebuilding = undefined; });
    }
    return this.rebuilding;
  }

  private onInvalid(target: () => CatalogueDb): OnInvalidRecord {
    return (record) => {
      this.options.logger.warn({ position: String(record.position), location: record.location, err: record.error.message },
        'unreadable event recorded in the audit timeline only');
      target().applyUnreadable(record);
    };
  }

  /**
   * The live projection: follows the log from the checkpoint. Events that are already waiting
   * (catching up after a restart) are applied in one transaction per batch; an event that
   * arrives alone is applied at once. Each batch moves the checkpoint in its own transaction.
   */
  private async startLive(): Promise<void> {
    ensureContextManager();
    if (this.stopped || this.live || this.swapping) return;
    const maxBatch = this.options.rebuildBatch ?? 500;
    // Bound to this database: after a rebuild swapped it out (and closed it), a straggling
    // event from this loop fails here instead of landing out of order in the new one.
    const db = this.db;
    let batch: Recorded[] = [];
    let batchSince = 0;
    const batchMs = this.options.liveBatchMs ?? 20;
    const flush = () => {
      if (!batch.length) return;
      const applied = batch;
      batch = [];
      const startTime = Date.now();
      db.apply(applied);
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
    const record = this.onInvalid(() => {
      flush(); // what came before the unreadable entry goes in first: the checkpoint moves past it
      return db;
    });
    const subscription = this.options.log.subscribe({ from: db.position(), onInvalid: record });
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
          if (!joined) flush();
        }
        const step = await next;
        if (step.done) break;
        if (batch.length === 0) batchSince = Date.now();
        batch.push(step.value);
        if (batch.length >= maxBatch) flush();
        next = events.next();
      }
      flush();
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

  private async replayInto(target: CatalogueDb): Promise<number> {
    const batchSize = this.options.rebuildBatch ?? 500;
    let batch: Recorded[] = [];
    let count = 0;
    const recordUnreadable = this.onInvalid(() => {
      // Whatever came before it must be in first: entries are recorded in log order.
      if (batch.length) {
        count += target.apply(batch);
        batch = [];
      }
      count++;
      return target;
    });
    for await (const recorded of this.options.log.readAll({ fromPosition: target.position(), onInvalid: recordUnreadable })) {
      batch.push(recorded);
      if (batch.length >= batchSize) {
        count += target.apply(batch);
        batch = [];
      }
    }
    if (batch.length) count += target.apply(batch);
    return count;
  }

  private async doRebuild(): Promise<RebuildOutcome> {
    const started = Date.now();
    const memory = this.options.path === ':memory:';
    const freshPath = memory ? ':memory:' : `${this.options.path}.rebuild`;
    if (!memory) removeDbFiles(freshPath);
    const fresh = CatalogueDb.open(freshPath);
    let events = 0;
    try {
      // Most of the log while the old read models keep answering, then the tail with the live
      // projection stopped, so the swap loses nothing appended meanwhile.
      events += await this.replayInto(fresh);
      this.swapping = true;
      await this.stopLive();
      events += await this.replayInto(fresh);
    } catch (e) {
      fresh.close();
      if (!memory) removeDbFiles(freshPath);
      this.swapping = false;
      await this.startLive();
      throw e;
    }
    const position = fresh.position();
    const old = this.db;
    if (memory) {
      this.db = fresh;
      old.close();
    } else {
      // Synchronous from here to the reopen: no query can run against a closed database.
      fresh.close();
      old.close();
      removeDbFiles(this.options.path);
      renameSync(freshPath, this.options.path);
      this.db = CatalogueDb.open(this.options.path);
    }
    this.lastError = null;
    this.swapping = false;
    await this.startLive();
    const outcome = { events, position, durationMs: Date.now() - started };
    this.options.logger.info({ events, position: String(position), durationMs: outcome.durationMs }, 'catalogue rebuilt from the log');
    return outcome;
  }
}

function removeDbFiles(path: string): void {
  for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(`${path}${suffix}`, { force: true });
}
