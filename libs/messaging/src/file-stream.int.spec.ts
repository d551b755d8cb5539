// Downloads carried as pulls over a real nats-server: chunks arrive in order and whole, the
// source is read only as fast as chunks are pulled (bounded memory), the first pull's range
// reaches the offerer, a reader that stops early cancels the stream at its source, a failing
// source says why, and a stream nobody pulls is dropped after its idle time.
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { useHarness, waitFor } from '@cairn/testing';
import { FileStreamError, FileStreamServer, cancelFileStream, pullFileStream, type FileStreamOutcome } from './file-stream.ts';

const SITE = 'site-a';

describe('file streams over NATS', () => {
  const h = useHarness();

  it('serves a stream chunk by chunk, as fast as it is pulled, and tells how each ended', async () => {
    const nats = await h.nats();
    const nc = await connect({ servers: nats.url });
    h.onClose(() => nc.drain());
    const server = new FileStreamServer(nc, SITE, { chunkBytes: 64 * 1024, idleMs: 1500 });
    server.start();
    h.onClose(() => server.close());
    await nc.flush();

    // 4 MiB from a source that counts what was taken from it.
    const data = randomBytes(4 * 1024 * 1024);
    let produced = 0;
    const source = () => Readable.from((function* () {
      for (let i = 0; i < data.length; i += 16 * 1024) { produced = i + 16 * 1024; yield data.subarray(i, i + 16 * 1024); }
    })(), { highWaterMark: 1 });
    const ends: FileStreamOutcome[] = [];
    let firstSeen: unknown;
    const id = server.offer({ start: (first) => { firstSeen = first; return source(); }, end: (o) => ends.push(o) });
    const parts: Buffer[] = [];
    let maxAhead = 0; let got = 0;
    for await (const c of pullFileStream(nc, SITE, id, { first: { offset: 0, length: data.length } })) {
      expect(c.length).toBeLessThanOrEqual(64 * 1024);
      got += c.length;
      maxAhead = Math.max(maxAhead, produced - got);
      parts.push(c);
    }
    expect(Buffer.concat(parts).equals(data)).toBe(true);
    expect(firstSeen).toEqual({ offset: 0, length: data.length });
    // The source ran at most a few chunks ahead of the reader, never the whole file.
    expect(maxAhead).toBeLessThan(512 * 1024);
    expect(ends).toEqual([{ bytes: data.length, how: 'done' }]);
    expect(server.size).toBe(0);

    // A reader that stops early cancels; the unread source is handed back.
    let unread: Readable | undefined;
    const id2 = server.offer({ start: source, end: (o, u) => { ends.push(o); unread = u; } });
    for await (const _c of pullFileStream(nc, SITE, id2)) break;
    await waitFor(async () => (ends.length === 2 ? true : undefined), { what: 'the cancel' });
    expect(ends[1]).toMatchObject({ how: 'cancelled' });
    expect(unread).toBeDefined();
    unread!.destroy();

    // A failing source: the reader gets its reason.
    const id3 = server.offer({ start: () => Readable.from((async function* () { yield Buffer.from('x'); throw new Error('the appliance died'); })()), end: (o) => ends.push(o) });
    await expect((async () => { for await (const _c of pullFileStream(nc, SITE, id3)) { /* read on */ } })()).rejects.toThrow(/the appliance died/);
    expect(ends[2]).toMatchObject({ how: 'failed', error: 'the appliance died' });

    // Cancelled before any pull; and one nobody pulls is dropped after the idle time.
    const id4 = server.offer({ start: source, end: (o) => ends.push(o) });
    await cancelFileStream(nc, SITE, id4);
    expect(ends[3]).toEqual({ bytes: 0, how: 'cancelled' });
    server.offer({ start: source, end: (o) => ends.push(o) });
    await waitFor(async () => (ends.length === 5 ? true : undefined), { what: 'the idle drop', timeoutMs: 10_000 });
    expect(ends[4]).toEqual({ bytes: 0, how: 'idle' });
    expect(server.size).toBe(0);
    await expect((async () => { for await (const _c of pullFileStream(nc, SITE, 'gone', { timeoutMs: 500 })) { /* nothing */ } })()).rejects.toBeInstanceOf(FileStreamError);
  });
});
