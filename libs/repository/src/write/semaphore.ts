// A counting semaphore: bounds work in flight so memory stays flat whatever the disk size.
export class Semaphore {
  private waiters: Array<() => void> = [];
  constructor(private available: number) {}

  async acquire(): Promise<void> {
    if (this.available > 0) {
      this.available--;
      return;
    }
    await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.available++;
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
