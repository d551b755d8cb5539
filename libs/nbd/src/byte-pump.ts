// Moves bytes from a socket into whichever parser currently owns the connection, with as
// few copies as possible. On plain sockets Node's `onread` hook lets the parser choose
// the buffer the kernel reads into, so a large READ payload lands directly in the
// caller's destination buffer; TLS sockets only offer 'data' events, which are copied.
import net from 'node:net';
import type { Duplex } from 'node:stream';

/** A parser that accepts bytes into buffers it chooses. */
export interface ByteSink {
  /** Where the next bytes should land; never empty. */
  target(): Uint8Array;
  /** `n` bytes were written at the start of the buffer last returned by target(). */
  commit(n: number): void;
}

/** Copies `bytes` into a sink, chunk by chunk. */
export function feedCopy(sink: ByteSink, bytes: Uint8Array): void {
  let pos = 0;
  while (pos < bytes.length) {
    const t = sink.target();
    const n = Math.min(t.length, bytes.length - pos);
    t.set(bytes.subarray(pos, pos + n));
    pos += n;
    sink.commit(n);
  }
}

export type SocketAddress = { path: string } | { host: string; port: number };

/** Routes a socket's incoming bytes to the current sink; the sink can be swapped. */
export class BytePump {
  private sink: ByteSink;
  private targetOwner: ByteSink | null = null;
  private lastTarget: Uint8Array | null = null;

  constructor(initial: ByteSink) {
    this.sink = initial;
  }

  setSink(sink: ByteSink): void {
    this.sink = sink;
  }

  /** A plain socket whose reads land in buffers chosen by the current sink. */
  connectDirect(address: SocketAddress): net.Socket {
    return net.connect({
      ...address,
      onread: {
        buffer: () => this.nextTarget(),
        callback: (nread: number, buf: Uint8Array) => {
          this.onRead(nread, buf);
          return true;
        },
      },
    } as net.NetConnectOpts);
  }

  /** Feeds a stream's 'data' events (TLS) by copying; returns a function that detaches. */
  attachStream(stream: Duplex): () => void {
    const onData = (chunk: Buffer) => feedCopy(this.sink, chunk);
    stream.on('data', onData);
    return () => stream.removeListener('data', onData);
  }

  private nextTarget(): Uint8Array {
    this.targetOwner = this.sink;
    this.lastTarget = this.sink.target();
    return this.lastTarget;
  }

  private onRead(nread: number, buf: Uint8Array): void {
    if (nread <= 0) return;
    const owner = this.targetOwner;
    if (owner === this.sink && buf === this.lastTarget) {
      owner.commit(nread);
    } else {
      // The sink was swapped after this buffer was handed out: pass the bytes on.
      feedCopy(this.sink, buf.subarray(0, nread));
    }
  }
}
