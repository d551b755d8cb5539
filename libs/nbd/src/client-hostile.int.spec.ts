// The client against a scripted server that breaks the protocol on purpose: every case must
// end in a typed error (or correct data), quickly, without waiting for bytes it will refuse.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NbdClient } from './client.ts';
import {
  NbdConnectionClosedError, NbdOptionError, NbdProtocolError, NbdRequestError, NbdTimeoutError, OPT_GO,
  REP_ERR_UNKNOWN, REPLY_TYPE_BLOCK_STATUS, REPLY_TYPE_ERROR, REPLY_TYPE_OFFSET_DATA,
} from './protocol.ts';
import {
  be32, chunk, dataChunk, errorChunk, greeting, handshakeReplies, holeChunk, noneChunk, optReply, simpleReply,
  startFakeServer, statusChunk, type FakeConnection,
} from './test-support/fake-wire.ts';

const SIZE = 1024 * 1024;
const content = (offset: number, length: number) => {
  const b = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) b[i] = ((offset + i) * 31 + 7) & 0xff;
  return b;
};

type Script = (c: FakeConnection) => Promise<void>;
let server: Awaited<ReturnType<typeof startFakeServer>>;

beforeAll(async () => {
  server = await startFakeServer(async () => undefined);
});
afterAll(() => server.close());

/** A server that handshakes correctly, then answers each request with `reply(request)`. */
function answering(reply: (r: Awaited<ReturnType<FakeConnection['nextRequest']>>) => Buffer[] | 'stall' | 'close', structured = true): Script {
  return async (c) => {
    c.socket.write(Buffer.concat(handshakeReplies(SIZE, structured ? { structured, contextId: 9, context: 'base:allocation' } : { structured })));
    await c.skipHandshake(structured ? 3 : 2);
    for (;;) {
      const r = await c.nextRequest();
      const out = reply(r);
      if (out === 'stall') continue;
      if (out === 'close') {
        c.socket.destroy();
        return;
      }
      c.socket.write(Buffer.concat(out));
    }
  };
}

async function connect(script: Script, opts: { structured?: boolean; timeoutMs?: number } = {}) {
  server.setScript(script);
  return NbdClient.connect({ path: server.path }, {
    exportName: 'x', metaContexts: opts.structured === false ? [] : ['base:allocation'], timeoutMs: opts.timeoutMs ?? 2000,
  });
}

describe('NbdClient against a hostile server', () => {
  it('reassembles data and hole chunks sent out of order', async () => {
    const client = await connect(answering((r) => {
      const half = Math.floor(r.length / 2);
      return [
        holeChunk(r.handle, 0, r.offset + half, r.length - half - 100),
        dataChunk(r.handle, 0, r.offset + r.length - 100, content(r.offset + r.length - 100, 100)),
        dataChunk(r.handle, 0, r.offset, content(r.offset, half)),
        noneChunk(r.handle),
      ];
    }));
    const got = await client.read(1000, 5000);
    const want = content(1000, 5000);
    want.fill(0, 2500, 4900);
    expect(Buffer.from(got).equals(want)).toBe(true);
    await client.close();
  });

  it('refuses a wrong reply magic', async () => {
    const client = await connect(answering((r) => [Buffer.concat([be32(0xdeadbeef), be32(0), r.handle])]));
    await expect(client.read(0, 10)).rejects.toBeInstanceOf(NbdProtocolError);
  });

  it('refuses a reply for a handle that is not in flight', async () => {
    const client = await connect(answering((r) => [noneChunk(Buffer.from(r.handle).fill(0x55, 4))]));
    await expect(client.read(0, 10)).rejects.toThrow(/unknown handle/);
  });

  it('refuses a data chunk longer than the request before reading its payload', async () => {
    const client = await connect(answering((r) => [
      Buffer.concat([be32(0x668e33ef), Buffer.from([0, 1, 0, REPLY_TYPE_OFFSET_DATA]), r.handle, be32(0xfffffff0)]),
    ]));
    await expect(client.read(0, 4096)).rejects.toThrow(/OFFSET_DATA chunk length/);
  });

  it('refuses oversize block status and error chunks without buffering them', async () => {
    const status = await connect(answering((r) => [
      Buffer.concat([be32(0x668e33ef), Buffer.from([0, 1, 0, REPLY_TYPE_BLOCK_STATUS]), r.handle, be32(0x7ffffff4)]),
    ]));
    await expect(status.blockStatus(0, SIZE, 'base:allocation')).rejects.toThrow(/exceeds/);
    const err = await connect(answering((r) => [
      Buffer.concat([be32(0x668e33ef), Buffer.from([0, 1, 0x80, REPLY_TYPE_ERROR & 0xff]), r.handle, be32(1_000_000_000)]),
    ]));
    await expect(err.read(0, 10)).rejects.toBeInstanceOf(NbdProtocolError);
  });

  it('refuses overlapping chunks, data outside the request and a short successful reply', async () => {
    const overlap = await connect(answering((r) => [
      dataChunk(r.handle, 0, r.offset, content(r.offset, 10)),
      dataChunk(r.handle, 1, r.offset + 5, content(r.offset + 5, r.length - 5)),
    ]));
    await expect(overlap.read(0, 100)).rejects.toThrow(/overlaps/);
    const outside = await connect(answering((r) => [dataChunk(r.handle, 1, r.offset + 1, content(r.offset + 1, r.length))]));
    await expect(outside.read(0, 100)).rejects.toThrow(/outside the request/);
    const short = await connect(answering((r) => [dataChunk(r.handle, 1, r.offset, content(r.offset, r.length - 1))]));
    await expect(short.read(0, 100)).rejects.toThrow(/ended after 99 of 100 bytes/);
  });

  it('treats a duplicate final chunk as a broken stream', async () => {
    const client = await connect(answering((r) => [dataChunk(r.handle, 1, r.offset, content(r.offset, r.length)), noneChunk(r.handle)]));
    const first = client.read(0, 16);
    await expect(first).resolves.toBeDefined();
    await expect(client.read(16, 16)).rejects.toBeInstanceOf(Error);
  });

  it('fails fast when the server closes mid-reply, and times out when it stalls', async () => {
    const truncated = await connect(answering(() => 'close'));
    await expect(truncated.read(0, 10)).rejects.toBeInstanceOf(NbdConnectionClosedError);
    const stalled = await connect(answering(() => 'stall'), { timeoutMs: 200 });
    await expect(stalled.read(0, 10)).rejects.toBeInstanceOf(NbdTimeoutError);
  });

  it('reports a server error chunk as NbdRequestError and keeps the connection', async () => {
    let n = 0;
    const client = await connect(answering((r) => (n++ === 0
      ? [errorChunk(r.handle, 1, 5, 'disk on fire')]
      : [dataChunk(r.handle, 1, r.offset, content(r.offset, r.length))])));
    const err = await client.read(0, 10).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NbdRequestError);
    expect((err as NbdRequestError).errno).toBe(5);
    expect((err as Error).message).toMatch(/EIO: disk on fire/);
    expect(Buffer.from(await client.read(10, 10)).equals(content(10, 10))).toBe(true);
    await client.close();
  });

  it('clamps a final extent past the request and refuses extents after it', async () => {
    const ok = await connect(answering((r) => [statusChunk(r.handle, 1, 9, [[4096, 3], [r.length, 0]])]));
    expect(await ok.blockStatus(0, 65536, 'base:allocation')).toEqual([
      { offset: 0, length: 4096, flags: 3 }, { offset: 4096, length: 61440, flags: 0 },
    ]);
    await ok.close();
    const bad = await connect(answering((r) => [statusChunk(r.handle, 1, 9, [[r.length * 2, 3], [4096, 0]])]));
    await expect(bad.blockStatus(0, 65536, 'base:allocation')).rejects.toThrow(/extend past the request/);
    const unknownCtx = await connect(answering((r) => [statusChunk(r.handle, 1, 4, [[4096, 3]])]));
    await expect(unknownCtx.blockStatus(0, 65536, 'base:allocation')).rejects.toThrow(/unknown context id/);
  });

  it('reads with simple replies when the server has no structured replies', async () => {
    const client = await connect(answering((r) => [simpleReply(r.handle, 0, content(r.offset, r.length))], false), { structured: false });
    const reads = await Promise.all([client.read(0, 70000), client.read(100000, 300), client.read(5, 5)]);
    expect(Buffer.from(reads[0]!).equals(content(0, 70000))).toBe(true);
    expect(Buffer.from(reads[1]!).equals(content(100000, 300))).toBe(true);
    expect(Buffer.from(reads[2]!).equals(content(5, 5))).toBe(true);
    await client.close();
  });

  it('refuses a structured chunk when structured replies were not negotiated', async () => {
    const client = await connect(answering((r) => [dataChunk(r.handle, 1, r.offset, content(r.offset, r.length))], false), { structured: false });
    await expect(client.read(0, 10)).rejects.toThrow(/not negotiated/);
  });

  it('times out a silent handshake and refuses bad greetings and oversize option replies', async () => {
    server.setScript(async () => undefined);
    await expect(NbdClient.connect({ path: server.path }, { exportName: 'x', timeoutMs: 200 })).rejects.toBeInstanceOf(NbdTimeoutError);
    server.setScript(async (c) => { c.socket.write(Buffer.alloc(18, 1)); });
    await expect(NbdClient.connect({ path: server.path }, { exportName: 'x' })).rejects.toThrow(/NBDMAGIC/);
    server.setScript(async (c) => {
      c.socket.write(Buffer.concat([greeting(), Buffer.from(optReply(8, 1)).fill(0xff, 16, 20)]));
    });
    await expect(NbdClient.connect({ path: server.path }, { exportName: 'x' })).rejects.toThrow(/exceeds/);
  });

  it('reports an unknown export and a missing metadata context as NbdOptionError', async () => {
    server.setScript(async (c) => {
      c.socket.write(Buffer.concat([greeting(), optReply(8, 1), optReply(OPT_GO, REP_ERR_UNKNOWN, Buffer.from('no such export'))]));
    });
    const e1 = await NbdClient.connect({ path: server.path }, { exportName: 'nope' }).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(NbdOptionError);
    expect((e1 as Error).message).toMatch(/unknown export.*no such export/);
    server.setScript(async (c) => {
      c.socket.write(Buffer.concat(handshakeReplies(SIZE, { structured: true, contextId: 1, context: 'base:allocation' })));
    });
    await expect(NbdClient.connect({ path: server.path }, { exportName: 'x', metaContexts: ['base:allocation', 'qemu:dirty-bitmap:b'] }))
      .rejects.toThrow(/grant|does not offer/);
  });

  it('aligns reads and block status to the advertised minimum block size', async () => {
    const seen: Array<[number, number]> = [];
    server.setScript(async (c) => {
      c.socket.write(Buffer.concat(handshakeReplies(SIZE, { structured: true, contextId: 9, context: 'base:allocation', minBlock: 4096 })));
      await c.skipHandshake(3);
      for (;;) {
        const r = await c.nextRequest();
        seen.push([r.offset, r.length]);
        if (r.offset % 4096 || r.length % 4096) c.socket.write(errorChunk(r.handle, 1, 22, 'unaligned'));
        else if (r.type === 7) c.socket.write(statusChunk(r.handle, 1, 9, [[4096, 3], [r.length - 4096, 0]]));
        else c.socket.write(dataChunk(r.handle, 1, r.offset, content(r.offset, r.length)));
      }
    });
    const client = await NbdClient.connect({ path: server.path }, { exportName: 'x', metaContexts: ['base:allocation'] });
    expect(client.blockSizes.minimum).toBe(4096);
    expect(Buffer.from(await client.read(1000, 5000)).equals(content(1000, 5000))).toBe(true);
    expect(Buffer.from(await client.read(8192, 4096)).equals(content(8192, 4096))).toBe(true);
    expect(await client.blockStatus(1000, 10_000, 'base:allocation')).toEqual([
      { offset: 1000, length: 3096, flags: 3 }, { offset: 4096, length: 6904, flags: 0 },
    ]);
    expect(seen).toEqual([[0, 8192], [8192, 4096], [0, 12288]]);
    await client.close();
  });

  it('rejects unknown non-error chunk types', async () => {
    const client = await connect(answering((r) => [chunk(r.handle, 1, 77, Buffer.alloc(4))]));
    await expect(client.read(0, 10)).rejects.toThrow(/unknown structured reply type 77/);
  });
});
