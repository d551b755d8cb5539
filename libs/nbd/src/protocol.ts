// NBD wire constants and the errors both sides raise. Values follow the NBD protocol
// specification (NetworkBlockDevice/nbd doc/proto.md); all integers are big-endian.

export const NBDMAGIC_HI = 0x4e42444d; // 'NBDM'
export const NBDMAGIC_LO = 0x41474943; // 'AGIC'
export const IHAVEOPT_HI = 0x49484156; // 'IHAV'
export const IHAVEOPT_LO = 0x454f5054; // 'EOPT'
export const OPT_REPLY_MAGIC_HI = 0x0003e889;
export const OPT_REPLY_MAGIC_LO = 0x045565a9;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

// Handshake flags (server) and client flags.
export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;
export const FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_C_NO_ZEROES = 1 << 1;

// Transmission flags.
export const TFLAG_HAS_FLAGS = 1 << 0;
export const TFLAG_READ_ONLY = 1 << 1;
export const TFLAG_SEND_FLUSH = 1 << 2;
export const TFLAG_SEND_FUA = 1 << 3;
export const TFLAG_ROTATIONAL = 1 << 4;
export const TFLAG_SEND_TRIM = 1 << 5;
export const TFLAG_SEND_WRITE_ZEROES = 1 << 6;
export const TFLAG_SEND_DF = 1 << 7;
export const TFLAG_CAN_MULTI_CONN = 1 << 8;

// Options.
export const OPT_EXPORT_NAME = 1;
export const OPT_ABORT = 2;
export const OPT_LIST = 3;
export const OPT_STARTTLS = 5;
export const OPT_INFO = 6;
export const OPT_GO = 7;
export const OPT_STRUCTURED_REPLY = 8;
export const OPT_LIST_META_CONTEXT = 9;
export const OPT_SET_META_CONTEXT = 10;

// Option replies.
export const REP_ACK = 1;
export const REP_SERVER = 2;
export const REP_INFO = 3;
export const REP_META_CONTEXT = 4;
export const REP_ERR_BIT = 0x80000000;
export const REP_ERR_UNSUP = REP_ERR_BIT + 1;
export const REP_ERR_POLICY = REP_ERR_BIT + 2;
export const REP_ERR_INVALID = REP_ERR_BIT + 3;
export const REP_ERR_PLATFORM = REP_ERR_BIT + 4;
export const REP_ERR_TLS_REQD = REP_ERR_BIT + 5;
export const REP_ERR_UNKNOWN = REP_ERR_BIT + 6;
export const REP_ERR_SHUTDOWN = REP_ERR_BIT + 7;
export const REP_ERR_BLOCK_SIZE_REQD = REP_ERR_BIT + 8;
export const REP_ERR_TOO_BIG = REP_ERR_BIT + 9;

// NBD_OPT_INFO / NBD_OPT_GO information types.
export const INFO_EXPORT = 0;
export const INFO_NAME = 1;
export const INFO_DESCRIPTION = 2;
export const INFO_BLOCK_SIZE = 3;

// Commands and command flags.
export const CMD_READ = 0;
export const CMD_WRITE = 1;
export const CMD_DISC = 2;
export const CMD_FLUSH = 3;
export const CMD_TRIM = 4;
export const CMD_CACHE = 5;
export const CMD_WRITE_ZEROES = 6;
export const CMD_BLOCK_STATUS = 7;
export const CMD_FLAG_FUA = 1 << 0;
export const CMD_FLAG_NO_HOLE = 1 << 1;
export const CMD_FLAG_DF = 1 << 2;
export const CMD_FLAG_REQ_ONE = 1 << 3;

// Structured reply chunks.
export const REPLY_FLAG_DONE = 1 << 0;
export const REPLY_TYPE_NONE = 0;
export const REPLY_TYPE_OFFSET_DATA = 1;
export const REPLY_TYPE_OFFSET_HOLE = 2;
export const REPLY_TYPE_BLOCK_STATUS = 5;
export const REPLY_TYPE_ERROR_BIT = 0x8000;
export const REPLY_TYPE_ERROR = REPLY_TYPE_ERROR_BIT + 1;
export const REPLY_TYPE_ERROR_OFFSET = REPLY_TYPE_ERROR_BIT + 2;

// base:allocation flags.
export const STATE_HOLE = 1 << 0;
export const STATE_ZERO = 1 << 1;
// qemu:dirty-bitmap:<name> flag.
export const STATE_DIRTY = 1 << 0;

export const BASE_ALLOCATION = 'base:allocation';
export const dirtyBitmapContext = (bitmap: string): string => `qemu:dirty-bitmap:${bitmap}`;

// Errors on the wire.
export const NBD_EPERM = 1;
export const NBD_EIO = 5;
export const NBD_ENOMEM = 12;
export const NBD_EINVAL = 22;
export const NBD_ENOSPC = 28;
export const NBD_EOVERFLOW = 75;
export const NBD_ENOTSUP = 95;
export const NBD_ESHUTDOWN = 108;

const ERRNO_NAMES: Record<number, string> = {
  [NBD_EPERM]: 'EPERM', [NBD_EIO]: 'EIO', [NBD_ENOMEM]: 'ENOMEM', [NBD_EINVAL]: 'EINVAL',
  [NBD_ENOSPC]: 'ENOSPC', [NBD_EOVERFLOW]: 'EOVERFLOW', [NBD_ENOTSUP]: 'ENOTSUP', [NBD_ESHUTDOWN]: 'ESHUTDOWN',
};
export const errnoName = (errno: number): string => ERRNO_NAMES[errno] ?? `errno ${errno}`;

/** Largest request payload either side accepts (QEMU's limit too). */
export const MAX_PAYLOAD = 32 * 1024 * 1024;
/** Longest string the spec allows (export names, messages, context names). */
export const MAX_STRING = 4096;

/** One run of a metadata context: `flags` as defined by the context (see STATE_*). */
export interface Extent {
  readonly offset: number;
  readonly length: number;
  readonly flags: number;
}

/**
 * The peer broke the protocol (wrong magic, truncated or oversize message, unknown handle,
 * overlapping chunks, …). The connection is unusable afterwards and has been closed.
 */
export class NbdProtocolError extends Error {
  override readonly name = 'NbdProtocolError';
}

/** The server refused a request or an option, with its errno or option-reply code. */
export class NbdRequestError extends Error {
  override readonly name = 'NbdRequestError';
  constructor(message: string, readonly errno: number) {
    super(message);
  }
}

/** An option was refused during the handshake (export unknown, TLS required, …). */
export class NbdOptionError extends Error {
  override readonly name = 'NbdOptionError';
  constructor(message: string, readonly reply: number) {
    super(message);
  }
}

/** A handshake or a request took longer than allowed; the connection has been closed. */
export class NbdTimeoutError extends Error {
  override readonly name = 'NbdTimeoutError';
}

/** The connection ended (closed by either side) while work was pending. */
export class NbdConnectionClosedError extends Error {
  override readonly name = 'NbdConnectionClosedError';
}

export function optionReplyName(reply: number): string {
  switch (reply) {
    case REP_ERR_UNSUP: return 'unsupported';
    case REP_ERR_POLICY: return 'forbidden by policy';
    case REP_ERR_INVALID: return 'invalid';
    case REP_ERR_PLATFORM: return 'unsupported on platform';
    case REP_ERR_TLS_REQD: return 'TLS required';
    case REP_ERR_UNKNOWN: return 'unknown export';
    case REP_ERR_SHUTDOWN: return 'server shutting down';
    case REP_ERR_BLOCK_SIZE_REQD: return 'block size negotiation required';
    case REP_ERR_TOO_BIG: return 'request too big';
    default: return `reply 0x${reply.toString(16)}`;
  }
}

/** Reads a u64 that must fit a JS safe integer (disk sizes and offsets always do). */
export function readU64(view: DataView, at: number, what: string): number {
  const hi = view.getUint32(at);
  const lo = view.getUint32(at + 4);
  if (hi > 0x1fffff) throw new NbdProtocolError(`${what} too large (${hi.toString(16)}${lo.toString(16).padStart(8, '0')}h)`);
  return hi * 0x1_0000_0000 + lo;
}

export function writeU64(view: DataView, at: number, value: number): void {
  view.setUint32(at, Math.floor(value / 0x1_0000_0000));
  view.setUint32(at + 4, value >>> 0);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
export function decodeString(bytes: Uint8Array, what: string): string {
  if (bytes.length > MAX_STRING) throw new NbdProtocolError(`${what} longer than ${MAX_STRING} bytes`);
  try {
    return utf8.decode(bytes);
  } catch {
    throw new NbdProtocolError(`${what} is not valid UTF-8`);
  }
}

/** Lossy decode for human-readable error messages: never throws. */
export function decodeMessage(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes.subarray(0, MAX_STRING));
}
