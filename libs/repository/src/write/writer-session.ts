// One restore point writer's deferred puts: the flush group the backend records failures in,
// and a promise that settles once they are durable (after the writer's flush) or never will
// be (the writer failed). Chunks this writer uploaded become known to other writers of the
// process only when it resolves (known-chunks.ts).
import type { FlushGroup } from '../backend/backend.ts';

export class WriterSession {
  readonly group: FlushGroup;
  readonly durable: Promise<void>;
  private resolve!: () => void;
  private reject!: (e: Error) => void;

  /** `syncEarly`: the writer stores few objects (FlushGroup.syncEarly). */
  constructor(options: { syncEarly?: boolean } = {}) {
    this.group = options.syncEarly ? { syncEarly: true } : {};
    this.durable = new Promise<void>((res, rej) => { this.resolve = res; this.reject = rej; });
    this.durable.catch(() => undefined); // nobody need wait for it
  }

  /** The flush succeeded: everything this writer stored is durable and named. */
  markDurable(): void {
    this.resolve();
  }

  /** The writer is done; if it never reached a successful flush, its objects do not count as stored. */
  end(): void {
    this.reject(new Error('the writer ended before its objects were durable'));
  }
}
