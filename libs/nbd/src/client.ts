// NBD client: one connection to one export, with requests pipelined (many in flight,
// matched by handle) and every request under a deadline. Any protocol violation, timeout
// or socket error ends the connection and fails everything in flight: a caller gets the
// bytes the server sent for exactly the range it asked for, or an error — never a hang.
import net from 'node:net';
import tls from 'node:tls';
import { randomInt } from 'node:crypto';
import { AsyncReader } from './async-reader.ts';
import { BytePump, feedCopy, type SocketAddress } from './byte-pump.ts';
import { clientHandshake, type BlockSizes, type HandshakeChannel, type NegotiatedExport } from './client-handshake.ts';
import { ReplyParser, type PendingRequest, type ReplyHandler } from './reply-parser.ts';
import {
  CMD_BLOCK_STATUS, CMD_DISC, CMD_FLUSH, CMD_READ, CMD_WRITE, MAX_PAYLOAD, NbdConnectionClosedError,
  NbdProtocolError, NbdTimeoutError, REQUEST_MAGIC, TFLAG_CAN_MULTI_CONN, TFLAG_READ_ONLY, TFLAG_SEND_FLUSH,
  writeU64, type Extent,
} from './protocol.ts';

export type { SocketAddress } from './byte-pump.ts';

export interface NbdClientOptions {
  /** Export to open ('' is the server's default export). */
  readonly exportName: string;
  /** Metadata contexts to negotiate, e.g. 'base:allocation', 'qemu:dirty-bitmap:bm0'. */
  readonly metaContexts?: readonly string[];
  /** Upgrade with NBD_OPT_STARTTLS; refuses to continue without TLS when set. */
  readonly tls?: tls.ConnectionOptions;
  /** Deadline for the handshake and for each request (default 30 s). */
  readonly timeoutMs?: number;
  /** Deadline for the handshake alone (default: timeoutMs). */
  readonly handshakeTimeoutMs?: number;
  /** Largest single request sent; larger reads are split (default: server maximum, ≤ 32 MiB). */
  readonly maxRequestBytes?: number;
  /** Cap on bytes requested but not yet received; further reads wait (default 256 MiB). */
  readonly maxInFlightBytes?: number;
  /** Largest BLOCK_STATUS reply chunk accepted (default 2 MiB, about 260k extents). */
  readonly maxStatusReplyBytes?: number;
}

/** What an export looks like (NBD_OPT_INFO), without opening it. */
export interface NbdExportInfo {
  readonly size: number;
  readonly transmissionFlags: number;
  readonly readOnly: boolean;
  readonly canMultiConn: boolean;
  readonly blockSizes: BlockSizes;
}

interface InFlight extends PendingRequest {
  readonly resolve: () => void;
  readonly reject: (e: Error) => void;
  readonly timer: NodeJS.Timeout;
}

const DEFAULT_TIMEOUT_MS = 30_000;

export class NbdClient implements ReplyHandler {
  readonly size: number;
  readonly transmissionFlags: number;
  readonly blockSizes: BlockSizes;
  /** Granted metadata contexts by name → id. */
  readonly contexts: ReadonlyMap<string, number>;
  readonly structuredReplies: boolean;

  private readonly inflight = new Map<number, InFlight>();
  private readonly handleHi = randomInt(0, 0xffffffff);
  private nextHandle = 1;
  private failure: Error | null = null;
  private closing = false;
  private inflightBytes = 0;
  private readonly byteWaiters: Array<{ bytes: number; go: () => void; fail: (e: Error) => void }> = [];
  private readonly maxRequest: number;
  private readonly maxInFlightBytes: number;
  private readonly timeoutMs: number;
  /** Request headers not yet written (sent together in the loop's check phase). */
  private headers: Buffer[] = [];
  private readonly parser: ReplyParser;
  private readonly closed: Promise<void>;

  private constructor(
    private readonly stream: net.Socket,
    private readonly rawSocket: net.Socket,
    negotiated: NegotiatedExport,
    options: NbdClientOptions,
  ) {
    this.size = negotiated.size;
    this.transmissionFlags = negotiated.transmissionFlags;
    this.blockSizes = negotiated.blockSizes;
    this.contexts = negotiated.contexts;
    this.structuredReplies = negotiated.structuredReplies;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const max = Math.min(options.maxRequestBytes ?? MAX_PAYLOAD, negotiated.blockSizes.maximum, MAX_PAYLOAD);
    // Keep requests a multiple of the minimum block size.
    this.maxRequest = Math.max(negotiated.blockSizes.minimum, max - (max % negotiated.blockSizes.minimum));
    this.maxInFlightBytes = Math.max(options.maxInFlightBytes ?? 256 * 1024 * 1024, this.maxRequest);
    this.parser = new ReplyParser(this, {
      structured: negotiated.structuredReplies,
      contextIds: new Set(negotiated.contexts.values()),
      maxStatusPayload: options.maxStatusReplyBytes ?? 2 * 1024 * 1024 + 4,
    });
    this.closed = new Promise((resolve) => {
      rawSocket.once('close', () => resolve());
    });
  }

  /** Opens a connection and negotiates the export. */
  static async connect(address: SocketAddress, options: NbdClientOptions): Promise<NbdClient> {
    const { socket, stream, pump, reader, negotiated } = await openHandshake(address, options, false);
    // Swap the handshake's listeners for the transmission phase's.
    for (const s of new Set([stream, socket])) {
      s.removeAllListeners('error');
      s.removeAllListeners('close');
    }
    const client = new NbdClient(stream, socket, negotiated, options);
    pump.setSink(client.parser);
    feedCopy(client.parser, reader.takeRemaining());
    const onError = (e: Error) => client.fail(new NbdConnectionClosedError(`connection failed: ${e.message}`));
    const onClose = () => client.fail(new NbdConnectionClosedError('connection closed by the server'));
    stream.on('error', onError);
    stream.on('close', onClose);
    if (stream !== socket) socket.on('error', onError);
    socket.on('close', onClose);
    return client;
  }

  /** Asks for an export's size and flags with NBD_OPT_INFO, then disconnects. */
  static async info(address: SocketAddress, options: NbdClientOptions): Promise<NbdExportInfo> {
    const { socket, negotiated } = await openHandshake(address, options, true);
    socket.destroy();
    return describe(negotiated.transmissionFlags, negotiated.size, negotiated.blockSizes);
  }

  get readOnly(): boolean {
    return (this.transmissionFlags & TFLAG_READ_ONLY) !== 0;
  }

  get canMultiConn(): boolean {
    return (this.transmissionFlags & TFLAG_CAN_MULTI_CONN) !== 0;
  }

  /** Bytes requested and not yet received. */
  get pendingBytes(): number {
    return this.inflightBytes;
  }

  /**
   * Reads `length` bytes at `offset`. With `into` (at least `length` bytes) the data lands
   * there and `into.subarray(0, length)` is returned; its contents are undefined if the read fails.
   */
  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    this.checkRange(offset, length);
    if (into && into.length < length) throw new RangeError(`destination holds ${into.length} bytes, ${length} requested`);
    const dest = into ? into.subarray(0, length) : Buffer.allocUnsafe(length);
    if (length === 0) return dest;
    const min = this.blockSizes.minimum;
    if (offset % min !== 0 || length % min !== 0) {
      // The server only takes whole minimum blocks: read the aligned cover and copy out.
      const start = offset - (offset % min);
      const end = Math.min(this.size, Math.ceil((offset + length) / min) * min);
      const cover = await this.readAligned(start, end - start, Buffer.allocUnsafe(end - start));
      dest.set(cover.subarray(offset - start, offset - start + length));
      return dest;
    }
    return this.readAligned(offset, length, dest);
  }

  private async readAligned(offset: number, length: number, dest: Uint8Array): Promise<Uint8Array> {
    const parts: Promise<void>[] = [];
    for (let done = 0; done < length; done += this.maxRequest) {
      const n = Math.min(this.maxRequest, length - done);
      parts.push(this.request(CMD_READ, offset + done, n, dest.subarray(done, done + n), null, 0));
    }
    await Promise.all(parts);
    return dest;
  }

  /**
   * Block status of one negotiated context from `offset`. The server may describe less than
   * `length` (never more: extents are clipped to the range asked); callers iterate from the
   * end of the last extent. Lengths above 4 GiB - 1 are asked in a first window of that size.
   */
  async blockStatus(offset: number, length: number, context: string): Promise<Extent[]> {
    const id = this.contexts.get(context);
    if (id === undefined) throw new Error(`metadata context '${context}' was not negotiated (have: ${[...this.contexts.keys()].join(', ') || 'none'})`);
    this.checkRange(offset, length);
    if (length === 0) return [];
    const min = this.blockSizes.minimum;
    const start = offset - (offset % min);
    const end = Math.min(this.size, Math.ceil((offset + length) / min) * min, start + 0xffffffff - (0xffffffff % min));
    const req = await this.requestStatus(start, end - start, id);
    // Clip to what was asked (alignment may have widened the request).
    const out: Extent[] = [];
    for (const e of req.extents!.get(id)!) {
      const s = Math.max(e.offset, offset);
      const t = Math.min(e.offset + e.length, offset + length);
      if (s < t) out.push(s === e.offset && t === e.offset + e.length ? e : { offset: s, length: t - s, flags: e.flags });
    }
    if (out.length === 0) throw new NbdProtocolError(`BLOCK_STATUS reply described nothing of [${offset}, +${length})`);
    return out;
  }

  /** Writes `data` at `offset` (the export must be writable). */
  async write(offset: number, data: Uint8Array): Promise<void> {
    if (this.readOnly) throw new Error('export is read-only');
    this.checkRange(offset, data.length);
    const min = this.blockSizes.minimum;
    if (offset % min !== 0 || data.length % min !== 0) throw new RangeError(`writes must be aligned to the server's ${min}-byte minimum block size`);
    const parts: Promise<void>[] = [];
    for (let done = 0; done < data.length; done += this.maxRequest) {
      const n = Math.min(this.maxRequest, data.length - done);
      parts.push(this.request(CMD_WRITE, offset + done, n, null, data.subarray(done, done + n), 0));
    }
    await Promise.all(parts);
  }

  /** Asks the server to persist completed writes. */
  async flush(): Promise<void> {
    if (!(this.transmissionFlags & TFLAG_SEND_FLUSH)) return;
    await this.request(CMD_FLUSH, 0, 0, null, null, 0);
  }

  /** Waits for in-flight requests, sends NBD_CMD_DISC and closes the connection. */
  async close(): Promise<void> {
    if (this.closing) return this.closed;
    this.closing = true;
    await this.drained();
    if (!this.failure) {
      this.failure = new NbdConnectionClosedError('client closed');
      this.parser.stop();
      this.flushHeaders();
      this.stream.end(this.header(CMD_DISC, 0, 0, 0));
    }
    const timer = setTimeout(() => this.rawSocket.destroy(), 2000);
    timer.unref();
    if (this.rawSocket.destroyed) clearTimeout(timer);
    else this.rawSocket.once('close', () => clearTimeout(timer));
    await this.closed;
  }

  // ReplyHandler

  find(handleHi: number, handleLo: number): PendingRequest | undefined {
    if (handleHi !== this.handleHi) return undefined;
    return this.inflight.get(handleLo);
  }

  done(handleLo: number, req: PendingRequest, error: Error | null): void {
    const r = req as InFlight;
    this.inflight.delete(handleLo);
    clearTimeout(r.timer);
    this.release(r.command === CMD_READ || r.command === CMD_WRITE ? r.length : 0);
    if (error) r.reject(error);
    else r.resolve();
    this.notifyDrained();
  }

  fatal(error: NbdProtocolError): void {
    this.fail(error);
  }

  // internals

  private fail(error: Error): void {
    if (this.failure && this.inflight.size === 0 && this.byteWaiters.length === 0) {
      this.rawSocket.destroy();
      return;
    }
    this.failure ??= error;
    this.parser.stop();
    // Destroy first: no further read may land in a destination we are about to release.
    this.stream.destroy();
    this.rawSocket.destroy();
    const requests = [...this.inflight.values()];
    this.inflight.clear();
    this.inflightBytes = 0;
    for (const r of requests) {
      clearTimeout(r.timer);
      r.reject(this.failure);
    }
    for (const w of this.byteWaiters.splice(0)) w.fail(this.failure);
    this.notifyDrained();
  }

  private checkRange(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new RangeError(`invalid range offset=${offset} length=${length}`);
    }
    if (offset + length > this.size) throw new RangeError(`range [${offset}, +${length}) runs past the export end (${this.size})`);
  }

  private requestStatus(offset: number, length: number, contextId: number): Promise<PendingRequest> {
    let captured: PendingRequest | undefined;
    return this.request(CMD_BLOCK_STATUS, offset, length, null, null, contextId, (r) => { captured = r; }).then(() => captured!);
  }

  private async request(
    command: number, offset: number, length: number, dest: Uint8Array | null, data: Uint8Array | null,
    contextId: number, capture?: (r: PendingRequest) => void,
  ): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.closing && command !== CMD_DISC) throw new NbdConnectionClosedError('client is closing');
    const bytes = command === CMD_READ || command === CMD_WRITE ? length : 0;
    if (bytes > 0) await this.acquire(bytes);
    if (this.failure) {
      this.release(bytes);
      throw this.failure;
    }
    const handleLo = this.nextHandle;
    this.nextHandle = this.nextHandle === 0xffffffff ? 1 : this.nextHandle + 1;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail(new NbdTimeoutError(`no complete reply within ${this.timeoutMs} ms (command ${command}, offset ${offset}, length ${length})`));
      }, this.timeoutMs);
      const req: InFlight = {
        command, offset, length, dest, contextId, covered: null, error: null, extents: null, resolve, reject, timer,
      };
      capture?.(req);
      this.inflight.set(handleLo, req);
      const h = this.header(command, handleLo, offset, length);
      if (data) {
        this.flushHeaders();
        this.stream.cork();
        this.stream.write(h);
        this.stream.write(data);
        this.stream.uncork();
      } else {
        // Requests made in the same turn of the event loop (the pieces of a pool read; an
        // incremental's reads, each started when the writer takes a block, often several per
        // turn) leave in one write: one system call and one wake-up of the server instead of one
        // per request. The socket writes of one header each cost an incremental's main thread
        // ~55 ms of CPU per 700 reads (V8 profile, docs/benchmarks.md).
        this.headers.push(h);
        if (this.headers.length === 1) setImmediate(() => this.flushHeaders());
      }
    });
  }

  private flushHeaders(): void {
    if (this.headers.length === 0) return;
    const batch = this.headers.length === 1 ? this.headers[0]! : Buffer.concat(this.headers);
    this.headers = [];
    if (!this.stream.destroyed) this.stream.write(batch);
  }

  private header(command: number, handleLo: number, offset: number, length: number): Buffer {
    const h = Buffer.allocUnsafe(28);
    const v = new DataView(h.buffer, h.byteOffset, 28);
    v.setUint32(0, REQUEST_MAGIC);
    v.setUint16(4, 0);
    v.setUint16(6, command);
    v.setUint32(8, this.handleHi);
    v.setUint32(12, handleLo);
    writeU64(v, 16, offset);
    v.setUint32(24, length);
    return h;
  }

  private acquire(bytes: number): Promise<void> {
    if (this.inflightBytes + bytes <= this.maxInFlightBytes && this.byteWaiters.length === 0) {
      this.inflightBytes += bytes;
      return Promise.resolve();
    }
    return new Promise((go, fail) => this.byteWaiters.push({ bytes, go, fail }));
  }

  private release(bytes: number): void {
    this.inflightBytes -= bytes;
    while (this.byteWaiters.length > 0) {
      const w = this.byteWaiters[0]!;
      if (this.inflightBytes + w.bytes > this.maxInFlightBytes) break;
      this.byteWaiters.shift();
      this.inflightBytes += w.bytes;
      w.go();
    }
  }

  private drainWaiters: Array<() => void> = [];

  private drained(): Promise<void> {
    if (this.inflight.size === 0 && this.byteWaiters.length === 0) return Promise.resolve();
    return new Promise((res) => this.drainWaiters.push(res));
  }

  private notifyDrained(): void {
    if (this.inflight.size === 0 && this.byteWaiters.length === 0) {
      for (const w of this.drainWaiters.splice(0)) w();
    }
  }
}

function describe(transmissionFlags: number, size: number, blockSizes: BlockSizes): NbdExportInfo {
  return {
    size, transmissionFlags, blockSizes,
    readOnly: (transmissionFlags & TFLAG_READ_ONLY) !== 0,
    canMultiConn: (transmissionFlags & TFLAG_CAN_MULTI_CONN) !== 0,
  };
}

interface OpenedHandshake {
  readonly socket: net.Socket;
  readonly stream: net.Socket;
  readonly pump: BytePump;
  readonly reader: AsyncReader;
  readonly negotiated: NegotiatedExport;
}

/** Connects and runs the handshake under one deadline; on any failure the socket is destroyed. */
async function openHandshake(address: SocketAddress, options: NbdClientOptions, infoOnly: boolean): Promise<OpenedHandshake> {
  const timeoutMs = options.handshakeTimeoutMs ?? options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  let reader = new AsyncReader(1024 * 1024);
  const pump = new BytePump(reader);
  const useTls = options.tls !== undefined;
  const socket = useTls ? net.connect(address as net.NetConnectOpts) : pump.connectDirect(address);
  const detachRaw = useTls ? pump.attachStream(socket) : () => undefined;
  let stream: net.Socket = socket;
  const fail = (e: Error) => reader.fail(e);
  socket.on('error', (e) => fail(new NbdConnectionClosedError(`connection failed: ${e.message}`)));
  socket.on('close', () => fail(new NbdConnectionClosedError('connection closed during the handshake')));
  if ('host' in address) socket.setNoDelay(true);
  const timer = setTimeout(() => {
    fail(new NbdTimeoutError(`NBD handshake with ${describeAddress(address)} took longer than ${timeoutMs} ms`));
    socket.destroy();
  }, timeoutMs);
  const channel = (r: AsyncReader, s: net.Socket): HandshakeChannel => ({ read: (n) => r.read(n), write: (b) => { s.write(b); } });
  try {
    const startTls = useTls
      ? async (): Promise<HandshakeChannel> => {
        if (reader.takeRemaining().length > 0) throw new NbdProtocolError('server sent data after acknowledging STARTTLS');
        detachRaw();
        const tlsReader = new AsyncReader(1024 * 1024);
        reader = tlsReader;
        pump.setSink(tlsReader);
        const servername = options.tls?.servername ?? ('host' in address && net.isIP(address.host) === 0 ? address.host : 'localhost');
        const secure = tls.connect({ ...options.tls, socket, servername });
        pump.attachStream(secure);
        secure.on('error', (e) => fail(new NbdConnectionClosedError(`TLS failed: ${e.message}`)));
        secure.on('close', () => fail(new NbdConnectionClosedError('connection closed during the handshake')));
        await new Promise<void>((resolve, reject) => {
          secure.once('secureConnect', resolve);
          secure.once('error', reject);
          socket.once('close', () => reject(new NbdConnectionClosedError('connection closed during the TLS handshake')));
        });
        stream = secure;
        return channel(tlsReader, secure);
      }
      : undefined;
    const negotiated = await clientHandshake(channel(reader, socket), {
      exportName: options.exportName,
      metaContexts: options.metaContexts ?? [],
      ...(startTls ? { startTls } : {}),
      infoOnly,
    });
    return { socket, stream, pump, reader, negotiated };
  } catch (e) {
    stream.destroy();
    socket.destroy();
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

function describeAddress(address: SocketAddress): string {
  return 'path' in address ? `unix:${address.path}` : `${address.host}:${address.port}`;
}
