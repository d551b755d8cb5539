// A ByteSink with a promise API (`read(n)`), for the handshake on both sides and for the
// server's request loop. It buffers at most `maxBuffered` bytes beyond what has been asked
// for and tells its owner to pause the socket when that fills, so a peer cannot make us
// hold unbounded memory.
import type { ByteSink } from './byte-pump.ts';
import { NbdConnectionClosedError } from './protocol.ts';

const STAGING = 64 * 1024;

export class AsyncReader implements ByteSink {
  private readonly staging = Buffer.allocUnsafe(STAGING);
  private chunks: Buffer[] = [];
  private buffered = 0;
  private waiter: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | null = null;
  private failure: Error | null = null;
  private paused = false;

  constructor(
    private readonly maxBuffered: number,
    private readonly flow: { pause(): void; resume(): void } = { pause() {}, resume() {} },
  ) {}

  target(): Uint8Array {
    return this.staging;
  }

  commit(n: number): void {
    this.push(Buffer.from(this.staging.subarray(0, n)));
  }

  /** Takes ownership of a received chunk (from a 'data' event) without copying. */
  push(chunk: Buffer): void {
    if (this.failure || chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    this.serve();
    if (this.buffered > this.maxBuffered && !this.paused) {
      this.paused = true;
      this.flow.pause();
    }
  }

  /** Resolves with exactly `n` bytes, or rejects if the stream ends or fails first. */
  read(n: number): Promise<Buffer> {
    if (this.waiter) return Promise.reject(new Error('AsyncReader: concurrent read'));
    if (n === 0) return Promise.resolve(Buffer.alloc(0));
    if (this.buffered >= n) return Promise.resolve(this.take(n));
    if (this.failure) return Promise.reject(this.failure);
    if (this.paused) {
      this.paused = false;
      this.flow.resume();
    }
    return new Promise((resolve, reject) => {
      this.waiter = { n, resolve, reject };
    });
  }

  /** Bytes received but not yet read (handed to the next parser on a phase change). */
  takeRemaining(): Buffer {
    return this.take(this.buffered);
  }

  /** Ends the stream: pending and future reads reject with `error`. */
  fail(error: Error = new NbdConnectionClosedError('connection closed')): void {
    if (this.failure) return;
    this.failure = error;
    const w = this.waiter;
    this.waiter = null;
    w?.reject(error);
  }

  private serve(): void {
    const w = this.waiter;
    if (w && this.buffered >= w.n) {
      this.waiter = null;
      w.resolve(this.take(w.n));
    }
  }

  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    let out: Buffer;
    const first = this.chunks[0];
    if (first && first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let pos = 0;
      while (pos < n) {
        const c = this.chunks[0]!;
        const k = Math.min(c.length, n - pos);
        c.copy(out, pos, 0, k);
        pos += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.buffered -= n;
    if (this.paused && this.buffered <= this.maxBuffered) {
      this.paused = false;
      this.flow.resume();
    }
    return out;
  }
}
