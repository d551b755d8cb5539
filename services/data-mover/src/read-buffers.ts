// Read buffers shared by the transfers of one data mover, handed from one job to the next.
//
// Why: each transfer's ring of NBD read buffers (transfer.ts) was allocated fresh per job, 1-4
// MiB of ArrayBuffer memory per small job. V8 counts a dead ArrayBuffer's memory as external
// memory until a garbage collection sweeps it, and that external memory brings the heap's
// global limit near, so V8 starts a mark-compact (reason "task") on a small heap: at 1,000 VMs
// a mover ran 33-43 mark-compacts per 333 jobs (docs/benchmarks.md, "The control plane at
// scale"). A buffer a finished transfer gives back is taken by the next one instead.

/** Free buffers kept at most, in bytes (beyond it a given-back buffer is left to the GC). */
const DEFAULT_KEEP_BYTES = 32 * 1024 * 1024;

export class ReadBufferPool {
  /** Free buffers by their exact length (always a power of two, at least `minBytes`). */
  private readonly free = new Map<number, Buffer[]>();
  private freeBytes = 0;

  constructor(
    private readonly keepBytes = DEFAULT_KEEP_BYTES,
    /** Smallest buffer made (a chunk is 256 KiB by default: one window of one chunk). */
    private readonly minBytes = 256 * 1024,
  ) {}

  /** A buffer of at least `bytes` (its contents are whatever its last user left). */
  take(bytes: number): Buffer {
    const size = sizeClass(Math.max(bytes, this.minBytes));
    // The smallest free buffer that holds `bytes` (a few size classes at most).
    let best: Buffer[] | undefined;
    for (const [length, list] of this.free) if (length >= size && list.length > 0 && (!best || length < best[0]!.length)) best = list;
    const b = best?.pop();
    if (b) {
      this.freeBytes -= b.length;
      return b;
    }
    // Never the shared pool of small Buffers: the whole buffer is this transfer's.
    return Buffer.allocUnsafeSlow(size);
  }

  /**
   * Gives buffers back once nothing reads into them or from them any more (the transfer ended
   * and its NBD connections are closed).
   */
  give(buffers: Iterable<Buffer | undefined>): void {
    for (const b of buffers) {
      if (!b || b.length !== sizeClass(b.length) || this.freeBytes + b.length > this.keepBytes) continue;
      let list = this.free.get(b.length);
      if (!list) this.free.set(b.length, (list = []));
      list.push(b);
      this.freeBytes += b.length;
    }
  }

  /** Bytes held by free buffers (for tests and metrics). */
  get heldBytes(): number {
    return this.freeBytes;
  }
}

/** The next power of two (a few sizes, so a buffer fits the next job's windows). */
function sizeClass(bytes: number): number {
  return bytes <= 1 ? 1 : 2 ** Math.ceil(Math.log2(bytes));
}
