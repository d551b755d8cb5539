// Test fixture: a stand-in for qemu-guest-agent on its host-side socket (a real agent needs a
// guest OS). Records the commands it receives.
import { createServer, type Socket } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A fake agent: answers guest-sync-delimited with 0xFF + id; `freezeDelayMs` delays (or, if Infinity, drops) the freeze answer. */
export async function fakeGuestAgent(freezeDelayMs: number) {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-qga-'));
  const path = join(dir, 'qga.sock');
  const received: string[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    let buf = '';
    sock.on('data', (d) => {
      buf += d.toString('latin1').replaceAll('\xff', '');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const cmd = JSON.parse(buf.slice(0, nl)) as { execute: string; arguments?: { id: number } };
        buf = buf.slice(nl + 1);
        received.push(cmd.execute);
        if (cmd.execute === 'guest-sync-delimited') sock.write(Buffer.concat([Buffer.from([0xff]), Buffer.from(JSON.stringify({ return: cmd.arguments?.id }) + '\n')]));
        else if (cmd.execute === 'guest-fsfreeze-freeze') {
          if (Number.isFinite(freezeDelayMs)) setTimeout(() => sock.writable && sock.write(JSON.stringify({ return: 2 }) + '\n'), freezeDelayMs);
        } else sock.write(JSON.stringify({ return: 2 }) + '\n');
      }
    });
  });
  await new Promise<void>((r) => server.listen(path, r));
  return {
    path, received,
    async close() { for (const s of sockets) s.destroy(); await new Promise<void>((r) => server.close(() => r())); await rm(dir, { recursive: true, force: true }); },
  };
}

