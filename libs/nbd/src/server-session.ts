// One client connection of the NBD server: fixed-newstyle option haggling (LIST, INFO, GO,
// EXPORT_NAME, ABORT, STARTTLS, STRUCTURED_REPLY, LIST/SET_META_CONTEXT), then the
// transmission phase (READ, WRITE, FLUSH, BLOCK_STATUS, DISC). Requests run concurrently up
// to a per-connection limit; a slot is released only when its reply has been flushed to the
// socket, so a slow client bounds the memory it can make us hold.
import type net from 'node:net';
import tls from 'node:tls';
import { AsyncReader } from './async-reader.ts';
import { isWritable, readChecked, type BlockSource } from './block-source.ts';
import {
  BASE_ALLOCATION, CMD_BLOCK_STATUS, CMD_DISC, CMD_FLAG_FUA, CMD_FLAG_REQ_ONE, CMD_FLUSH, CMD_READ, CMD_WRITE,
  FLAG_C_FIXED_NEWSTYLE, FLAG_C_NO_ZEROES, FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES, IHAVEOPT_HI, IHAVEOPT_LO,
  INFO_BLOCK_SIZE, INFO_DESCRIPTION, INFO_EXPORT, INFO_NAME, MAX_PAYLOAD, MAX_STRING, NBDMAGIC_HI, NBDMAGIC_LO,
  NBD_EINVAL, NBD_EIO, NBD_ENOSPC, NBD_EPERM, NBD_ESHUTDOWN, NbdRequestError, OPT_ABORT, OPT_EXPORT_NAME,
  OPT_GO, OPT_INFO, OPT_LIST, OPT_LIST_META_CONTEXT, OPT_REPLY_MAGIC_HI, OPT_REPLY_MAGIC_LO,
  OPT_SET_META_CONTEXT, OPT_STARTTLS, OPT_STRUCTURED_REPLY, REPLY_FLAG_DONE, REPLY_TYPE_BLOCK_STATUS,
  REPLY_TYPE_ERROR, REPLY_TYPE_OFFSET_DATA, REP_ACK, REP_ERR_INVALID, REP_ERR_POLICY, REP_ERR_TLS_REQD,
  REP_ERR_UNKNOWN, REP_ERR_UNSUP, REP_INFO, REP_META_CONTEXT, REP_SERVER, REQUEST_MAGIC, SIMPLE_REPLY_MAGIC,
  STATE_HOLE, STATE_ZERO, STRUCTURED_REPLY_MAGIC, TFLAG_CAN_MULTI_CONN, TFLAG_HAS_FLAGS, TFLAG_READ_ONLY,
  TFLAG_SEND_FLUSH, TFLAG_SEND_FUA, writeU64, type Extent,
} from './protocol.ts';

export interface ServedExport {
  readonly source: BlockSource;
  readonly description?: string;
  /**
   * A second metadata context beside base:allocation, e.g. `qemu:dirty-bitmap:<name>` for the
   * changed areas a hypervisor reported (VMware CBT); `status` gives STATE_DIRTY extents from `offset`.
   */
  readonly dirty?: { readonly context: string; status(offset: number, length: number): Promise<Extent[]> };
}

export interface SessionConfig {
  lookup(name: string): ServedExport | undefined;
  names(): string[];
  readonly tls: { readonly context: tls.SecureContext; readonly required: boolean; readonly requestCert: boolean } | null;
  readonly handshakeTimeoutMs: number;
  readonly maxInFlight: number;
  readonly isShuttingDown: () => boolean;
}

/** Option data beyond this is a denial-of-service attempt: hard disconnect. */
const MAX_OPTION_DATA = 64 * 1024;
const BASE_ALLOCATION_ID = 1;
const DIRTY_CONTEXT_ID = 2;
/** Zero detection reads at most this much per BLOCK_STATUS request (a prefix answer is allowed). */
const ZERO_SCAN_WINDOW = 16 * 1024 * 1024;
const ZERO_GRANULE = 4096;
const MAX_DESCRIPTORS = 64 * 1024;
const ZEROES = new Uint8Array(ZERO_GRANULE);

class Disconnect extends Error {}

/** A reply and what to do once the socket has taken it (give a read's buffer back to its source). */
interface Reply {
  readonly parts: Buffer[];
  readonly written: (() => void) | undefined;
}

interface Chosen {
  readonly name: string;
  readonly exp: ServedExport;
  readonly writable: boolean;
}

export class ServerSession {
  private stream: net.Socket;
  private reader: AsyncReader;
  private detach: () => void = () => undefined;
  private tlsActive = false;
  private structured = false;
  private noZeroes = false;
  /** Export name SET_META_CONTEXT selected base:allocation for, if any. */
  private metaExport: string | null = null;
  /** Context ids SET_META_CONTEXT selected for metaExport. */
  private metaIds: number[] = [];
  private inflight = 0;
  private slotWaiters: Array<() => void> = [];
  private closedFlag = false;

  constructor(private readonly socket: net.Socket, private readonly config: SessionConfig) {
    this.stream = socket;
    this.reader = this.attach(socket);
    socket.on('error', () => this.close());
    socket.on('close', () => this.close());
  }

  /** Runs the session to the end; never rejects. */
  async run(): Promise<void> {
    try {
      const chosen = await this.withDeadline(this.handshake(), this.config.handshakeTimeoutMs);
      if (chosen) await this.transmission(chosen);
    } catch {
      // Protocol violations, timeouts and socket errors all end the session the same way.
    } finally {
      await this.drain();
      this.close();
    }
  }

  close(): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    this.reader.fail();
    this.stream.destroy();
    this.socket.destroy();
  }

  private attach(stream: net.Socket): AsyncReader {
    const reader = new AsyncReader(MAX_PAYLOAD + 64 * 1024, { pause: () => stream.pause(), resume: () => stream.resume() });
    const onData = (c: Buffer) => reader.push(c);
    stream.on('data', onData);
    this.detach = () => stream.removeListener('data', onData);
    return reader;
  }

  private async withDeadline<T>(work: Promise<T>, ms: number): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        work,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            this.close();
            reject(new Disconnect('handshake timeout'));
          }, ms);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  // ---- handshake ----

  private async handshake(): Promise<Chosen | null> {
    const greeting = Buffer.alloc(18);
    greeting.writeUInt32BE(NBDMAGIC_HI, 0);
    greeting.writeUInt32BE(NBDMAGIC_LO, 4);
    greeting.writeUInt32BE(IHAVEOPT_HI, 8);
    greeting.writeUInt32BE(IHAVEOPT_LO, 12);
    greeting.writeUInt16BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 16);
    this.stream.write(greeting);
    const clientFlags = (await this.reader.read(4)).readUInt32BE(0);
    if (clientFlags & ~(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) throw new Disconnect('unknown client flags');
    this.noZeroes = (clientFlags & FLAG_C_NO_ZEROES) !== 0;

    for (;;) {
      const h = await this.reader.read(16);
      if (h.readUInt32BE(0) !== IHAVEOPT_HI || h.readUInt32BE(4) !== IHAVEOPT_LO) throw new Disconnect('bad option magic');
      const opt = h.readUInt32BE(8);
      const len = h.readUInt32BE(12);
      if (len > MAX_OPTION_DATA) throw new Disconnect('option data too large');
      const data = await this.reader.read(len);

      if (this.config.tls?.required && !this.tlsActive && opt !== OPT_STARTTLS && opt !== OPT_ABORT) {
        if (opt === OPT_EXPORT_NAME) throw new Disconnect('TLS required');
        this.optReply(opt, REP_ERR_TLS_REQD, 'TLS is required');
        continue;
      }
      switch (opt) {
        case OPT_EXPORT_NAME: {
          const name = utf8(data);
          const exp = name === null ? undefined : this.config.lookup(name);
          if (!exp || this.config.isShuttingDown()) throw new Disconnect('unknown export');
          const chosen = this.choose(name!, exp);
          const r = Buffer.alloc(this.noZeroes ? 10 : 134);
          writeU64(new DataView(r.buffer, r.byteOffset, 10), 0, exp.source.size);
          r.writeUInt16BE(this.transmissionFlags(chosen), 8);
          this.stream.write(r);
          return chosen;
        }
        case OPT_ABORT:
          this.optReply(opt, REP_ACK);
          return null;
        case OPT_LIST:
          if (len !== 0) {
            this.optReply(opt, REP_ERR_INVALID, 'LIST takes no data');
            break;
          }
          for (const name of this.config.names()) {
            const n = Buffer.from(name, 'utf8');
            const d = Buffer.allocUnsafe(4 + n.length);
            d.writeUInt32BE(n.length, 0);
            n.copy(d, 4);
            this.optReply(opt, REP_SERVER, d);
          }
          this.optReply(opt, REP_ACK);
          break;
        case OPT_STARTTLS:
          if (!this.config.tls) this.optReply(opt, REP_ERR_POLICY, 'TLS is not configured');
          else if (this.tlsActive || len !== 0) this.optReply(opt, REP_ERR_INVALID);
          else await this.startTls();
          break;
        case OPT_INFO:
        case OPT_GO: {
          const chosen = this.infoOrGo(opt, data);
          if (chosen && opt === OPT_GO) return chosen;
          break;
        }
        case OPT_STRUCTURED_REPLY:
          if (len !== 0) this.optReply(opt, REP_ERR_INVALID, 'STRUCTURED_REPLY takes no data');
          else {
            this.structured = true;
            this.optReply(opt, REP_ACK);
          }
          break;
        case OPT_LIST_META_CONTEXT:
        case OPT_SET_META_CONTEXT:
          this.metaContext(opt, data);
          break;
        default:
          this.optReply(opt, REP_ERR_UNSUP);
      }
    }
  }

  private async startTls(): Promise<void> {
    const tlsConfig = this.config.tls!;
    this.optReply(OPT_STARTTLS, REP_ACK);
    if (this.reader.takeRemaining().length > 0) throw new Disconnect('data after STARTTLS');
    this.detach();
    const secure = new tls.TLSSocket(this.socket, {
      isServer: true,
      secureContext: tlsConfig.context,
      requestCert: tlsConfig.requestCert,
      rejectUnauthorized: tlsConfig.requestCert,
    });
    secure.on('error', () => this.close());
    secure.on('close', () => this.close());
    this.stream = secure;
    this.reader = this.attach(secure);
    await new Promise<void>((resolve, reject) => {
      secure.once('secure', resolve);
      secure.once('error', reject);
      secure.once('close', () => reject(new Disconnect('closed during TLS handshake')));
    });
    this.tlsActive = true;
    // STARTTLS resets all negotiated state.
    this.structured = false;
    this.metaExport = null;
  }

  private infoOrGo(opt: number, data: Buffer): Chosen | null {
    if (data.length < 6) return this.invalid(opt, 'option too short');
    const nameLen = data.readUInt32BE(0);
    if (nameLen > MAX_STRING || 4 + nameLen + 2 > data.length) return this.invalid(opt, 'bad name length');
    const name = utf8(data.subarray(4, 4 + nameLen));
    if (name === null) return this.invalid(opt, 'export name is not UTF-8');
    const count = data.readUInt16BE(4 + nameLen);
    if (data.length !== 4 + nameLen + 2 + count * 2) return this.invalid(opt, 'bad information request count');
    const requests = new Set<number>();
    for (let i = 0; i < count; i++) requests.add(data.readUInt16BE(4 + nameLen + 2 + i * 2));
    const exp = this.config.lookup(name);
    if (!exp) {
      this.optReply(opt, REP_ERR_UNKNOWN, `no export named '${name}'`);
      return null;
    }
    const chosen = this.choose(name, exp);
    const info = Buffer.alloc(12);
    info.writeUInt16BE(INFO_EXPORT, 0);
    writeU64(new DataView(info.buffer, info.byteOffset, 12), 2, exp.source.size);
    info.writeUInt16BE(this.transmissionFlags(chosen), 10);
    this.optReply(opt, REP_INFO, info);
    if (requests.has(INFO_BLOCK_SIZE)) {
      const bs = Buffer.alloc(14);
      bs.writeUInt16BE(INFO_BLOCK_SIZE, 0);
      bs.writeUInt32BE(1, 2);
      bs.writeUInt32BE(4096, 6);
      bs.writeUInt32BE(MAX_PAYLOAD, 10);
      this.optReply(opt, REP_INFO, bs);
    }
    if (requests.has(INFO_NAME)) this.optReply(opt, REP_INFO, Buffer.concat([u16(INFO_NAME), Buffer.from(name, 'utf8')]));
    if (requests.has(INFO_DESCRIPTION) && exp.description) {
      this.optReply(opt, REP_INFO, Buffer.concat([u16(INFO_DESCRIPTION), Buffer.from(exp.description, 'utf8').subarray(0, MAX_STRING)]));
    }
    this.optReply(opt, REP_ACK);
    return chosen;
  }

  private metaContext(opt: number, data: Buffer): void {
    if (!this.structured) {
      this.invalid(opt, 'negotiate structured replies first');
      return;
    }
    const parsed = parseMetaQuery(data);
    if (!parsed) {
      this.invalid(opt, 'malformed metadata context request');
      return;
    }
    if (opt === OPT_SET_META_CONTEXT) this.metaExport = null;
    if (!this.config.lookup(parsed.exportName)) {
      this.optReply(opt, REP_ERR_UNKNOWN, `no export named '${parsed.exportName}'`);
      return;
    }
    const dirty = this.config.lookup(parsed.exportName)!.dirty?.context;
    const offered: Array<[string, number]> = [[BASE_ALLOCATION, BASE_ALLOCATION_ID], ...(dirty ? [[dirty, DIRTY_CONTEXT_ID] as [string, number]] : [])];
    const selected = new Set<number>();
    for (const [context, id] of offered) {
      const namespace = context.slice(0, context.indexOf(':') + 1);
      const matches = opt === OPT_LIST_META_CONTEXT
        ? parsed.queries.length === 0 || parsed.queries.some((q) => q === namespace || q === context)
        : parsed.queries.includes(context);
      if (!matches) continue;
      const name = Buffer.from(context);
      const d = Buffer.allocUnsafe(4 + name.length);
      d.writeUInt32BE(opt === OPT_SET_META_CONTEXT ? id : 0, 0);
      name.copy(d, 4);
      this.optReply(opt, REP_META_CONTEXT, d);
      selected.add(id);
    }
    if (opt === OPT_SET_META_CONTEXT && selected.size > 0) {
      this.metaExport = parsed.exportName;
      this.metaIds = [...selected];
    }
    this.optReply(opt, REP_ACK);
  }

  private choose(name: string, exp: ServedExport): Chosen {
    return { name, exp, writable: isWritable(exp.source) };
  }

  private transmissionFlags(c: Chosen): number {
    let f = TFLAG_HAS_FLAGS | TFLAG_CAN_MULTI_CONN;
    if (c.writable) f |= TFLAG_SEND_FLUSH | TFLAG_SEND_FUA;
    else f |= TFLAG_READ_ONLY;
    return f;
  }

  private invalid(opt: number, message: string): null {
    this.optReply(opt, REP_ERR_INVALID, message);
    return null;
  }

  private optReply(opt: number, type: number, data?: Uint8Array | string): void {
    const payload = typeof data === 'string' ? Buffer.from(data, 'utf8') : (data ?? new Uint8Array(0));
    const h = Buffer.allocUnsafe(20);
    h.writeUInt32BE(OPT_REPLY_MAGIC_HI, 0);
    h.writeUInt32BE(OPT_REPLY_MAGIC_LO, 4);
    h.writeUInt32BE(opt, 8);
    h.writeUInt32BE(type >>> 0, 12);
    h.writeUInt32BE(payload.length, 16);
    this.stream.write(payload.length ? Buffer.concat([h, payload]) : h);
  }

  // ---- transmission ----

  private async transmission(chosen: Chosen): Promise<void> {
    const source = chosen.exp.source;
    const statusOk = this.structured && this.metaExport === chosen.name;
    for (;;) {
      const h = await this.reader.read(28);
      if (h.readUInt32BE(0) !== REQUEST_MAGIC) throw new Disconnect('bad request magic');
      const flags = h.readUInt16BE(4);
      const type = h.readUInt16BE(6);
      const handle = h.subarray(8, 16);
      const offset = h.readUInt32BE(16) * 0x1_0000_0000 + h.readUInt32BE(20);
      const length = h.readUInt32BE(24);
      const inRange = h.readUInt32BE(16) <= 0x1fffff && offset + length <= source.size;

      if (type === CMD_DISC) return;
      if (type === CMD_WRITE) {
        // The payload must be consumed whatever we decide; more than we advertised is a violation.
        if (length > MAX_PAYLOAD) throw new Disconnect('write payload too large');
        const payload = await this.reader.read(length);
        await this.slot();
        if (!chosen.writable) this.finishError(handle, NBD_EPERM, 'export is read-only');
        else if (!inRange) this.finishError(handle, NBD_ENOSPC, 'write past the end of the export');
        else this.run1(handle, async () => {
          const dest = source as unknown as { write(o: number, d: Uint8Array): Promise<void>; flush(): Promise<void> };
          await dest.write(offset, payload);
          if (flags & CMD_FLAG_FUA) await dest.flush();
          return this.simpleOk(handle);
        });
        continue;
      }
      await this.slot();
      if (this.config.isShuttingDown()) {
        this.finishError(handle, NBD_ESHUTDOWN, 'server is shutting down');
        continue;
      }
      switch (type) {
        case CMD_READ:
          if (length === 0 || length > MAX_PAYLOAD || !inRange) this.finishError(handle, NBD_EINVAL, 'read outside the export or too large');
          else this.run1(handle, async () => {
            const data = await readChecked(source, offset, length);
            return { parts: this.readReply(handle, offset, data), written: source.release && (() => source.release!(data)) };
          });
          break;
        case CMD_FLUSH:
          if (!chosen.writable) this.finishError(handle, NBD_EINVAL, 'flush not supported');
          else this.run1(handle, async () => {
            await (source as unknown as { flush(): Promise<void> }).flush();
            return this.simpleOk(handle);
          });
          break;
        case CMD_BLOCK_STATUS:
          if (!statusOk || length === 0 || !inRange) this.finishError(handle, NBD_EINVAL, 'block status not negotiated or out of range');
          else this.run1(handle, async () => {
            const one = (flags & CMD_FLAG_REQ_ONE) !== 0;
            const replies: Array<[number, Extent[]]> = [];
            for (const id of this.metaIds) {
              if (id === BASE_ALLOCATION_ID) replies.push([id, await this.allocation(source, offset, length, one)]);
              else if (chosen.exp.dirty) replies.push([id, limit(sanitize(await chosen.exp.dirty.status(offset, length), offset, length), offset, length, one)]);
            }
            return replies.flatMap(([id, extents], i) => this.statusReply(handle, id, extents, i === replies.length - 1));
          });
          break;
        default:
          this.finishError(handle, NBD_EINVAL, `command ${type} not supported`);
      }
    }
  }

  /** Runs one request; its reply (or an error reply) is written when done. */
  private run1(handle: Buffer, work: () => Promise<Buffer[] | Reply>): void {
    void work().then(
      (reply) => (Array.isArray(reply) ? this.send(reply) : this.send(reply.parts, reply.written)),
      (e: unknown) => {
        const errno = e instanceof NbdRequestError ? e.errno : e instanceof RangeError ? NBD_EINVAL : NBD_EIO;
        this.send(this.errorReply(handle, errno, e instanceof Error ? e.message : String(e)));
      },
    );
  }

  private finishError(handle: Buffer, errno: number, message: string): void {
    this.send(this.errorReply(handle, errno, message));
  }

  /**
   * Writes a reply; once the socket has taken the bytes (or failed to) frees its slot and calls
   * `written`. Writes complete in order, so the last part's callback covers them all.
   */
  private send(parts: Buffer[], written?: () => void): void {
    if (this.closedFlag) {
      this.freeSlot();
      written?.();
      return;
    }
    this.stream.cork();
    for (let i = 0; i < parts.length - 1; i++) this.stream.write(parts[i]!);
    this.stream.write(parts[parts.length - 1]!, () => {
      this.freeSlot();
      written?.();
    });
    this.stream.uncork();
  }

  private simpleOk(handle: Buffer): Buffer[] {
    return [simpleHeader(handle, 0)];
  }

  private readReply(handle: Buffer, offset: number, data: Uint8Array): Buffer[] {
    const bytes = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.length);
    if (!this.structured) return [simpleHeader(handle, 0), bytes];
    const h = chunkHeader(handle, REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, 8 + data.length, 8);
    writeU64(new DataView(h.buffer, h.byteOffset + 20, 8), 0, offset);
    return [h, bytes];
  }

  private statusReply(handle: Buffer, contextId: number, extents: Extent[], last: boolean): Buffer[] {
    const h = chunkHeader(handle, last ? REPLY_FLAG_DONE : 0, REPLY_TYPE_BLOCK_STATUS, 4 + extents.length * 8, 4 + extents.length * 8);
    h.writeUInt32BE(contextId, 20);
    extents.forEach((e, i) => {
      h.writeUInt32BE(e.length, 24 + i * 8);
      h.writeUInt32BE(e.flags, 28 + i * 8);
    });
    return [h];
  }

  private errorReply(handle: Buffer, errno: number, message: string): Buffer[] {
    if (!this.structured) return [simpleHeader(handle, errno)];
    const msg = Buffer.from(message, 'utf8').subarray(0, 1024);
    const h = chunkHeader(handle, REPLY_FLAG_DONE, REPLY_TYPE_ERROR, 6 + msg.length, 6 + msg.length);
    h.writeUInt32BE(errno, 20);
    h.writeUInt16BE(msg.length, 24);
    msg.copy(h, 26);
    return [h];
  }

  /** base:allocation for a prefix of [offset, +length): from the source, or by looking for zero blocks. */
  private async allocation(source: BlockSource, offset: number, length: number, one: boolean): Promise<Extent[]> {
    let extents: Extent[];
    if (source.blockStatus) {
      extents = sanitize(await source.blockStatus(offset, length), offset, length);
    } else {
      const n = Math.min(length, ZERO_SCAN_WINDOW);
      const data = await readChecked(source, offset, n);
      extents = zeroScan(data, offset);
      source.release?.(data);
    }
    if (extents.length === 0) extents = [{ offset, length, flags: 0 }];
    return one ? extents.slice(0, 1) : extents.slice(0, MAX_DESCRIPTORS);
  }

  private slot(): Promise<void> {
    if (this.inflight < this.config.maxInFlight) {
      this.inflight++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.slotWaiters.push(() => {
      this.inflight++;
      resolve();
    }));
  }

  private freeSlot(): void {
    this.inflight--;
    this.slotWaiters.shift()?.();
  }

  private async drain(): Promise<void> {
    // Give in-flight requests a moment to answer before the socket goes (NBD_CMD_DISC semantics).
    for (let i = 0; i < 100 && this.inflight > 0 && !this.closedFlag; i++) await new Promise((r) => setTimeout(r, 20));
    if (!this.closedFlag) this.stream.end();
  }
}

function simpleHeader(handle: Buffer, errno: number): Buffer {
  const h = Buffer.allocUnsafe(16);
  h.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
  h.writeUInt32BE(errno, 4);
  handle.copy(h, 8);
  return h;
}

/** A structured chunk header followed by `extra` payload bytes for the caller to fill. */
function chunkHeader(handle: Buffer, flags: number, type: number, length: number, extra: number): Buffer {
  const h = Buffer.alloc(20 + extra);
  h.writeUInt32BE(STRUCTURED_REPLY_MAGIC, 0);
  h.writeUInt16BE(flags, 4);
  h.writeUInt16BE(type, 6);
  handle.copy(h, 8);
  h.writeUInt32BE(length, 16);
  return h;
}

function u16(n: number): Buffer {
  const b = Buffer.allocUnsafe(2);
  b.writeUInt16BE(n);
  return b;
}

function utf8(bytes: Uint8Array): string | null {
  if (bytes.length > MAX_STRING) return null;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return null;
  }
}

/** A context's extents, never empty, at most one with REQ_ONE, at most MAX_DESCRIPTORS. */
function limit(extents: Extent[], offset: number, length: number, one: boolean): Extent[] {
  const out = extents.length === 0 ? [{ offset, length, flags: 0 }] : extents;
  return one ? out.slice(0, 1) : out.slice(0, MAX_DESCRIPTORS);
}

function parseMetaQuery(data: Buffer): { exportName: string; queries: string[] } | null {
  let at = 0;
  const str = (): string | null => {
    if (at + 4 > data.length) return null;
    const n = data.readUInt32BE(at);
    at += 4;
    if (n > MAX_STRING || at + n > data.length) return null;
    const s = utf8(data.subarray(at, at + n));
    at += n;
    return s;
  };
  const exportName = str();
  if (exportName === null || at + 4 > data.length) return null;
  const count = data.readUInt32BE(at);
  at += 4;
  if (count > 1024) return null;
  const queries: string[] = [];
  for (let i = 0; i < count; i++) {
    const q = str();
    if (q === null) return null;
    queries.push(q);
  }
  return at === data.length ? { exportName, queries } : null;
}

/** Keeps a source's extents consecutive from `offset`, non-empty and inside the range. */
function sanitize(extents: readonly Extent[], offset: number, length: number): Extent[] {
  const out: Extent[] = [];
  const end = offset + length;
  let at = offset;
  for (const e of extents) {
    if (e.offset !== at || e.length <= 0 || at >= end) break;
    const len = Math.min(e.length, end - at, 0xffffffff);
    out.push({ offset: at, length: len, flags: (e.flags & (STATE_HOLE | STATE_ZERO)) >>> 0 });
    at += len;
  }
  return out;
}

/** Extents of `data` (read at `offset`): zero granules as HOLE|ZERO, the rest as data. */
function zeroScan(data: Uint8Array, offset: number): Extent[] {
  const out: Extent[] = [];
  const buf = Buffer.from(data.buffer, data.byteOffset, data.length);
  let at = 0;
  while (at < buf.length) {
    // Granules are aligned to the disk, not to the request.
    const next = Math.min(buf.length, (Math.floor((offset + at) / ZERO_GRANULE) + 1) * ZERO_GRANULE - offset);
    const zero = buf.compare(ZEROES, 0, next - at, at, next) === 0;
    const flags = zero ? STATE_HOLE | STATE_ZERO : 0;
    const last = out[out.length - 1];
    if (last && last.flags === flags) out[out.length - 1] = { offset: last.offset, length: last.length + next - at, flags };
    else out.push({ offset: offset + at, length: next - at, flags });
    at = next;
  }
  return out;
}
