// The client side of the fixed-newstyle handshake: greeting, optional STARTTLS, structured
// replies, metadata contexts, then NBD_OPT_GO (falling back to NBD_OPT_EXPORT_NAME on
// servers that predate it). Every reply is length-checked before it is read.
import {
  FLAG_C_FIXED_NEWSTYLE, FLAG_C_NO_ZEROES, FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES, IHAVEOPT_HI, IHAVEOPT_LO,
  INFO_BLOCK_SIZE, INFO_EXPORT, MAX_STRING, NBDMAGIC_HI, NBDMAGIC_LO, NbdOptionError, NbdProtocolError,
  OPT_ABORT, OPT_EXPORT_NAME, OPT_GO, OPT_INFO, OPT_REPLY_MAGIC_HI, OPT_REPLY_MAGIC_LO, OPT_SET_META_CONTEXT, OPT_STARTTLS,
  OPT_STRUCTURED_REPLY, REP_ACK, REP_ERR_BIT, REP_ERR_TLS_REQD, REP_ERR_UNSUP, REP_INFO, REP_META_CONTEXT, TFLAG_HAS_FLAGS,
  decodeMessage, decodeString, optionReplyName, readU64,
} from './protocol.ts';

/** The byte channel the handshake runs over (swapped for a TLS one after STARTTLS). */
export interface HandshakeChannel {
  read(n: number): Promise<Buffer>;
  write(bytes: Uint8Array): void;
}

export interface BlockSizes {
  readonly minimum: number;
  readonly preferred: number;
  readonly maximum: number;
}

export interface NegotiatedExport {
  readonly size: number;
  readonly transmissionFlags: number;
  readonly structuredReplies: boolean;
  /** Granted metadata contexts by name → id. */
  readonly contexts: ReadonlyMap<string, number>;
  readonly blockSizes: BlockSizes;
}

export interface HandshakeOptions {
  readonly exportName: string;
  readonly metaContexts: readonly string[];
  /** Upgrades the channel after the server acknowledged STARTTLS; absent: no TLS. */
  readonly startTls?: () => Promise<HandshakeChannel>;
  /** Ask with NBD_OPT_INFO and abort instead of entering transmission with NBD_OPT_GO. */
  readonly infoOnly?: boolean;
}

/** Option replies larger than this are refused (the largest legitimate one is a 4 KiB string). */
const MAX_OPTION_REPLY = 16 * 1024;
const DEFAULT_BLOCK_SIZES: BlockSizes = { minimum: 1, preferred: 4096, maximum: 32 * 1024 * 1024 };

const enc = new TextEncoder();

export async function clientHandshake(channel: HandshakeChannel, options: HandshakeOptions): Promise<NegotiatedExport> {
  let ch = channel;
  const greeting = await ch.read(18);
  if (greeting.readUInt32BE(0) !== NBDMAGIC_HI || greeting.readUInt32BE(4) !== NBDMAGIC_LO) {
    throw new NbdProtocolError('not an NBD server (bad NBDMAGIC)');
  }
  if (greeting.readUInt32BE(8) !== IHAVEOPT_HI || greeting.readUInt32BE(12) !== IHAVEOPT_LO) {
    throw new NbdProtocolError('server does not speak newstyle negotiation (oldstyle is not supported)');
  }
  const serverFlags = greeting.readUInt16BE(16);
  if (!(serverFlags & FLAG_FIXED_NEWSTYLE)) throw new NbdProtocolError('server does not support fixed newstyle negotiation');
  const noZeroes = (serverFlags & FLAG_NO_ZEROES) !== 0;
  const clientFlags = Buffer.alloc(4);
  clientFlags.writeUInt32BE(FLAG_C_FIXED_NEWSTYLE | (noZeroes ? FLAG_C_NO_ZEROES : 0));
  ch.write(clientFlags);

  if (options.startTls) {
    sendOption(ch, OPT_STARTTLS, new Uint8Array(0));
    const reply = await readOptionReply(ch, OPT_STARTTLS);
    if (reply.type !== REP_ACK) {
      throw new NbdOptionError(`server refused STARTTLS (${optionReplyName(reply.type)})${messageOf(reply)}`, reply.type);
    }
    ch = await options.startTls();
  }

  sendOption(ch, OPT_STRUCTURED_REPLY, new Uint8Array(0));
  const sr = await readOptionReply(ch, OPT_STRUCTURED_REPLY);
  let structuredReplies = false;
  if (sr.type === REP_ACK) structuredReplies = true;
  else if (sr.type === REP_ERR_TLS_REQD) throw new NbdOptionError(`server requires TLS (${optionReplyName(sr.type)})${messageOf(sr)}`, sr.type);
  else if (!(sr.type & REP_ERR_BIT)) throw new NbdProtocolError(`unexpected reply ${sr.type} to STRUCTURED_REPLY`);

  const contexts = new Map<string, number>();
  if (options.metaContexts.length > 0) {
    if (!structuredReplies) throw new NbdOptionError('server does not support structured replies, so no metadata contexts', sr.type);
    sendOption(ch, OPT_SET_META_CONTEXT, metaContextRequest(options.exportName, options.metaContexts));
    for (;;) {
      const r = await readOptionReply(ch, OPT_SET_META_CONTEXT);
      if (r.type === REP_ACK) break;
      if (r.type === REP_META_CONTEXT) {
        if (r.data.length < 5) throw new NbdProtocolError('META_CONTEXT reply too short');
        const id = r.data.readUInt32BE(0);
        const name = decodeString(r.data.subarray(4), 'context name');
        if (!options.metaContexts.includes(name)) throw new NbdProtocolError(`server granted a context that was not asked for: ${name}`);
        if (contexts.has(name) || [...contexts.values()].includes(id)) throw new NbdProtocolError(`duplicate META_CONTEXT reply for ${name}`);
        contexts.set(name, id);
        continue;
      }
      if (r.type & REP_ERR_BIT) throw new NbdOptionError(`server refused metadata contexts (${optionReplyName(r.type)})${messageOf(r)}`, r.type);
      throw new NbdProtocolError(`unexpected reply ${r.type} to SET_META_CONTEXT`);
    }
    const missing = options.metaContexts.filter((c) => !contexts.has(c));
    if (missing.length > 0) {
      throw new NbdOptionError(`server does not offer metadata context ${missing.join(', ')} on export '${options.exportName}'`, REP_ACK);
    }
  }

  const go = options.infoOnly ? OPT_INFO : OPT_GO;
  sendOption(ch, go, goRequest(options.exportName));
  let size = -1;
  let transmissionFlags = 0;
  let blockSizes = DEFAULT_BLOCK_SIZES;
  for (;;) {
    const r = await readOptionReply(ch, go);
    if (r.type === REP_ACK) break;
    if (r.type === REP_INFO) {
      if (r.data.length < 2) throw new NbdProtocolError('INFO reply too short');
      const info = r.data.readUInt16BE(0);
      if (info === INFO_EXPORT) {
        if (r.data.length !== 12) throw new NbdProtocolError(`INFO_EXPORT reply of ${r.data.length} bytes, expected 12`);
        size = readU64(new DataView(r.data.buffer, r.data.byteOffset, 12), 2, 'export size');
        transmissionFlags = r.data.readUInt16BE(10);
      } else if (info === INFO_BLOCK_SIZE) {
        if (r.data.length !== 14) throw new NbdProtocolError(`INFO_BLOCK_SIZE reply of ${r.data.length} bytes, expected 14`);
        blockSizes = checkBlockSizes(r.data.readUInt32BE(2), r.data.readUInt32BE(6), r.data.readUInt32BE(10));
      }
      continue;
    }
    if (r.type === REP_ERR_UNSUP && !options.infoOnly) {
      // A server that predates NBD_OPT_GO: the old way, which cannot report errors.
      return exportNameFallback(ch, options.exportName, noZeroes, structuredReplies, contexts);
    }
    if (r.type & REP_ERR_BIT) {
      throw new NbdOptionError(`server refused export '${options.exportName}' (${optionReplyName(r.type)})${messageOf(r)}`, r.type);
    }
    throw new NbdProtocolError(`unexpected reply ${r.type} to GO`);
  }
  if (size < 0) throw new NbdProtocolError('server accepted GO without sending the export size');
  if (!(transmissionFlags & TFLAG_HAS_FLAGS)) throw new NbdProtocolError('transmission flags lack NBD_FLAG_HAS_FLAGS');
  if (options.infoOnly) sendAbort(ch);
  return { size, transmissionFlags, structuredReplies, contexts, blockSizes };
}

/** Soft disconnect during option haggling. */
export function sendAbort(ch: HandshakeChannel): void {
  sendOption(ch, OPT_ABORT, new Uint8Array(0));
}

async function exportNameFallback(
  ch: HandshakeChannel, exportName: string, noZeroes: boolean, structuredReplies: boolean, contexts: Map<string, number>,
): Promise<NegotiatedExport> {
  sendOption(ch, OPT_EXPORT_NAME, enc.encode(exportName));
  const r = await ch.read(noZeroes ? 10 : 134);
  const size = readU64(new DataView(r.buffer, r.byteOffset, 10), 0, 'export size');
  const transmissionFlags = r.readUInt16BE(8);
  return { size, transmissionFlags, structuredReplies, contexts, blockSizes: DEFAULT_BLOCK_SIZES };
}

function checkBlockSizes(minimum: number, preferred: number, maximum: number): BlockSizes {
  const pow2 = (n: number) => n > 0 && (n & (n - 1)) === 0;
  if (!pow2(minimum) || minimum > 64 * 1024 || !pow2(preferred) || preferred < minimum || maximum < preferred) {
    throw new NbdProtocolError(`invalid block size constraints ${minimum}/${preferred}/${maximum}`);
  }
  return { minimum, preferred, maximum: Math.min(maximum, DEFAULT_BLOCK_SIZES.maximum) };
}

function sendOption(ch: HandshakeChannel, option: number, data: Uint8Array): void {
  const msg = Buffer.allocUnsafe(16 + data.length);
  msg.writeUInt32BE(IHAVEOPT_HI, 0);
  msg.writeUInt32BE(IHAVEOPT_LO, 4);
  msg.writeUInt32BE(option, 8);
  msg.writeUInt32BE(data.length, 12);
  msg.set(data, 16);
  ch.write(msg);
}

interface OptionReply {
  readonly type: number;
  readonly data: Buffer;
}

async function readOptionReply(ch: HandshakeChannel, option: number): Promise<OptionReply> {
  const h = await ch.read(20);
  if (h.readUInt32BE(0) !== OPT_REPLY_MAGIC_HI || h.readUInt32BE(4) !== OPT_REPLY_MAGIC_LO) {
    throw new NbdProtocolError('bad option reply magic');
  }
  const echoed = h.readUInt32BE(8);
  if (echoed !== option) throw new NbdProtocolError(`option reply for option ${echoed}, expected ${option}`);
  const type = h.readUInt32BE(12);
  const length = h.readUInt32BE(16);
  if (length > MAX_OPTION_REPLY) throw new NbdProtocolError(`option reply of ${length} bytes exceeds ${MAX_OPTION_REPLY}`);
  const data = await ch.read(length);
  return { type, data };
}

function messageOf(r: OptionReply): string {
  return r.data.length > 0 ? `: ${decodeMessage(r.data)}` : '';
}

function lengthPrefixed(s: string): Buffer {
  const bytes = enc.encode(s);
  if (bytes.length > MAX_STRING) throw new RangeError(`'${s.slice(0, 40)}…' is longer than ${MAX_STRING} bytes`);
  const out = Buffer.allocUnsafe(4 + bytes.length);
  out.writeUInt32BE(bytes.length, 0);
  out.set(bytes, 4);
  return out;
}

function metaContextRequest(exportName: string, contexts: readonly string[]): Buffer {
  const count = Buffer.allocUnsafe(4);
  count.writeUInt32BE(contexts.length);
  return Buffer.concat([lengthPrefixed(exportName), count, ...contexts.map(lengthPrefixed)]);
}

function goRequest(exportName: string): Buffer {
  const infos = Buffer.allocUnsafe(6);
  infos.writeUInt16BE(2, 0);
  infos.writeUInt16BE(INFO_EXPORT, 2);
  infos.writeUInt16BE(INFO_BLOCK_SIZE, 4);
  return Buffer.concat([lengthPrefixed(exportName), infos]);
}
