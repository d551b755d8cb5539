// Test fixture: a guest that keeps writing. Writes distinct byte patterns at random
// 64 KiB-aligned offsets, one after the other, and logs each write once it completed, so a
// test can rebuild the disk as it was after any prefix of the writes and compare.
import type { QmpClient } from '../qmp/qmp-client.ts';
import { guestWrite } from './qemu-vm.ts';

export interface LoggedWrite { offset: number; len: number; pattern: number }

export const BLOCK = 64 * 1024;

export class GuestWriter {
  readonly writes: LoggedWrite[] = [];
  /** Writes sent so far (completed + at most one in flight). */
  started = 0;
  #running: Promise<void> | undefined;
  #stop = false;
  #seed: number;

  constructor(private readonly qmp: QmpClient, private readonly deviceId: string, private readonly sizeBytes: number, seed = 1) {
    this.#seed = seed;
  }

  #rand(n: number): number {
    // xorshift32: reproducible from the seed
    let x = this.#seed;
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    this.#seed = x;
    return x % n;
  }

  /** One write, logged when done. */
  async writeOne(): Promise<void> {
    const blocks = this.sizeBytes / BLOCK;
    const len = (1 + this.#rand(2)) * BLOCK;
    const offset = this.#rand(blocks - len / BLOCK + 1) * BLOCK;
    const pattern = (this.writes.length % 255) + 1;
    this.started++;
    await guestWrite(this.qmp, this.deviceId, offset, len, pattern);
    this.writes.push({ offset, len, pattern });
  }

  /** Writes continuously until `stop`. */
  start(): void {
    this.#stop = false;
    this.#running = (async () => { while (!this.#stop) await this.writeOne(); })();
  }

  async stop(): Promise<void> {
    this.#stop = true;
    await this.#running;
    this.#running = undefined;
  }
}

/** `base` with writes[from, to) applied (in place). */
export function applyWrites(base: Buffer, writes: readonly LoggedWrite[], from: number, to: number): Buffer {
  for (let i = from; i < to; i++) {
    const w = writes[i]!;
    base.fill(w.pattern, w.offset, w.offset + w.len);
  }
  return base;
}

/** The 64 KiB blocks touched by writes[from, to). */
export function blocksWritten(writes: readonly LoggedWrite[], from: number, to: number): Set<number> {
  const out = new Set<number>();
  for (let i = from; i < to; i++) {
    const w = writes[i]!;
    for (let b = w.offset / BLOCK; b < (w.offset + w.len) / BLOCK; b++) out.add(b);
  }
  return out;
}
