// Fuzz: a fake server answers pipelined READ and BLOCK_STATUS requests with correct replies
// (random chunking, holes, order, interleaving, fragmentation) and then damages them with
// one seeded mutation: a flipped framing bit, a foreign handle, a dropped, duplicated or
// moved message, inserted garbage, a huge length, a truncation or a stall. The client must
// return exactly the right bytes/extents or reject with a typed error, within its deadline.
//
// Mutations never touch data bytes or extent descriptors: those carry no redundancy in the
// protocol, so damage there is undetectable by any client (and by qemu's or libnbd's).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NbdClient } from './client.ts';
import {
  NbdConnectionClosedError, NbdOptionError, NbdProtocolError, NbdRequestError, NbdTimeoutError, OPT_GO,
  OPT_SET_META_CONTEXT, OPT_STRUCTURED_REPLY, CMD_BLOCK_STATUS, CMD_READ, type Extent,
} from './protocol.ts';
import {
  Prng, be32, dataChunk, errorChunk, greeting, handshakeReplies, holeChunk, noneChunk, simpleReply, startFakeServer,
  statusChunk, type FakeConnection, type ParsedRequest,
} from './test-support/fake-wire.ts';

const SIZE = 1024 * 1024;
const Z0 = 300_000;
const Z1 = 400_000;
const CONTEXT_ID = 9;
const TIMEOUT_MS = 250;
const CASE_GUARD_MS = 5000;
const TRANSMISSION_CASES = 2000;
const HANDSHAKE_CASES = 400;
/** Cases run on this many fake servers at once (they mostly wait on sockets). */
const WORKERS = 4;

const byteAt = (i: number) => (i >= Z0 && i < Z1 ? 0 : (i * 31 + 7) & 0xff);
function content(offset: number, length: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) b[i] = byteAt(offset + i);
  return b;
}
const flagsAt = (i: number) => (i >= Z0 && i < Z1 ? 3 : 0);

/** One message on the wire and the byte positions a mutation may flip (framing only). */
interface Msg {
  bytes: Buffer;
  readonly framing: number[];
  readonly handleAt: number | null;
  readonly lengthAt: number | null;
  readonly owner: number;
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);
const chunkMsg = (bytes: Buffer, owner: number, extraFraming: number[] = []): Msg => ({
  bytes, owner, handleAt: 8, lengthAt: 16, framing: [...range(0, 8), ...range(16, 20), ...extraFraming],
});

function readReply(rng: Prng, r: ParsedRequest, owner: number, structured: boolean): Msg[] {
  if (!structured) {
    if (rng.chance(0.05)) return [{ bytes: simpleReply(r.handle, 5), owner, handleAt: 8, lengthAt: null, framing: range(0, 8) }];
    return [{ bytes: simpleReply(r.handle, 0, content(r.offset, r.length)), owner, handleAt: 8, lengthAt: null, framing: range(0, 8) }];
  }
  // Cut at the zero-region bounds and at random points, pieces of at least 16 bytes.
  const cuts = new Set<number>([r.offset, r.offset + r.length]);
  for (const z of [Z0, Z1]) if (z > r.offset && z < r.offset + r.length) cuts.add(z);
  for (let i = rng.int(0, 4); i > 0; i--) cuts.add(r.offset + rng.int(0, r.length));
  const points = [...cuts].sort((a, b) => a - b).filter((p, i, a) => i === 0 || i === a.length - 1 || (p - a[i - 1]! >= 16 && a[a.length - 1]! - p >= 16));
  const msgs: Msg[] = [];
  for (let i = 0; i + 1 < points.length; i++) {
    const from = points[i]!;
    const to = points[i + 1]!;
    if (from >= Z0 && to <= Z1 && rng.chance(0.7)) msgs.push(chunkMsg(holeChunk(r.handle, 0, from, to - from), owner, range(20, 32)));
    else msgs.push(chunkMsg(dataChunk(r.handle, 0, from, content(from, to - from)), owner, range(20, 28)));
  }
  for (let i = msgs.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [msgs[i], msgs[j]] = [msgs[j]!, msgs[i]!];
  }
  if (rng.chance(0.05)) {
    msgs.splice(rng.int(0, msgs.length), msgs.length, chunkMsg(errorChunk(r.handle, 1, 5, 'injected'), owner, range(20, 26)));
    return msgs;
  }
  if (rng.chance(0.5)) msgs.push(chunkMsg(noneChunk(r.handle), owner));
  else msgs[msgs.length - 1]!.bytes[5] = 1; // DONE on the last content chunk
  return msgs;
}

function statusReply(rng: Prng, r: ParsedRequest, owner: number): Msg[] {
  const end = r.offset + r.length;
  const extents: Array<[number, number]> = [];
  let at = r.offset;
  while (at < end) {
    const boundary = at < Z0 ? Z0 : at < Z1 ? Z1 : SIZE;
    const next = Math.min(boundary, end);
    extents.push([next - at, flagsAt(at)]);
    at = next;
  }
  const keep = rng.chance(0.3) ? rng.int(1, extents.length) : extents.length;
  const shown = extents.slice(0, keep);
  if (keep === extents.length && rng.chance(0.3)) shown[shown.length - 1]![0] += rng.int(1, 5000); // may run past: allowed
  return [chunkMsg(statusChunk(r.handle, 1, CONTEXT_ID, shown), owner, range(20, 24))];
}

type Mutation = 'none' | 'flip' | 'handle' | 'drop' | 'dup' | 'move' | 'garbage' | 'huge' | 'truncate' | 'stall';
const MUTATIONS: Mutation[] = ['flip', 'flip', 'flip', 'handle', 'drop', 'dup', 'move', 'garbage', 'huge', 'truncate'];

/** Applies one mutation; returns the byte stream and whether the server should stall after it. */
function mutate(rng: Prng, msgs: Msg[], kind: Mutation, inflight: Buffer[]): { stream: Buffer; stall: boolean } {
  const list = [...msgs];
  const i = rng.int(0, Math.max(0, list.length - 1));
  const m = list[i];
  switch (kind) {
    case 'flip': {
      if (!m) break;
      const bytes = Buffer.from(m.bytes);
      const at = rng.pick(m.framing);
      bytes[at]! ^= 1 << rng.int(0, 7);
      list[i] = { ...m, bytes };
      break;
    }
    case 'handle': {
      if (!m || m.handleAt === null) break;
      const bytes = Buffer.from(m.bytes);
      let h: Buffer;
      do h = Buffer.from([...Array(8)].map(() => rng.int(0, 255))); while (inflight.some((x) => x.equals(h)));
      h.copy(bytes, m.handleAt);
      list[i] = { ...m, bytes };
      break;
    }
    case 'drop':
      list.splice(i, 1);
      break;
    case 'dup':
      if (m) list.splice(rng.int(0, list.length), 0, m);
      break;
    case 'move':
      if (m) {
        list.splice(i, 1);
        list.splice(rng.int(0, list.length), 0, m);
      }
      break;
    case 'garbage':
      list.splice(rng.int(0, list.length), 0, { bytes: Buffer.from([...Array(rng.int(1, 64))].map(() => rng.int(0, 255))), framing: [], handleAt: null, lengthAt: null, owner: -1 });
      break;
    case 'huge': {
      if (!m || m.lengthAt === null) break;
      const bytes = Buffer.from(m.bytes);
      bytes.writeUInt32BE(rng.pick([0xffffffff, 0x7fffffff, 0x10000000, rng.u32()]), m.lengthAt);
      list[i] = { ...m, bytes };
      break;
    }
    case 'truncate':
    case 'stall': {
      const all = Buffer.concat(list.map((x) => x.bytes));
      return { stream: all.subarray(0, rng.int(0, Math.max(0, all.length - 1))), stall: kind === 'stall' };
    }
    default:
      break;
  }
  return { stream: Buffer.concat(list.map((x) => x.bytes)), stall: false };
}

/** Interleaves the replies of several requests, keeping each reply's own order. */
function interleave(rng: Prng, replies: Msg[][]): Msg[] {
  const queues = replies.map((r) => [...r]);
  const out: Msg[] = [];
  while (queues.some((q) => q.length > 0)) {
    const q = rng.pick(queues.filter((x) => x.length > 0));
    out.push(q.shift()!);
  }
  return out;
}

/** Writes `stream` in random fragments, yielding between them so the client sees partial messages. */
async function dribble(rng: Prng, c: FakeConnection, stream: Buffer): Promise<void> {
  let at = 0;
  while (at < stream.length && !c.socket.destroyed) {
    const n = rng.chance(0.3) ? rng.int(1, 40) : rng.int(1, 70_000);
    c.socket.write(stream.subarray(at, at + n));
    at += n;
    if (rng.chance(0.3)) await new Promise((r) => setImmediate(r));
  }
}

const TYPED = [NbdProtocolError, NbdRequestError, NbdTimeoutError, NbdConnectionClosedError, NbdOptionError];
const isTyped = (e: unknown) => TYPED.some((t) => e instanceof t);

interface Tally { ok: number; errors: number; cleanOk: number; byError: Record<string, number> }

async function guard<T>(work: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([work, new Promise<never>((_, rej) => { timer = setTimeout(() => rej(new Error(`HANG: ${what}`)), CASE_GUARD_MS); })]);
  } finally {
    clearTimeout(timer);
  }
}

type FakeServer = Awaited<ReturnType<typeof startFakeServer>>;
const servers: FakeServer[] = [];
beforeAll(async () => {
  for (let i = 0; i < WORKERS; i++) servers.push(await startFakeServer(async () => undefined));
});
afterAll(() => Promise.all(servers.map((s) => s.close())));

/** Runs `runCase(seed, server)` for seeds from..to, spread over the fake servers. */
async function spread(from: number, to: number, runCase: (seed: number, server: FakeServer) => Promise<void>): Promise<void> {
  await Promise.all(servers.map(async (server, w) => {
    for (let seed = from + w; seed <= to; seed += servers.length) await runCase(seed, server);
  }));
}

describe('NbdClient reply parser fuzz', () => {
  it(`survives ${TRANSMISSION_CASES} mutated transmission phases with correct data or typed errors`, async () => {
    const tally: Tally = { ok: 0, errors: 0, cleanOk: 0, byError: {} };
    const memBefore = process.memoryUsage();
    await spread(1, TRANSMISSION_CASES, async (seed, server) => {
      const rng = new Prng(seed);
      const structured = rng.chance(0.85);
      const mutation: Mutation = rng.chance(0.35) ? 'none' : rng.chance(0.02) ? 'stall' : rng.pick(MUTATIONS);
      const count = rng.int(1, 3);
      const plan = Array.from({ length: count }, () => {
        const status = structured && rng.chance(0.3);
        const length = rng.chance(0.1) ? rng.int(100_000, 600_000) : rng.int(1, 70_000);
        const offset = rng.int(0, SIZE - length);
        return { status, offset, length };
      });
      server.setScript(async (c) => {
        c.socket.write(Buffer.concat(handshakeReplies(SIZE, structured ? { structured, contextId: CONTEXT_ID, context: 'base:allocation' } : { structured })));
        await c.skipHandshake(structured ? 3 : 2);
        const reqs: ParsedRequest[] = [];
        for (let i = 0; i < count; i++) reqs.push(await c.nextRequest());
        const replies = reqs.map((r, i) => (r.type === CMD_BLOCK_STATUS ? statusReply(rng, r, i) : readReply(rng, r, i, structured)));
        const { stream, stall } = mutate(rng, interleave(rng, replies), mutation, reqs.map((r) => r.handle));
        await dribble(rng, c, stream);
        if (!stall) c.socket.end();
      });
      const client = await guard(NbdClient.connect({ path: server.path }, {
        // The handshake is not under test here: a loaded machine must not fail it.
        exportName: 'x', metaContexts: structured ? ['base:allocation'] : [], timeoutMs: TIMEOUT_MS, handshakeTimeoutMs: 4000,
      }), `connect seed ${seed}`);
      const results = await guard(Promise.allSettled(plan.map((p) => (p.status
        ? client.blockStatus(p.offset, p.length, 'base:allocation')
        : client.read(p.offset, p.length)))), `requests seed ${seed} (${mutation})`);
      results.forEach((res, i) => {
        const p = plan[i]!;
        if (res.status === 'rejected') {
          expect(isTyped(res.reason), `seed ${seed}: untyped error ${String(res.reason)}`).toBe(true);
          tally.errors++;
          const name = (res.reason as Error).name;
          tally.byError[name] = (tally.byError[name] ?? 0) + 1;
          return;
        }
        tally.ok++;
        if (mutation === 'none') tally.cleanOk++;
        if (p.status) checkExtents(res.value as Extent[], p.offset, p.length, seed);
        else expect(Buffer.from(res.value as Uint8Array).equals(content(p.offset, p.length)), `seed ${seed}: wrong data`).toBe(true);
      });
      await guard(client.close(), `close seed ${seed}`);
    });
    const memAfter = process.memoryUsage();
    expect(tally.cleanOk).toBeGreaterThan(TRANSMISSION_CASES * 0.2);
    expect(tally.errors).toBeGreaterThan(TRANSMISSION_CASES * 0.3);
    // Nothing accumulates across cases (a leak of reply buffers would show here).
    expect(memAfter.arrayBuffers - memBefore.arrayBuffers).toBeLessThan(256 * 1024 * 1024);
    console.log('fuzz transmission tally', JSON.stringify(tally));
  }, 180_000);

  it(`survives ${HANDSHAKE_CASES} mutated handshakes`, async () => {
    let connected = 0;
    await spread(100_001, 100_000 + HANDSHAKE_CASES, async (seed, server) => {
      const rng = new Prng(seed);
      const msgs: Msg[] = handshakeReplies(SIZE, { structured: true, contextId: CONTEXT_ID, context: 'base:allocation' }).map((bytes, i) => ({
        bytes, owner: i, handleAt: null, lengthAt: i === 0 ? null : 16,
        // Greeting: both magics and the flags; option replies: magic, option, type, length.
        framing: i === 0 ? range(0, 18) : range(0, 20),
      }));
      const kind = rng.pick<Mutation>(['flip', 'flip', 'flip', 'drop', 'dup', 'move', 'garbage', 'huge', 'truncate']);
      server.setScript(async (c) => {
        const { stream } = mutate(rng, msgs, kind, []);
        await dribble(rng, c, stream);
        if (kind === 'truncate') c.socket.end();
        await c.skipHandshake(3);
        const r = await c.nextRequest();
        c.socket.write(Buffer.concat([dataChunk(r.handle, 1, r.offset, content(r.offset, r.length))]));
      });
      const outcome = await guard(NbdClient.connect({ path: server.path }, {
        exportName: 'x', metaContexts: ['base:allocation'], timeoutMs: TIMEOUT_MS,
      }).then((c) => c, (e: unknown) => e), `handshake seed ${seed}`);
      if (outcome instanceof NbdClient) {
        connected++;
        expect(outcome.size).toBe(SIZE);
        expect(outcome.contexts.get('base:allocation')).toBe(CONTEXT_ID);
        const got = await guard(outcome.read(1000, 2000).catch((e: unknown) => e), `read after handshake ${seed}`);
        if (got instanceof Uint8Array) expect(Buffer.from(got).equals(content(1000, 2000))).toBe(true);
        else expect(isTyped(got)).toBe(true);
        await outcome.close();
      } else {
        expect(isTyped(outcome), `seed ${seed}: untyped ${String(outcome)}`).toBe(true);
      }
    });
    expect(connected).toBeGreaterThan(0);
    // The greeting and each option reply can be refused: most mutations must be.
    expect(connected).toBeLessThan(HANDSHAKE_CASES);
  }, 120_000);

  it('keeps the constants the fake server relies on', () => {
    expect([OPT_GO, OPT_SET_META_CONTEXT, OPT_STRUCTURED_REPLY, CMD_READ]).toEqual([7, 10, 8, 0]);
    expect(greeting().length).toBe(18);
    expect(be32(1).length).toBe(4);
  });
});

function checkExtents(extents: Extent[], offset: number, length: number, seed: number): void {
  expect(extents.length, `seed ${seed}: no extents`).toBeGreaterThan(0);
  let at = offset;
  for (const e of extents) {
    expect(e.offset, `seed ${seed}: extents not contiguous`).toBe(at);
    expect(e.length).toBeGreaterThan(0);
    expect(e.offset + e.length, `seed ${seed}: extent past the request`).toBeLessThanOrEqual(offset + length);
    // Every byte of the extent has the flags it claims.
    expect(flagsAt(e.offset), `seed ${seed}: wrong flags at ${e.offset}`).toBe(e.flags);
    expect(flagsAt(e.offset + e.length - 1), `seed ${seed}: wrong flags at end of ${e.offset}`).toBe(e.flags);
    const straddles = (e.offset < Z0 && e.offset + e.length > Z0) || (e.offset < Z1 && e.offset + e.length > Z1);
    expect(straddles, `seed ${seed}: extent straddles a boundary`).toBe(false);
    at += e.length;
  }
}
