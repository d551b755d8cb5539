// The client's transmission-phase parser: turns the server's byte stream into completed
// requests. It is strict on purpose, because a backup that silently reads wrong bytes is
// worse than one that fails: every length is checked against the request before anything
// is buffered, READ chunks must lie inside the request and never overlap, a reply that
// claims success must cover every byte, and any violation ends the connection with an
// NbdProtocolError. READ payloads are written straight into the request's destination.
import type { ByteSink } from './byte-pump.ts';
import { RangeSet } from './range-set.ts';
import {
  CMD_BLOCK_STATUS, CMD_READ, MAX_STRING, NbdProtocolError, NbdRequestError, REPLY_FLAG_DONE,
  REPLY_TYPE_BLOCK_STATUS, REPLY_TYPE_ERROR, REPLY_TYPE_ERROR_BIT, REPLY_TYPE_ERROR_OFFSET,
  REPLY_TYPE_NONE, REPLY_TYPE_OFFSET_DATA, REPLY_TYPE_OFFSET_HOLE, SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_MAGIC, decodeMessage, errnoName, readU64, type Extent,
} from './protocol.ts';

/** A request waiting for its reply; owned by the client, filled in by the parser. */
export interface PendingRequest {
  readonly command: number;
  readonly offset: number;
  readonly length: number;
  /** READ destination, exactly `length` bytes. */
  readonly dest: Uint8Array | null;
  /** For BLOCK_STATUS: the context id whose extents the caller wants. */
  readonly contextId: number;
  covered: RangeSet | null;
  error: Error | null;
  extents: Map<number, Extent[]> | null;
}

export interface ReplyHandler {
  /** The request with this handle, or undefined if none is in flight. */
  find(handleHi: number, handleLo: number): PendingRequest | undefined;
  /** The reply is complete: success when `error` is null. The parser has finished with `req`. */
  done(handleLo: number, req: PendingRequest, error: Error | null): void;
  /** The stream is broken; nothing more will be parsed. */
  fatal(error: NbdProtocolError): void;
}

export interface ReplyParserOptions {
  readonly structured: boolean;
  /** Context ids granted by NBD_OPT_SET_META_CONTEXT. */
  readonly contextIds: ReadonlySet<number>;
  /** Largest BLOCK_STATUS chunk accepted (bounds memory). */
  readonly maxStatusPayload: number;
}

const STAGING = 256 * 1024;
/** Below this many outstanding payload bytes, reading into staging is cheaper than a direct read. */
const DIRECT_MIN = 16 * 1024;
/** A structured reply chunk's header and an OFFSET_DATA chunk's offset (a simple reply's header is shorter). */
const HEADER_PEEK = 28;

const S_HDR = 0;
const S_DATA = 1;
const S_PAYLOAD = 2;
const S_DEAD = 3;

export class ReplyParser implements ByteSink {
  private readonly staging = Buffer.allocUnsafe(STAGING);
  private readonly hdr = new Uint8Array(20);
  private readonly hdrView = new DataView(this.hdr.buffer);
  private hdrLen = 0;
  private hdrNeed = 4;
  private state = S_HDR;
  private lastTargetDirect = false;
  /** The last READ data was large enough to land directly: the next probably is too. */
  private expectBigData = false;

  // The message being parsed.
  private req: PendingRequest | null = null;
  private handleLo = 0;
  private chunkFlags = 0;
  private chunkType = 0;
  private chunkLength = 0;
  private structuredData = false;
  private payload = new Uint8Array(0);
  private payloadLen = 0;
  private dataDest: Uint8Array = this.staging;
  private dataPos = 0;
  private dataRemaining = 0;

  constructor(private readonly handler: ReplyHandler, private readonly options: ReplyParserOptions) {}

  target(): Uint8Array {
    if (this.state === S_DATA && this.dataRemaining >= DIRECT_MIN) {
      this.lastTargetDirect = true;
      return this.dataDest.subarray(this.dataPos, this.dataPos + this.dataRemaining);
    }
    this.lastTargetDirect = false;
    if (this.expectBigData) {
      // Large reads are coming: take only the next reply's header (and an OFFSET_DATA chunk's
      // offset), so its data lands in the destination instead of here and then copied.
      if (this.state === S_HDR) return this.staging.subarray(0, HEADER_PEEK);
      if (this.state === S_PAYLOAD && this.chunkType === REPLY_TYPE_OFFSET_DATA) return this.staging.subarray(0, this.payload.length - this.payloadLen);
    }
    return this.staging;
  }

  commit(n: number): void {
    try {
      if (this.lastTargetDirect) {
        this.lastTargetDirect = false;
        this.dataPos += n;
        this.dataRemaining -= n;
        if (this.dataRemaining === 0) this.endData();
      } else {
        this.consume(this.staging, n);
      }
    } catch (e) {
      this.die(e instanceof NbdProtocolError ? e : new NbdProtocolError(`reply parser failed: ${String(e)}`));
    }
  }

  /** Stops parsing (the connection is going away). */
  stop(): void {
    this.state = S_DEAD;
  }

  private die(error: NbdProtocolError): void {
    if (this.state === S_DEAD) return;
    this.state = S_DEAD;
    this.handler.fatal(error);
  }

  private consume(buf: Uint8Array, end: number): void {
    let pos = 0;
    while (pos < end) {
      switch (this.state) {
        case S_HDR: {
          const k = Math.min(this.hdrNeed - this.hdrLen, end - pos);
          this.hdr.set(buf.subarray(pos, pos + k), this.hdrLen);
          this.hdrLen += k;
          pos += k;
          if (this.hdrLen === this.hdrNeed) this.onHeaderBytes();
          break;
        }
        case S_DATA: {
          const k = Math.min(this.dataRemaining, end - pos);
          this.dataDest.set(buf.subarray(pos, pos + k), this.dataPos);
          this.dataPos += k;
          this.dataRemaining -= k;
          pos += k;
          if (this.dataRemaining === 0) this.endData();
          break;
        }
        case S_PAYLOAD: {
          const k = Math.min(this.payload.length - this.payloadLen, end - pos);
          this.payload.set(buf.subarray(pos, pos + k), this.payloadLen);
          this.payloadLen += k;
          pos += k;
          if (this.payloadLen === this.payload.length) this.onPayload();
          break;
        }
        default:
          return;
      }
    }
  }

  private onHeaderBytes(): void {
    if (this.hdrNeed === 4) {
      const magic = this.hdrView.getUint32(0);
      if (magic === STRUCTURED_REPLY_MAGIC) {
        if (!this.options.structured) throw new NbdProtocolError('structured reply chunk, but structured replies were not negotiated');
        this.hdrNeed = 20;
      } else if (magic === SIMPLE_REPLY_MAGIC) {
        this.hdrNeed = 16;
      } else {
        throw new NbdProtocolError(`bad reply magic 0x${magic.toString(16).padStart(8, '0')}`);
      }
      return;
    }
    const simple = this.hdrNeed === 16;
    this.hdrLen = 0;
    this.hdrNeed = 4;
    if (simple) this.onSimpleReply();
    else this.onChunkHeader();
  }

  private lookup(at: number): PendingRequest {
    const hi = this.hdrView.getUint32(at);
    const lo = this.hdrView.getUint32(at + 4);
    const req = this.handler.find(hi, lo);
    if (!req) {
      throw new NbdProtocolError(`reply for unknown handle ${hi.toString(16)}:${lo.toString(16)}`);
    }
    this.handleLo = lo;
    return req;
  }

  private onSimpleReply(): void {
    const errno = this.hdrView.getUint32(4);
    const req = this.lookup(8);
    this.req = req;
    if (errno !== 0) {
      this.finish(new NbdRequestError(`server error ${errnoName(errno)}`, errno));
      return;
    }
    if (req.command === CMD_READ) {
      if (this.options.structured) throw new NbdProtocolError('simple reply to READ although structured replies were negotiated');
      this.structuredData = false;
      this.startData(req.dest!, 0, req.length);
      return;
    }
    if (req.command === CMD_BLOCK_STATUS) throw new NbdProtocolError('simple success reply to BLOCK_STATUS');
    this.finish(null);
  }

  private onChunkHeader(): void {
    const v = this.hdrView;
    const flags = v.getUint16(4);
    const type = v.getUint16(6);
    const req = this.lookup(8);
    const length = v.getUint32(16);
    this.req = req;
    this.chunkFlags = flags;
    this.chunkType = type;
    this.chunkLength = length;
    const isRead = req.command === CMD_READ;
    const isStatus = req.command === CMD_BLOCK_STATUS;
    switch (type) {
      case REPLY_TYPE_NONE:
        if (length !== 0) throw new NbdProtocolError(`NONE chunk with length ${length}`);
        if (!(flags & REPLY_FLAG_DONE)) throw new NbdProtocolError('NONE chunk without the DONE flag');
        this.finish(null);
        return;
      case REPLY_TYPE_OFFSET_DATA:
        if (!isRead) throw new NbdProtocolError('OFFSET_DATA chunk in reply to a non-READ request');
        if (length < 9 || length - 8 > req.length) throw new NbdProtocolError(`OFFSET_DATA chunk length ${length} invalid for a ${req.length}-byte read`);
        this.expectPayload(8);
        return;
      case REPLY_TYPE_OFFSET_HOLE:
        if (!isRead) throw new NbdProtocolError('OFFSET_HOLE chunk in reply to a non-READ request');
        if (length !== 12) throw new NbdProtocolError(`OFFSET_HOLE chunk length ${length}, expected 12`);
        this.expectPayload(12);
        return;
      case REPLY_TYPE_BLOCK_STATUS:
        if (!isStatus) throw new NbdProtocolError('BLOCK_STATUS chunk in reply to a non-BLOCK_STATUS request');
        if (length < 12 || (length - 4) % 8 !== 0) throw new NbdProtocolError(`BLOCK_STATUS chunk length ${length} invalid`);
        if (length > this.options.maxStatusPayload) throw new NbdProtocolError(`BLOCK_STATUS chunk of ${length} bytes exceeds the ${this.options.maxStatusPayload}-byte limit`);
        this.expectPayload(length);
        return;
      case REPLY_TYPE_ERROR:
        if (length < 6 || length > 6 + MAX_STRING) throw new NbdProtocolError(`ERROR chunk length ${length} invalid`);
        this.expectPayload(length);
        return;
      case REPLY_TYPE_ERROR_OFFSET:
        if (length < 14 || length > 14 + MAX_STRING) throw new NbdProtocolError(`ERROR_OFFSET chunk length ${length} invalid`);
        this.expectPayload(length);
        return;
      default:
        if (type & REPLY_TYPE_ERROR_BIT) {
          if (length < 6 || length > 6 + MAX_STRING + 1024) throw new NbdProtocolError(`error chunk type ${type} length ${length} invalid`);
          this.expectPayload(length);
          return;
        }
        throw new NbdProtocolError(`unknown structured reply type ${type}`);
    }
  }

  private expectPayload(n: number): void {
    this.payload = new Uint8Array(n);
    this.payloadLen = 0;
    this.state = S_PAYLOAD;
  }

  private onPayload(): void {
    this.state = S_HDR;
    const req = this.req!;
    const p = this.payload;
    const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
    const done = (this.chunkFlags & REPLY_FLAG_DONE) !== 0;
    switch (this.chunkType) {
      case REPLY_TYPE_OFFSET_DATA: {
        const dataLen = this.chunkLength - 8;
        const rel = this.claimRange(readU64(v, 0, 'OFFSET_DATA offset'), dataLen, 'OFFSET_DATA');
        this.structuredData = true;
        this.startData(req.dest!, rel, dataLen);
        return;
      }
      case REPLY_TYPE_OFFSET_HOLE: {
        const size = v.getUint32(8);
        if (size === 0) throw new NbdProtocolError('OFFSET_HOLE chunk with zero size');
        const rel = this.claimRange(readU64(v, 0, 'OFFSET_HOLE offset'), size, 'OFFSET_HOLE');
        req.dest!.fill(0, rel, rel + size);
        break;
      }
      case REPLY_TYPE_BLOCK_STATUS:
        this.onBlockStatus(req, v);
        break;
      case REPLY_TYPE_ERROR_OFFSET: {
        const { errno, message, msgLen } = readError(v, 14);
        if (this.chunkLength !== 14 + msgLen) throw new NbdProtocolError('ERROR_OFFSET chunk length does not match its message');
        const off = readU64(v, 6 + msgLen, 'error offset');
        if (off < req.offset || off >= req.offset + Math.max(req.length, 1)) throw new NbdProtocolError('ERROR_OFFSET outside the request');
        req.error ??= new NbdRequestError(`server error ${errnoName(errno)} at offset ${off}${message ? `: ${message}` : ''}`, errno);
        break;
      }
      default: {
        // NBD_REPLY_TYPE_ERROR and unknown error types share the same prefix.
        const { errno, message } = readError(v, 6);
        req.error ??= new NbdRequestError(`server error ${errnoName(errno)}${message ? `: ${message}` : ''}`, errno);
        break;
      }
    }
    if (done) this.finish(null);
  }

  /** Validates a content chunk's range against the request and records it; returns the offset within the request. */
  private claimRange(offset: number, length: number, what: string): number {
    const req = this.req!;
    const rel = offset - req.offset;
    if (rel < 0 || rel + length > req.length) {
      throw new NbdProtocolError(`${what} chunk [${offset}, +${length}) lies outside the request [${req.offset}, +${req.length})`);
    }
    req.covered ??= new RangeSet();
    if (!req.covered.add(rel, rel + length)) throw new NbdProtocolError(`${what} chunk [${offset}, +${length}) overlaps an earlier chunk`);
    return rel;
  }

  private onBlockStatus(req: PendingRequest, v: DataView): void {
    const id = v.getUint32(0);
    if (!this.options.contextIds.has(id)) throw new NbdProtocolError(`BLOCK_STATUS for unknown context id ${id}`);
    req.extents ??= new Map();
    if (req.extents.has(id)) throw new NbdProtocolError(`duplicate BLOCK_STATUS chunk for context id ${id}`);
    const extents: Extent[] = [];
    const end = req.offset + req.length;
    let at = req.offset;
    const count = (v.byteLength - 4) / 8;
    for (let i = 0; i < count; i++) {
      const length = v.getUint32(4 + i * 8);
      const flags = v.getUint32(8 + i * 8);
      if (length === 0) throw new NbdProtocolError('BLOCK_STATUS descriptor with zero length');
      if (at >= end) throw new NbdProtocolError('BLOCK_STATUS descriptors extend past the request');
      // Only the final descriptor may run past the request; it is clamped.
      const clamped = Math.min(length, end - at);
      if (clamped < length && i !== count - 1) throw new NbdProtocolError('BLOCK_STATUS descriptors extend past the request');
      extents.push({ offset: at, length: clamped, flags });
      at += clamped;
    }
    req.extents.set(id, extents);
  }

  private startData(dest: Uint8Array, at: number, length: number): void {
    this.expectBigData = length >= DIRECT_MIN;
    this.dataDest = dest;
    this.dataPos = at;
    this.dataRemaining = length;
    this.state = S_DATA;
  }

  private endData(): void {
    this.state = S_HDR;
    this.dataDest = this.staging;
    if (!this.structuredData || (this.chunkFlags & REPLY_FLAG_DONE)) this.finish(null);
  }

  private finish(error: Error | null): void {
    const req = this.req!;
    this.req = null;
    this.payload = new Uint8Array(0);
    let outcome: Error | null = error ?? req.error;
    if (!outcome && this.options.structured) {
      if (req.command === CMD_READ && (req.covered?.covered ?? 0) !== req.length) {
        throw new NbdProtocolError(`READ reply ended after ${req.covered?.covered ?? 0} of ${req.length} bytes`);
      }
      if (req.command === CMD_BLOCK_STATUS && !req.extents?.has(req.contextId)) {
        throw new NbdProtocolError('BLOCK_STATUS reply ended without extents for the requested context');
      }
    }
    if (outcome === undefined) outcome = null;
    this.handler.done(this.handleLo, req, outcome);
  }
}

function readError(v: DataView, minLength: number): { errno: number; message: string; msgLen: number } {
  const errno = v.getUint32(0);
  if (errno === 0) throw new NbdProtocolError('error chunk with errno 0');
  const msgLen = v.getUint16(4);
  if (msgLen > v.byteLength - minLength) throw new NbdProtocolError('error chunk message longer than the chunk');
  const message = decodeMessage(new Uint8Array(v.buffer, v.byteOffset + 6, msgLen));
  return { errno, message, msgLen };
}
