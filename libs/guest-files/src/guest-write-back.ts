// Writes a file into a running VM through its QEMU guest agent (guest-file-open/write/close),
// as Veeam's "restore to the original location" does: no network path into the guest, no
// mount on the host. An existing file is never replaced unless asked: without `overwrite` the
// path is first opened for reading (the agent accepts only fopen's r/w/a modes, not "wx"), and
// only when that fails as missing is it created.
import type { Readable } from 'node:stream';

/** The part of a guest agent client write-back needs (libs/hypervisor's GuestAgentClient fits). */
export interface GuestAgent {
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs?: number): Promise<T>;
}

export class GuestFileExistsError extends Error {
  constructor(readonly path: string) {
    super(`${path} exists in the guest; nothing was changed (pass --overwrite to replace it)`);
    this.name = 'GuestFileExistsError';
  }
}

/** Bytes per guest-file-write (base64 in one JSON line; the agent reads lines whole). */
const PIECE = 48 * 1024;

/** Whether a path exists in the guest (opens it for reading; the agent has no stat). */
export async function guestFileExists(agent: GuestAgent, guestPath: string): Promise<boolean> {
  const handle = await agent.execute<number>('guest-file-open', { path: guestPath, mode: 'r' }).catch((e: Error) => {
    if (/No such file or directory/i.test(e.message)) return undefined;
    throw e;
  });
  if (handle === undefined) return false;
  await agent.execute('guest-file-close', { handle }).catch(() => undefined);
  return true;
}

export async function writeIntoGuest(agent: GuestAgent, guestPath: string, data: Readable, o: { overwrite?: boolean } = {}): Promise<{ bytes: number }> {
  if (!guestPath.startsWith('/') || guestPath.includes('\0')) throw new Error(`guest path ${JSON.stringify(guestPath)} must be absolute`);
  if (!o.overwrite && await guestFileExists(agent, guestPath)) throw new GuestFileExistsError(guestPath);
  const handle = await agent.execute<number>('guest-file-open', { path: guestPath, mode: 'w' });
  let bytes = 0;
  try {
    let pending = Buffer.alloc(0);
    const flush = async (piece: Buffer) => {
      const r = await agent.execute<{ count: number }>('guest-file-write', { handle, 'buf-b64': piece.toString('base64') });
      if (r.count !== piece.length) throw new Error(`guest agent wrote ${r.count} of ${piece.length} bytes to ${guestPath}`);
      bytes += piece.length;
    };
    for await (const chunk of data) {
      pending = Buffer.concat([pending, chunk as Buffer]);
      while (pending.length >= PIECE) { await flush(pending.subarray(0, PIECE)); pending = pending.subarray(PIECE); }
    }
    if (pending.length > 0) await flush(pending);
    await agent.execute('guest-file-flush', { handle });
  } finally {
    await agent.execute('guest-file-close', { handle }).catch(() => undefined);
  }
  return { bytes };
}

/** Reads a file from the guest (to check a write-back). */
export async function readFromGuest(agent: GuestAgent, guestPath: string): Promise<Buffer> {
  const handle = await agent.execute<number>('guest-file-open', { path: guestPath, mode: 'r' });
  const parts: Buffer[] = [];
  try {
    for (;;) {
      const r = await agent.execute<{ count: number; 'buf-b64': string; eof: boolean }>('guest-file-read', { handle, count: PIECE });
      parts.push(Buffer.from(r['buf-b64'], 'base64'));
      if (r.eof || r.count === 0) break;
    }
  } finally {
    await agent.execute('guest-file-close', { handle }).catch(() => undefined);
  }
  return Buffer.concat(parts);
}
