// A small pool of connections to one export: reads are cut into request-sized pieces and
// each piece goes to the connection with the fewest bytes outstanding, so several
// connections stream in parallel. Block status goes to one connection (it is cheap).
import { NbdClient, type NbdClientOptions, type SocketAddress } from './client.ts';
import type { Extent } from './protocol.ts';

export interface NbdPoolOptions extends NbdClientOptions {
  /** Number of connections (default 4; 1 if the server does not allow multi-conn and writes are planned). */
  readonly connections?: number;
  /**
   * Size of the pieces a read is cut into (default 256 KiB: QEMU 7.2's server slows down
   * sharply with larger requests, see docs/benchmarks-nbd.md).
   */
  readonly pieceBytes?: number;
}

/** The read side of an export, as the data mover consumes it. */
export interface NbdReader {
  readonly size: number;
  read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array>;
  blockStatus(offset: number, length: number, context: string): Promise<Extent[]>;
  close(): Promise<void>;
}

export class NbdPool implements NbdReader {
  readonly size: number;
  private next = 0;

  private constructor(readonly clients: readonly NbdClient[], private readonly pieceBytes: number) {
    this.size = clients[0]!.size;
  }

  static async connect(address: SocketAddress, options: NbdPoolOptions): Promise<NbdPool> {
    const count = Math.max(1, Math.floor(options.connections ?? 4));
    const settled = await Promise.allSettled(Array.from({ length: count }, () => NbdClient.connect(address, options)));
    const clients = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) {
      await Promise.allSettled(clients.map((c) => c.close()));
      throw failed.reason;
    }
    const sizes = new Set(clients.map((c) => c.size));
    if (sizes.size !== 1) {
      await Promise.allSettled(clients.map((c) => c.close()));
      throw new Error(`connections disagree on the export size: ${[...sizes].join(', ')}`);
    }
    return new NbdPool(clients, Math.max(64 * 1024, options.pieceBytes ?? 256 * 1024));
  }

  get contexts(): ReadonlyMap<string, number> {
    return this.clients[0]!.contexts;
  }

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    if (into && into.length < length) throw new RangeError(`destination holds ${into.length} bytes, ${length} requested`);
    const dest = into ? into.subarray(0, length) : Buffer.allocUnsafe(length);
    const parts: Promise<Uint8Array>[] = [];
    for (let done = 0; done < length; done += this.pieceBytes) {
      const n = Math.min(this.pieceBytes, length - done);
      parts.push(this.leastBusy().read(offset + done, n, dest.subarray(done, done + n)));
    }
    await Promise.all(parts);
    return dest;
  }

  blockStatus(offset: number, length: number, context: string): Promise<Extent[]> {
    const c = this.clients[this.next++ % this.clients.length]!;
    return c.blockStatus(offset, length, context);
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.clients.map((c) => c.close()));
  }

  private leastBusy(): NbdClient {
    let best = this.clients[0]!;
    for (const c of this.clients) if (c.pendingBytes < best.pendingBytes) best = c;
    return best;
  }
}
