// Cairn's side of the benchmark, run as its own process so it is timed and its peak RSS
// measured exactly like restic's and borg's. One operation per process:
//   init | full | incremental | restore   (--work <dir> --image <file> --changes <json> [--target <file>])
// Prints one JSON line: the operation's own duration (without process start-up and key
// derivation) and the restore point it made or read.
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DirectoryBackend, initRepository, openRepository, type Repository } from '@cairn/repository';
import { MiB } from './image.ts';
import { chunkAlignedRegions, readRegions, type Region } from './extents.ts';

/** restic's calibrated scrypt parameters on this machine, so key derivation costs the same. */
export const BENCH_KDF = { N: 32768, r: 8, p: 5 } as const;
const VM = { id: 'bench-vm', name: 'bench' };
const DISK = 'disk0';

interface State {
  readonly lastRestorePointId: string;
}

// libuv's default pool of 4 threads: since deferred puts no longer wait for an fsync each,
// 16 threads (as before) made no difference to a full backup and cost a restore ~8%
// (probe.ts, 2 GiB, two alternating pairs each).

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    work: { type: 'string' },
    image: { type: 'string' },
    changes: { type: 'string' },
    target: { type: 'string' },
    'chunk-size': { type: 'string' },
  },
});
const op = positionals[0];
const work = values.work ?? fail('--work is required');
const passphrase = process.env.CAIRN_REPO_PASSPHRASE ?? fail('CAIRN_REPO_PASSPHRASE is not set');
const statePath = join(work, 'cairn-state.json');

function fail(message: string): never {
  console.error(`cairn-child: ${message}`);
  process.exit(2);
}

/** Extents read in pieces of whole chunks, ~4 MiB, so each read feeds several chunks. */
function pieceSize(chunkSize: number): number {
  return chunkSize * Math.max(1, Math.round((4 * MiB) / chunkSize));
}

async function main(): Promise<unknown> {
  // CAIRN_BENCH_FSYNC=0 is for profiling only (how much per-object fsync costs); the
  // published figures keep the backend's default, durable puts, as restic and borg do.
  const fsync = process.env.CAIRN_BENCH_FSYNC !== '0';
  const backend = new DirectoryBackend(join(work, 'repo'), { createRoot: op === 'init', fsync });
  if (op === 'init') {
    const chunkSize = values['chunk-size'] ? Number(values['chunk-size']) : undefined;
    const started = performance.now();
    const repo = await initRepository(backend, { passphrase, kdf: BENCH_KDF, ...(chunkSize ? { chunkSize } : {}) });
    await repo.close();
    return { opMs: performance.now() - started };
  }
  const opened = performance.now();
  const repo = await openRepository(backend, { passphrase });
  const openMs = performance.now() - opened;
  try {
    return await operate(repo, openMs);
  } finally {
    await repo.close();
  }
}

async function operate(repo: Repository, openMs: number): Promise<unknown> {
  const image = values.image ?? fail('--image is required');
  const started = performance.now();
  if (op === 'full' || op === 'incremental') {
    const sizeBytes = (await stat(image)).size;
    let regions: Region[] = [{ offset: 0, length: sizeBytes }];
    let parentId: string | undefined;
    if (op === 'incremental') {
      const state = JSON.parse(await readFile(statePath, 'utf8')) as State;
      parentId = state.lastRestorePointId;
      const changes = JSON.parse(await readFile(values.changes ?? fail('--changes is required'), 'utf8')) as {
        blockSize: number;
        blocks: number[];
      };
      regions = chunkAlignedRegions(changes.blocks, changes.blockSize, repo.chunkSize, sizeBytes);
    }
    const readBytes = regions.reduce((n, r) => n + r.length, 0);
    const rp = await repo.writeRestorePoint({
      vm: VM,
      ...(parentId ? { parentId } : {}),
      disks: [{ name: DISK, sizeBytes, extents: readRegions(image, regions, pieceSize(repo.chunkSize)) }],
    });
    const id = rp.restorePointId;
    await writeFile(statePath, JSON.stringify({ lastRestorePointId: id } satisfies State));
    return { opMs: performance.now() - started, openMs, restorePointId: id, readBytes, chunkSize: repo.chunkSize };
  }
  if (op === 'restore') {
    const state = JSON.parse(await readFile(statePath, 'utf8')) as State;
    await repo.restoreDisk(state.lastRestorePointId, DISK, values.target ?? fail('--target is required'), { format: 'raw' });
    return { opMs: performance.now() - started, openMs, restorePointId: state.lastRestorePointId };
  }
  return fail(`unknown operation ${op ?? '(none)'}; use init, full, incremental or restore`);
}

try {
  const result = await main();
  console.log(JSON.stringify(result));
} catch (e) {
  console.error(`cairn-child ${op}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  process.exitCode = 1;
}
