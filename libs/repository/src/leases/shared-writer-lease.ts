// One writer lease for all the restore points a process writes at once. Each write used to
// take its own `pending/<id>` (a synced put, a look for the sweep, a delete: about 15 file
// operations and two fsyncs per restore point); a data mover running eight transfers now
// shares one lease while any of them runs, and deletes it when the last one ends.
//
// The GC protocol holds for every write (leases.ts): the lease exists before the write looks
// for a live sweep. The first write of a lease looks as `acquireWriterLease` does; a later one
// joins the lease (which exists already) and then looks itself. A write that finds a sweep
// does not join: it waits for the lease to go (the writes in it end) and takes a new one, which
// waits for the sweep, so a sweep is never kept waiting by writes that start after it.
import type { Backend } from '../backend/backend.ts';
import { RepositoryBusyError } from '../errors.ts';
import { GC_SWEEP_KEY } from '../format/layout.ts';
import { acquireWriterLease, isLive, type Lease, type LeaseTiming } from './leases.ts';

/** One write's share of the lease. */
export interface WriterLeaseHold {
  /** Throws when the shared lease was lost (leases.ts `Lease.assertHeld`). */
  assertHeld(): Promise<void>;
  /** Ends this write's share; the lease is deleted when no write holds it. Once per hold. */
  release(): Promise<void>;
}

interface Shared {
  readonly ready: Promise<Lease>;
  holders: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class SharedWriterLease {
  private current?: Shared;

  constructor(private readonly backend: Backend, private readonly timing: LeaseTiming) {}

  async acquire(): Promise<WriterLeaseHold> {
    const deadline = Date.now() + this.timing.waitMs;
    for (;;) {
      const shared = this.current;
      if (!shared) {
        // A new lease: acquireWriterLease writes it and waits out a live sweep.
        const fresh: Shared = { ready: acquireWriterLease(this.backend, this.timing), holders: 1 };
        this.current = fresh;
        try {
          await fresh.ready;
        } catch (e) {
          this.drop(fresh);
          throw e;
        }
        return this.hold(fresh);
      }
      shared.holders++;
      let lease: Lease;
      try {
        lease = await shared.ready;
      } catch (e) {
        this.drop(shared);
        throw e;
      }
      // Joined a lease that exists: now look for a sweep, as a writer with its own lease does.
      if (!lease.lost && !(await isLive(this.backend, GC_SWEEP_KEY, Date.now()))) return this.hold(shared);
      // A sweep waits for this lease (or the lease failed): leave it, and once the writes in it
      // have ended (it is deleted), take a new one.
      await this.leave(shared);
      if (this.current === shared && lease.lost) this.current = undefined;
      if (Date.now() > deadline) throw new RepositoryBusyError(`a garbage collection sweep has held ${this.backend.location} for longer than ${this.timing.waitMs} ms`);
      await sleep(this.timing.pollMs);
    }
  }

  private hold(shared: Shared): WriterLeaseHold {
    let released = false;
    return {
      assertHeld: async () => (await shared.ready).assertHeld(),
      release: async () => {
        if (released) return;
        released = true;
        await this.leave(shared);
      },
    };
  }

  /** One holder fewer; the last one deletes the lease. */
  private async leave(shared: Shared): Promise<void> {
    if (--shared.holders > 0) return;
    if (this.current === shared) this.current = undefined;
    const lease = await shared.ready.catch(() => undefined);
    await lease?.release();
  }

  /** An acquisition that failed: nobody holds it. */
  private drop(shared: Shared): void {
    shared.holders--;
    if (this.current === shared) this.current = undefined;
  }
}
