// A bounded FIFO between the log reader and a target's sender: `push` waits while the queue
// is full, which is how a slow or absent target stops the bridge from reading further.
export class BoundedQueue<T> {
  private readonly items: T[] = [];
  private closed = false;
  private onItem: (() => void) | undefined;
  private onSpace: (() => void) | undefined;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new Error(`queue capacity must be a positive integer, not ${capacity}`);
  }

  get length(): number { return this.items.length; }

  /** Waits for room; returns false when the queue was closed instead. */
  async push(item: T): Promise<boolean> {
    while (!this.closed && this.items.length >= this.capacity) {
      await new Promise<void>((resolve) => { this.onSpace = resolve; });
    }
    if (this.closed) return false;
    this.items.push(item);
    this.wake('item');
    return true;
  }

  /**
   * Waits for at least one item, then up to `lingerMs` more for the batch to fill to `max`;
   * returns [] only when closed.
   */
  async take(max: number, lingerMs: number): Promise<T[]> {
    while (!this.closed && this.items.length === 0) await this.waitItem();
    if (this.items.length > 0 && this.items.length < max && lingerMs > 0) {
      const deadline = Date.now() + lingerMs;
      while (!this.closed && this.items.length < max && Date.now() < deadline) {
        await Promise.race([this.waitItem(), sleep(deadline - Date.now())]);
      }
    }
    const batch = this.items.splice(0, max);
    this.wake('space');
    return batch;
  }

  close(): void {
    this.closed = true;
    this.wake('item');
    this.wake('space');
  }

  private waitItem(): Promise<void> {
    return new Promise<void>((resolve) => { this.onItem = resolve; });
  }

  private wake(which: 'item' | 'space'): void {
    const fn = which === 'item' ? this.onItem : this.onSpace;
    if (which === 'item') this.onItem = undefined; else this.onSpace = undefined;
    fn?.();
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}
