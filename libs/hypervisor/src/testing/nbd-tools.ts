// Test fixture: read an NBD export and its changed blocks with Cairn's own NBD client (the
// data mover's), and, as an independent check, with libnbd's nbdcopy.
import { execFile } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { randomUUID } from 'node:crypto';
import { NbdClient, changedExtents } from '@cairn/nbd';

const run = promisify(execFile);

export const nbdUri = (socketPath: string, exportName: string) => `nbd+unix:///${exportName}?socket=${socketPath}`;

/** The whole export, read with @cairn/nbd. */
export async function readExport(socketPath: string, exportName: string): Promise<Buffer> {
  const client = await NbdClient.connect({ path: socketPath }, { exportName });
  try {
    return Buffer.from(await client.read(0, client.size));
  } finally {
    await client.close();
  }
}

/** The whole export, read with nbdcopy (libnbd). */
export async function readExportWithNbdcopy(socketPath: string, exportName: string): Promise<Buffer> {
  const file = join(tmpdir(), `cairn-nbdcopy-${randomUUID()}.raw`);
  try {
    await run('nbdcopy', [nbdUri(socketPath, exportName), file]);
    return await readFile(file);
  } finally {
    await rm(file, { force: true });
  }
}

/** Indexes of `granularity`-sized blocks the dirty-bitmap context marks changed. */
export async function dirtyBlocks(socketPath: string, exportName: string, context: string, granularity = 64 * 1024): Promise<Set<number>> {
  const client = await NbdClient.connect({ path: socketPath }, { exportName, metaContexts: [context] });
  const out = new Set<number>();
  try {
    for await (const e of changedExtents(client, context)) {
      for (let b = Math.floor(e.offset / granularity); b < Math.ceil((e.offset + e.length) / granularity); b++) out.add(b);
    }
  } finally {
    await client.close();
  }
  return out;
}

/** The same with nbdinfo (libnbd), as an independent check. */
export async function dirtyBlocksWithNbdinfo(socketPath: string, exportName: string, context: string, granularity = 64 * 1024): Promise<Set<number>> {
  const { stdout } = await run('nbdinfo', [`--map=${context}`, '--json', nbdUri(socketPath, exportName)], { maxBuffer: 64 << 20 });
  const extents = JSON.parse(stdout) as Array<{ offset: number; length: number; type: number }>;
  const out = new Set<number>();
  for (const e of extents) {
    if ((e.type & 1) === 0) continue;
    for (let b = Math.floor(e.offset / granularity); b < Math.ceil((e.offset + e.length) / granularity); b++) out.add(b);
  }
  return out;
}
