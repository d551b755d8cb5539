// Test-only: builders for server-side NBD messages and a scripted fake server, so tests can
// play a correct, a broken or a hostile server byte by byte. Not exported from the library.
import net from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES, IHAVEOPT_HI, IHAVEOPT_LO, INFO_BLOCK_SIZE, INFO_EXPORT, NBDMAGIC_HI,
  NBDMAGIC_LO, OPT_GO, OPT_REPLY_MAGIC_HI, OPT_REPLY_MAGIC_LO, OPT_SET_META_CONTEXT, OPT_STRUCTURED_REPLY,
  REPLY_TYPE_BLOCK_STATUS, REPLY_TYPE_ERROR, REPLY_TYPE_NONE, REPLY_TYPE_OFFSET_DATA, REPLY_TYPE_OFFSET_HOLE,
  REP_ACK, REP_ERR_UNSUP, REP_INFO, REP_META_CONTEXT, SIMPLE_REPLY_MAGIC, STRUCTURED_REPLY_MAGIC, TFLAG_HAS_FLAGS,
  TFLAG_READ_ONLY, writeU64,
} from '../protocol.ts';

/** sfc32: small seeded PRNG so every fuzz case can be replayed from its seed. */
export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    this.a = 0x9e3779b9;
    this.b = 0x243f6a88;
    this.c = 0xb7e15162;
    this.d = seed >>> 0;
    for (let i = 0; i < 16; i++) this.u32();
  }

  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + (this.u32() % (hi - lo + 1));
  }

  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }

  pick<T>(xs: readonly T[]): T {
    return xs[this.int(0, xs.length - 1)]!;
  }
}

export const be32 = (n: number): Buffer => {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
export const be16 = (n: number): Buffer => {
  const b = Buffer.allocUnsafe(2);
  b.writeUInt16BE(n);
  return b;
};
export const be64 = (n: number): Buffer => {
  const b = Buffer.allocUnsafe(8);
  writeU64(new DataView(b.buffer, b.byteOffset, 8), 0, n);
  return b;
};

export function greeting(): Buffer {
  return Buffer.concat([be32(NBDMAGIC_HI), be32(NBDMAGIC_LO), be32(IHAVEOPT_HI), be32(IHAVEOPT_LO), be16(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES)]);
}

export function optReply(opt: number, type: number, data: Uint8Array = new Uint8Array(0)): Buffer {
  return Buffer.concat([be32(OPT_REPLY_MAGIC_HI), be32(OPT_REPLY_MAGIC_LO), be32(opt), be32(type), be32(data.length), data]);
}

/** The server's side of a successful handshake for the options our client sends. */
export function handshakeReplies(size: number, opts: { structured: boolean; contextId?: number; context?: string; minBlock?: number }): Buffer[] {
  const out: Buffer[] = [greeting()];
  out.push(optReply(OPT_STRUCTURED_REPLY, opts.structured ? REP_ACK : REP_ERR_UNSUP));
  if (opts.context !== undefined) {
    out.push(optReply(OPT_SET_META_CONTEXT, REP_META_CONTEXT, Buffer.concat([be32(opts.contextId ?? 1), Buffer.from(opts.context)])));
    out.push(optReply(OPT_SET_META_CONTEXT, REP_ACK));
  }
  out.push(optReply(OPT_GO, REP_INFO, Buffer.concat([be16(INFO_EXPORT), be64(size), be16(TFLAG_HAS_FLAGS | TFLAG_READ_ONLY)])));
  out.push(optReply(OPT_GO, REP_INFO, Buffer.concat([be16(INFO_BLOCK_SIZE), be32(opts.minBlock ?? 1), be32(Math.max(4096, opts.minBlock ?? 1)), be32(32 * 1024 * 1024)])));
  out.push(optReply(OPT_GO, REP_ACK));
  return out;
}

export function chunk(handle: Buffer, flags: number, type: number, payload: Uint8Array): Buffer {
  return Buffer.concat([be32(STRUCTURED_REPLY_MAGIC), be16(flags), be16(type), handle, be32(payload.length), payload]);
}
export const dataChunk = (handle: Buffer, flags: number, offset: number, data: Uint8Array): Buffer =>
  chunk(handle, flags, REPLY_TYPE_OFFSET_DATA, Buffer.concat([be64(offset), data]));
export const holeChunk = (handle: Buffer, flags: number, offset: number, length: number): Buffer =>
  chunk(handle, flags, REPLY_TYPE_OFFSET_HOLE, Buffer.concat([be64(offset), be32(length)]));
export const noneChunk = (handle: Buffer): Buffer => chunk(handle, 1, REPLY_TYPE_NONE, new Uint8Array(0));
export const errorChunk = (handle: Buffer, flags: number, errno: number, message: string): Buffer =>
  chunk(handle, flags, REPLY_TYPE_ERROR, Buffer.concat([be32(errno), be16(Buffer.byteLength(message)), Buffer.from(message)]));
export const statusChunk = (handle: Buffer, flags: number, contextId: number, extents: Array<[number, number]>): Buffer =>
  chunk(handle, flags, REPLY_TYPE_BLOCK_STATUS, Buffer.concat([be32(contextId), ...extents.flatMap(([l, f]) => [be32(l), be32(f)])]));
export const simpleReply = (handle: Buffer, errno: number, data?: Uint8Array): Buffer =>
  Buffer.concat([be32(SIMPLE_REPLY_MAGIC), be32(errno), handle, ...(data ? [data] : [])]);

export interface ParsedRequest {
  readonly type: number;
  readonly handle: Buffer;
  readonly offset: number;
  readonly length: number;
}

/**
 * A scripted server on a unix socket. For each connection it runs `script`, which writes
 * what it likes and may read the client's 28-byte requests (and ignores option payloads,
 * which the script's pre-built handshake answers blindly).
 */
export interface FakeConnection {
  readonly socket: net.Socket;
  /** Next client request (after the handshake bytes have been skipped with skipOptions). */
  nextRequest(): Promise<ParsedRequest>;
  /** Reads and discards `count` client options (plus the 4-byte client flags first). */
  skipHandshake(count: number): Promise<void>;
}

export async function startFakeServer(script: (c: FakeConnection) => Promise<void> | void): Promise<{ path: string; close(): Promise<void>; setScript(s: typeof script): void }> {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-nbd-fake-'));
  const path = join(dir, 'fake.sock');
  let current = script;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let buffered = Buffer.alloc(0);
    let wake: (() => void) | null = null;
    let ended = false;
    socket.on('data', (d: Buffer) => {
      buffered = Buffer.concat([buffered, d]);
      wake?.();
    });
    socket.on('close', () => {
      ended = true;
      wake?.();
    });
    const take = async (n: number): Promise<Buffer> => {
      while (buffered.length < n) {
        if (ended) throw new Error('client went away');
        await new Promise<void>((r) => { wake = r; });
        wake = null;
      }
      const out = buffered.subarray(0, n);
      buffered = buffered.subarray(n);
      return out;
    };
    const conn: FakeConnection = {
      socket,
      async skipHandshake(count) {
        await take(4);
        for (let i = 0; i < count; i++) {
          const h = await take(16);
          await take(h.readUInt32BE(12));
        }
      },
      async nextRequest() {
        const h = await take(28);
        return { type: h.readUInt16BE(6), handle: Buffer.from(h.subarray(8, 16)), offset: h.readUInt32BE(16) * 2 ** 32 + h.readUInt32BE(20), length: h.readUInt32BE(24) };
      },
    };
    Promise.resolve().then(() => current(conn)).catch(() => undefined);
  });
  await new Promise<void>((r) => server.listen(path, r));
  return {
    path,
    setScript: (s) => { current = s; },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
