// Bounded concurrency, one implementation for the whole library: a FIFO counting semaphore
// (backend calls in flight, chunks in flight, so memory stays flat whatever the disk size) and
// forEachLimit over it.

/** FIFO counting semaphore. */
export class Semaphore {
  private free: number;
  private readonly waiting: Array<() => void> = [];

  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`concurrency limit must be a positive integer, got ${limit}`);
    this.free = limit;
  }

  get inUse(): number {
    return this.limit - this.free;
  }

  async acquire(): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  release(): void {
    const next = this.waiting.shift();
    // Hand the permit straight to the next waiter, so a newcomer cannot overtake it.
    if (next) next();
    else this.free++;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire();
    try {
      return await fn();
    } finally {
      this.release();
    }
  }
}

/** Runs `fn` over `items` with at most `limit` at once; rejects with the first error after all settle. */
export async function forEachLimit<T>(items: Iterable<T>, limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  const it = items[Symbol.iterator]();
  let error: unknown;
  let failed = false;
  const lanes = Array.from({ length: Math.max(1, limit) }, async () => {
    for (let n = it.next(); !n.done && !failed; n = it.next()) {
      try {
        await fn(n.value);
      } catch (e) {
        if (!failed) { failed = true; error = e; }
      }
    }
  });
  await Promise.all(lanes);
  if (failed) throw error;
}
