// QMP client against a scripted fake monitor: protocol handling without QEMU.
import { createServer, type Server, type Socket } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { QmpClient } from './qmp-client.ts';
import { QmpConnectionError, QmpError, QmpTimeoutError } from './qmp-errors.ts';

type Handler = (cmd: { execute: string; arguments?: Record<string, unknown>; id?: string }, sock: Socket) => void;

async function fakeMonitor(handler: Handler): Promise<{ path: string; server: Server; sockets: Set<Socket>; close(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-qmp-'));
  const path = join(dir, 'qmp.sock');
  const sockets = new Set<Socket>();
  const server = createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.write(JSON.stringify({ QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 }, package: 'fake' }, capabilities: [] } }) + '\r\n');
    let buf = '';
    sock.on('data', (d) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl); buf = buf.slice(nl + 1);
        const cmd = JSON.parse(line) as Parameters<Handler>[0];
        if (cmd.execute === 'qmp_capabilities') sock.write(JSON.stringify({ return: {}, id: cmd.id }) + '\r\n');
        else handler(cmd, sock);
      }
    });
  });
  await new Promise<void>((r) => server.listen(path, r));
  return {
    path, server, sockets,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => { for (const c of cleanups.splice(0).reverse()) await c(); });

describe('QmpClient', () => {
  it('answers commands by id (out of order too), passes events, types errors', async () => {
    const mon = await fakeMonitor((cmd, sock) => {
      if (cmd.execute === 'slow') setTimeout(() => sock.write(JSON.stringify({ return: 'slow', id: cmd.id }) + '\r\n'), 30);
      else if (cmd.execute === 'bad') sock.write(JSON.stringify({ error: { class: 'DeviceNotFound', desc: 'no such thing' }, id: cmd.id }) + '\r\n');
      else {
        sock.write(JSON.stringify({ event: 'BLOCK_JOB_CANCELLED', data: { device: 'j1' }, timestamp: { seconds: 1, microseconds: 2 } }) + '\r\n');
        sock.write(JSON.stringify({ return: cmd.arguments ?? {}, id: cmd.id }) + '\r\n');
      }
    });
    cleanups.push(() => mon.close());
    const c = await QmpClient.connect(mon.path);
    cleanups.push(() => c.close());
    expect(c.greeting?.version.qemu.major).toBe(7);
    const ev = c.waitForEvent(['BLOCK_JOB_COMPLETED', 'BLOCK_JOB_CANCELLED'], (d) => d['device'] === 'j1', 1000);
    const [slow, fast] = await Promise.all([c.execute('slow'), c.execute('echo', { a: 1 })]);
    expect(slow).toBe('slow');
    expect(fast).toEqual({ a: 1 });
    expect((await ev).event).toBe('BLOCK_JOB_CANCELLED');
    const err = await c.execute('bad').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpError);
    expect(err).toMatchObject({ errorClass: 'DeviceNotFound', desc: 'no such thing', command: 'bad' });
  });

  it('times out a command that gets no answer and ignores the late answer', async () => {
    const mon = await fakeMonitor((cmd, sock) => {
      if (cmd.execute === 'never') setTimeout(() => sock.write(JSON.stringify({ return: 1, id: cmd.id }) + '\r\n'), 100);
      else sock.write(JSON.stringify({ return: 2, id: cmd.id }) + '\r\n');
    });
    cleanups.push(() => mon.close());
    const c = await QmpClient.connect(mon.path);
    cleanups.push(() => c.close());
    await expect(c.execute('never', undefined, { timeoutMs: 20 })).rejects.toBeInstanceOf(QmpTimeoutError);
    await new Promise((r) => setTimeout(r, 150));
    expect(await c.execute('other')).toBe(2);
    await expect(c.waitForEvent('NOPE', undefined, 20)).rejects.toBeInstanceOf(QmpTimeoutError);
  });

  it('fails pending commands when the monitor goes away, then reconnects', async () => {
    let answer = false;
    const mon = await fakeMonitor((cmd, sock) => { if (answer) sock.write(JSON.stringify({ return: 'ok', id: cmd.id }) + '\r\n'); });
    cleanups.push(() => mon.close());
    const c = await QmpClient.connect(mon.path, { reconnect: { delayMs: 20 } });
    cleanups.push(() => c.close());
    const pending = c.execute('hangs');
    const reconnected = new Promise<void>((r) => c.once('reconnected', () => r()));
    for (const s of mon.sockets) s.destroy();
    await expect(pending).rejects.toBeInstanceOf(QmpConnectionError);
    answer = true;
    await reconnected;
    expect(await c.execute('works')).toBe('ok');
  });

  it('async iterator yields events until aborted', async () => {
    const mon = await fakeMonitor((cmd, sock) => {
      for (let i = 0; i < 3; i++) sock.write(JSON.stringify({ event: 'E', data: { i }, timestamp: { seconds: 0, microseconds: 0 } }) + '\r\n');
      sock.write(JSON.stringify({ return: {}, id: cmd.id }) + '\r\n');
    });
    cleanups.push(() => mon.close());
    const c = await QmpClient.connect(mon.path);
    cleanups.push(() => c.close());
    const ac = new AbortController();
    const seen: unknown[] = [];
    const it = (async () => { for await (const e of c.events(ac.signal)) { seen.push(e.data['i']); if (seen.length === 3) ac.abort(); } })();
    await new Promise((r) => setTimeout(r, 5));
    await c.execute('go');
    await it;
    expect(seen).toEqual([0, 1, 2]);
  });

  it('refuses to connect to a socket nobody listens on', async () => {
    await expect(QmpClient.connect('/nonexistent/qmp.sock', { connectTimeoutMs: 500 })).rejects.toBeInstanceOf(QmpConnectionError);
  });
});
