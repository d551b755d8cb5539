// Forwards the log to one target: its own subscription from its own checkpoint, a bounded
// queue, batches by size or age, every failure retried with capped exponential backoff, and
// the checkpoint saved only after the target accepted the batch (at-least-once; after a
// crash the unsaved tail is sent again with the same event ids).
import type { CheckpointStore, EventSubscriber, EventSubscription, Recorded } from '@cairn/eventlog';
import type { AuditTarget } from './audit-target.ts';
import { BoundedQueue, sleep } from './bounded-queue.ts';

export interface BatchOptions {
  /** Most events in one send (default 100). */
  readonly maxBatch?: number;
  /** How long a partial batch waits for more events (default 200 ms). */
  readonly maxDelayMs?: number;
  /** Events read ahead of the target at most (default 1000); reading pauses beyond. */
  readonly queueSize?: number;
  /** First retry delay (default 200 ms), doubled per failure up to `maxBackoffMs` (default 5 s). */
  readonly minBackoffMs?: number;
  readonly maxBackoffMs?: number;
}

export interface TargetHealth {
  readonly name: string;
  /** Position of the last event the target accepted (the saved checkpoint). */
  readonly checkpoint: string;
  readonly delivered: number;
  readonly queued: number;
  /** Consecutive failed attempts of the current batch (0 = healthy). */
  readonly failures: number;
  readonly lastError?: string;
}

export interface ForwarderLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export function checkpointName(target: string): string {
  return `audit-bridge-${target}`;
}

export class TargetForwarder {
  private readonly queue: BoundedQueue<Recorded>;
  private subscription: EventSubscription | undefined;
  private stopping = false;
  private checkpoint = 0n;
  private delivered = 0;
  private failures = 0;
  private lastError: string | undefined;
  private wakeBackoff: (() => void) | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly target: AuditTarget,
    private readonly log: EventSubscriber,
    private readonly store: CheckpointStore,
    private readonly options: BatchOptions,
    private readonly logger: ForwarderLogger,
  ) {
    this.queue = new BoundedQueue(options.queueSize ?? 1000);
  }

  async start(): Promise<void> {
    this.checkpoint = await this.store.load(checkpointName(this.target.name));
    this.running = Promise.all([this.read(this.checkpoint), this.send()]).then(() => undefined);
  }

  health(): TargetHealth {
    return {
      name: this.target.name,
      checkpoint: this.checkpoint.toString(),
      delivered: this.delivered,
      queued: this.queue.length,
      failures: this.failures,
      ...(this.lastError ? { lastError: this.lastError } : {}),
    };
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.queue.close();
    this.wakeBackoff?.();
    await this.subscription?.stop();
    await this.running;
  }

  /** Reads the log into the queue; a failed subscription is opened again after what was queued. */
  private async read(from: bigint): Promise<void> {
    let position = from;
    let delay = this.options.minBackoffMs ?? 200;
    try {
      while (!this.stopping) {
        const sub = this.log.subscribe({
          from: position,
          onInvalid: (record) => {
            // It stays in the log; a SIEM cannot be sent what cannot be read.
            this.logger.error({ target: this.target.name, position: String(record.position), error: record.error.message }, 'unreadable record not forwarded');
          },
        });
        this.subscription = sub;
        try {
          for await (const r of sub) {
            if (!(await this.queue.push(r))) return;
            position = r.position;
            delay = this.options.minBackoffMs ?? 200;
          }
          return; // stopped
        } catch (e) {
          if (this.stopping) return;
          this.logger.error({ target: this.target.name, error: String(e), retryInMs: delay }, 'log subscription failed, subscribing again');
          await sub.stop().catch(() => undefined);
          await sleep(delay);
          delay = Math.min(this.options.maxBackoffMs ?? 5000, delay * 2);
        }
      }
    } finally {
      this.queue.close();
    }
  }

  private async send(): Promise<void> {
    const maxBatch = this.options.maxBatch ?? 100;
    const maxDelay = this.options.maxDelayMs ?? 200;
    while (!this.stopping) {
      const batch = await this.queue.take(maxBatch, maxDelay);
      if (batch.length === 0) return;
      const last = batch[batch.length - 1]!.position;
      if (!(await this.attempt(() => this.target.send(batch), 'send'))) return;
      this.delivered += batch.length;
      if (!(await this.attempt(() => this.store.save(checkpointName(this.target.name), last), 'checkpoint'))) return;
      this.checkpoint = last;
    }
  }

  /** Runs `fn` until it succeeds (true) or the forwarder stops (false). */
  private async attempt(fn: () => Promise<void>, what: string): Promise<boolean> {
    const min = this.options.minBackoffMs ?? 200;
    const max = this.options.maxBackoffMs ?? 5000;
    let delay = min;
    while (!this.stopping) {
      try {
        await fn();
        this.failures = 0;
        this.lastError = undefined;
        return true;
      } catch (e) {
        this.failures++;
        this.lastError = e instanceof Error ? e.message : String(e);
        this.logger.warn({ target: this.target.name, failures: this.failures, error: this.lastError, retryInMs: delay }, `${what} failed, retrying`);
        await new Promise<void>((resolve) => {
          this.wakeBackoff = resolve;
          void sleep(delay).then(resolve);
        });
        delay = Math.min(max, delay * 2);
      }
    }
    return false;
  }
}
