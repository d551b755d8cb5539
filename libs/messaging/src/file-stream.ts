// Bytes too many for one message, carried over NATS as a pull: the side that has them (a data
// mover serving a file download) offers a stream under a random id; the side that wants them
// (the gateway answering an HTTP download, the snapshot coordinator writing into a guest)
// requests `cairn.<site>.filestream.<id>` once per chunk and asks for the next only when it
// has passed the last one on. So memory stays one chunk per download on both sides, a slow
// reader slows the source, and nothing is stored on the way (commands' replies are kept for
// idempotency; chunks must not be).
//
// Protocol: a request's body is empty, or, for the first one, JSON the offerer's `start`
// receives (a byte range). The reply is the next chunk (at most `chunkBytes`); the last reply
// carries the header `Cairn-Eof`, a failure `Cairn-Error` with the reason. A request with the
// header `Cairn-Cancel` ends the stream early. A stream nobody pulls for `idleMs` is dropped.
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { headers as natsHeaders } from '@nats-io/transport-node';
import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { fileStreamSubject } from '@cairn/contracts';

export const FILE_STREAM_EOF = 'Cairn-Eof';
export const FILE_STREAM_ERROR = 'Cairn-Error';
export const FILE_STREAM_CANCEL = 'Cairn-Cancel';

/** What an offered stream ended with: all read, cancelled or dropped, or failed. */
export interface FileStreamOutcome {
  readonly bytes: number;
  readonly how: 'done' | 'cancelled' | 'idle' | 'failed';
  readonly error?: string;
}

export interface FileStreamOffer {
  /** Called on the first pull with what it carried (undefined when empty). */
  start(first: unknown): Promise<Readable> | Readable;
  /**
   * Called once when the stream ends, however it ends. The source is handed back unread when
   * the stream did not finish: the offerer decides whether to drain or destroy it.
   */
  end(outcome: FileStreamOutcome, unread?: Readable): void;
}

interface Served {
  readonly offer: FileStreamOffer;
  source?: Readable;
  iterator?: AsyncIterator<Buffer>;
  rest?: Buffer;
  bytes: number;
  /** Pulls of one stream run in order. */
  queue: Promise<void>;
  timer: NodeJS.Timeout;
  ended: boolean;
}

export interface FileStreamServerOptions {
  readonly chunkBytes?: number;
  readonly idleMs?: number;
}

/** The offering side: one subscription for every stream of this process. */
export class FileStreamServer {
  private readonly streams = new Map<string, Served>();
  private sub: Subscription | undefined;
  private readonly chunkBytes: number;
  private readonly idleMs: number;

  constructor(private readonly nc: NatsConnection, private readonly site: string, o: FileStreamServerOptions = {}) {
    this.chunkBytes = o.chunkBytes ?? 256 * 1024;
    this.idleMs = o.idleMs ?? 60_000;
  }

  /** Subscribes (no queue group: only the process holding a stream answers for it). */
  start(): void {
    const prefix = fileStreamSubject(this.site, 'x').slice(0, -1);
    this.sub = this.nc.subscribe(`${prefix}*`, {
      callback: (err, msg) => {
        if (err) return;
        const s = this.streams.get(msg.subject.slice(prefix.length));
        if (!s) return;
        s.queue = s.queue.then(() => this.pull(msg.subject.slice(prefix.length), s, msg));
      },
    });
  }

  /** Streams being served now. */
  get size(): number { return this.streams.size; }

  /** Offers a stream; returns the id to pull it by. */
  offer(offer: FileStreamOffer): string {
    const id = randomUUID();
    const s: Served = { offer, bytes: 0, queue: Promise.resolve(), ended: false, timer: undefined as unknown as NodeJS.Timeout };
    this.streams.set(id, s);
    this.arm(id, s);
    return id;
  }

  private arm(id: string, s: Served): void {
    clearTimeout(s.timer);
    s.timer = setTimeout(() => this.finish(id, s, { bytes: s.bytes, how: 'idle' }), this.idleMs);
    s.timer.unref?.();
  }

  private finish(id: string, s: Served, outcome: FileStreamOutcome): void {
    if (s.ended) return;
    s.ended = true;
    clearTimeout(s.timer);
    this.streams.delete(id);
    s.offer.end(outcome, outcome.how === 'done' ? undefined : s.source);
  }

  private async pull(id: string, s: Served, msg: Msg): Promise<void> {
    if (s.ended) return;
    const h = natsHeaders();
    try {
      if (msg.headers?.get(FILE_STREAM_CANCEL)) {
        this.finish(id, s, { bytes: s.bytes, how: 'cancelled' });
        h.set(FILE_STREAM_EOF, 'cancelled');
        msg.respond(new Uint8Array(0), { headers: h });
        return;
      }
      clearTimeout(s.timer);
      if (!s.source) {
        const first = msg.data.byteLength > 0 ? JSON.parse(new TextDecoder().decode(msg.data)) as unknown : undefined;
        s.source = await s.offer.start(first);
        s.iterator = (s.source[Symbol.asyncIterator] as () => AsyncIterator<Buffer>)();
      }
      const parts: Buffer[] = s.rest ? [s.rest] : [];
      let size = s.rest?.length ?? 0;
      s.rest = undefined;
      let eof = false;
      while (size < this.chunkBytes) {
        const r = await s.iterator!.next();
        if (r.done) { eof = true; break; }
        const b = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
        parts.push(b);
        size += b.length;
        // Answer with what a read gave once past a quarter chunk: do not wait for more than needed.
        if (size >= this.chunkBytes / 4) break;
      }
      let chunk = Buffer.concat(parts);
      if (chunk.length > this.chunkBytes) {
        s.rest = chunk.subarray(this.chunkBytes);
        chunk = chunk.subarray(0, this.chunkBytes);
      }
      s.bytes += chunk.length;
      if (eof) {
        h.set(FILE_STREAM_EOF, 'true');
        this.finish(id, s, { bytes: s.bytes, how: 'done' });
      } else {
        this.arm(id, s);
      }
      msg.respond(chunk, { headers: h });
    } catch (e) {
      const message = (e as Error).message ?? String(e);
      this.finish(id, s, { bytes: s.bytes, how: 'failed', error: message });
      h.set(FILE_STREAM_ERROR, message.replace(/[\r\n]+/g, ' ').slice(0, 2000));
      msg.respond(new Uint8Array(0), { headers: h });
    }
  }

  /** Ends every stream (as cancelled) and stops answering. */
  close(): void {
    this.sub?.unsubscribe();
    for (const [id, s] of [...this.streams]) this.finish(id, s, { bytes: s.bytes, how: 'cancelled' });
  }
}

export class FileStreamError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FileStreamError';
  }
}

/**
 * The pulling side: the stream's bytes, one chunk per request. Stopping early (a `break`, a
 * thrown error in the loop body) cancels the stream at its source.
 */
export async function* pullFileStream(nc: NatsConnection, site: string, streamId: string, o: { first?: unknown; timeoutMs?: number } = {}): AsyncGenerator<Buffer> {
  const subject = fileStreamSubject(site, streamId);
  const timeout = o.timeoutMs ?? 120_000;
  let body: Uint8Array = o.first === undefined ? new Uint8Array(0) : new TextEncoder().encode(JSON.stringify(o.first));
  let finished = false;
  try {
    for (;;) {
      let reply: Msg;
      try {
        reply = await nc.request(subject, body, { timeout });
      } catch (e) {
        finished = true;
        const name = (e as Error).name; const msg = (e as Error).message;
        if (/no responders|503/i.test(msg) || name === 'NoRespondersError') throw new FileStreamError(`file stream ${streamId} is not served (it ended, was dropped after a minute unpulled, or its data mover stopped)`);
        if (/timeout/i.test(msg) || name === 'TimeoutError') throw new FileStreamError(`file stream ${streamId}: no chunk within ${timeout / 1000} s (it ended, or its data mover stopped)`);
        throw e;
      }
      body = new Uint8Array(0);
      const error = reply.headers?.get(FILE_STREAM_ERROR);
      if (error) { finished = true; throw new FileStreamError(error); }
      if (reply.data.byteLength > 0) yield Buffer.from(reply.data.buffer, reply.data.byteOffset, reply.data.byteLength);
      if (reply.headers?.get(FILE_STREAM_EOF)) { finished = true; return; }
    }
  } finally {
    if (!finished) {
      const h = natsHeaders();
      h.set(FILE_STREAM_CANCEL, 'true');
      await nc.request(subject, new Uint8Array(0), { timeout: 10_000, headers: h }).catch(() => undefined);
    }
  }
}

/** Ends a stream that will not be pulled (or not to its end). */
export async function cancelFileStream(nc: NatsConnection, site: string, streamId: string): Promise<void> {
  const h = natsHeaders();
  h.set(FILE_STREAM_CANCEL, 'true');
  await nc.request(fileStreamSubject(site, streamId), new Uint8Array(0), { timeout: 10_000, headers: h }).catch(() => undefined);
}
