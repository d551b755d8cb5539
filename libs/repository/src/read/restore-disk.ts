// Full restore of one disk to a raw or qcow2 file: parallel chunk fetches, sparse writes
// (zero chunks are holes), written to a temporary file that is renamed only when every chunk
// passed its checks, so a damaged restore point never leaves a plausible-looking image.
import { execFile } from 'node:child_process';
import { chmod, open, rename, rm, stat } from 'node:fs/promises';
import { promisify } from 'node:util';
import { RepositoryError } from '../errors.ts';
import { randomId } from '../format/ids.ts';
import type { IndexPage } from '../format/index-page.ts';
import { ZERO_ID } from '../format/manifest.ts';
import type { ChunkRange } from '../workers/chunk-protocol.ts';
import { ObjectReadError, type RepositoryCore, DEFAULT_FETCH_CONCURRENCY } from '../repository-core.ts';
import { Semaphore } from '../concurrency/semaphore.ts';
import { damagedError, type IndexedDisk } from './disk-reader.ts';
import { openDropBehind, type DropBehind } from './drop-behind.ts';

const run = promisify(execFile);
/**
 * Written bytes after which a restore starts the next background write-back (datasync). What is
 * left dirty after the last one is what the final fsync waits for, between the last byte and the
 * restore's end: 128 MiB left it 0.08-0.10 s on this machine's disk, 32 MiB 0.00-0.02 s, with
 * the same CPU (docs/benchmarks.md, 6 December 18:47–19:46).
 */
const WRITEBACK_BYTES = 32 * 1024 * 1024;
/**
 * Chunks handed to a worker in one message (2 MiB of 256 KiB chunks): one round trip and a few
 * promises per batch instead of per chunk on the main thread, which the stack's services share.
 * A batch holds `fetchConcurrency / BATCH_CHUNKS` of them in flight: the fetches a remote
 * backend makes at once (each chunk of a batch is its own request there).
 */
const BATCH_CHUNKS = 8;
/**
 * The batch of a local directory repository, whose chunk files the workers read themselves
 * (no fetch in flight on the main thread, nothing held but ids and paths): 8 MiB of 256 KiB
 * chunks, two batches in flight per worker (one worked on, one waiting). The main thread's share
 * of a restore is per batch (paths, the message, the reply, the promises): 32 instead of 8
 * chunks took it from 0.23 to 0.13 CPU-s for the 2 GiB benchmark disk (docs/benchmarks.md,
 * "2026-12-07: the restore's batches of a local repository").
 */
const LOCAL_BATCH_CHUNKS = 32;
const LOCAL_BATCHES_PER_WORKER = 2;
/**
 * Distinct chunks the pieces of slots of pieces gather before they go to a worker. They travel
 * apart from whole chunks, sorted by chunk: an incremental packs the changed bytes of several
 * slots (a dozen slots apart on a disk with 2% changed) into one chunk, which a worker then opens
 * once for all of them instead of once per slot.
 */
const PIECE_BATCH_CHUNKS = 16;

export interface RestoreOptions {
  readonly format?: 'raw' | 'qcow2';
  /** Replace an existing target file (default: refuse). */
  readonly overwrite?: boolean;
  /**
   * The temporary file to write (default a random name beside the target). A restore job
   * names it after itself, so a redelivery after a crash replaces what the dead attempt left.
   */
  readonly partialPath?: string;
  /** Called as chunks land: bytes of the disk done (holes count as done) out of its size. */
  readonly onProgress?: (bytesDone: number, bytesTotal: number) => void;
  /** A bandwidth limit: awaited with each chunk's size before the chunk is fetched and written. */
  readonly throttle?: (bytes: number) => Promise<void>;
}

export interface RestoreResult {
  readonly path: string;
  readonly format: 'raw' | 'qcow2';
  readonly sizeBytes: number;
  readonly chunksRead: number;
  readonly chunksZero: number;
  /** Why the written-back pages could not be dropped from the page cache (drop-behind), when they could not. */
  readonly dropBehindUnavailable?: string;
  /**
   * Where the time went (ms): fetching, opening and writing every chunk (`write`, the page
   * cache's part), the final `fsync` of the temporary file (`sync`, the disk's part: what makes
   * a restore reported complete durable), and the rename or qcow2 conversion (`finish`).
   */
  readonly timings: { readonly writeMs: number; readonly syncMs: number; readonly finishMs: number };
}

export async function restoreDisk(
  core: RepositoryCore,
  disk: IndexedDisk,
  targetPath: string,
  options: RestoreOptions = {},
): Promise<RestoreResult> {
  const format = options.format ?? 'raw';
  if (!options.overwrite) {
    const exists = await stat(targetPath).then(() => true, () => false);
    if (exists) throw new RepositoryError(`restore target ${targetPath} exists (pass overwrite to replace it)`);
  }
  const rawPath = options.partialPath ?? `${targetPath}.cairn-partial-${randomId(4)}`;
  if (options.partialPath) await rm(rawPath, { force: true }); // a dead attempt's leftover
  const cs = disk.chunkSize;
  const nChunks = Math.ceil(disk.sizeBytes / cs);
  const E = disk.pageEntries;
  let chunksRead = 0;
  let chunksZero = 0;
  const failures: ObjectReadError[] = [];
  // Owner-only (0600, less what the umask takes): a disk image holds everything the VM held.
  const fh = await open(rawPath, 'wx', 0o600);
  // A raw target's written-back pages leave the page cache as the restore goes (drop-behind.ts);
  // a qcow2 target's raw file is read again at once by the conversion, so it keeps them.
  const dropping = format === 'raw' && process.env['CAIRN_RESTORE_DROP_BEHIND'] !== '0' ? await openDropBehind(rawPath) : undefined;
  const dropper: DropBehind | undefined = dropping && 'drop' in dropping ? dropping : undefined;
  const t0 = performance.now();
  let tWritten: number;
  let tSynced: number;
  try {
    await fh.truncate(disk.sizeBytes); // sparse: zero chunks stay holes
    // One bounded stream of chunk fetches across page boundaries (no barrier per page). Chunks
    // go to the workers in batches of BATCH_CHUNKS (LOCAL_BATCH_CHUNKS from a local repository;
    // a throttled restore keeps the small batches, so that its writes come in even steps): one
    // round trip per batch, not per chunk. A slot made of pieces (an incremental's) becomes one
    // item per piece, each writing its range of its chunk at its place (the file is sparse: zero
    // pieces stay holes), so pieced slots are opened and written off the main thread like whole
    // chunks; their items gather in batches of their own (PIECE_BATCH_CHUNKS).
    const local = core.backend.localPath !== undefined && !options.throttle;
    const batchChunks = local ? LOCAL_BATCH_CHUNKS : BATCH_CHUNKS;
    const concurrency = core.tuning.fetchConcurrency ?? DEFAULT_FETCH_CONCURRENCY;
    const batchSlots = new Semaphore(local ? LOCAL_BATCHES_PER_WORKER * core.pool.size : Math.max(1, Math.ceil(concurrency / BATCH_CHUNKS)));
    const running = new Set<Promise<void>>();
    let fatal: unknown;
    // Write-back while restoring: left alone, the kernel keeps gigabytes dirty (a large page
    // cache) and the final sync writes them all at the end, after the CPU work is done.
    // Each write-back ends with the bytes it made durable dropped from the page cache: everything
    // below the lowest position not yet written when it began (no batch writes below it any more).
    let unsynced = 0;
    let syncing: Promise<void> | undefined;
    /** The lowest position of each batch made and not finished yet (waiting for a slot or written). */
    const inFlight = new Map<object, number>();
    /** Positions below this were handed to a batch (the loop's place). */
    let handedTo = 0;
    const writtenBelow = (): number => {
      let low = Math.min(handedTo, batch[0]?.position ?? Infinity);
      for (const p of pieces) low = Math.min(low, p.position);
      for (const p of inFlight.values()) low = Math.min(low, p);
      return low;
    };
    const wrote = (bytes: number) => {
      unsynced += bytes;
      if (unsynced < WRITEBACK_BYTES || syncing) return;
      unsynced = 0;
      const durableBelow = writtenBelow();
      syncing = fh.datasync()
        .then(() => { if (dropper && durableBelow > 0) dropper.drop(0, durableBelow); })
        .catch((e: unknown) => { fatal ??= e; })
        .finally(() => { syncing = undefined; });
    };
    let done = 0;
    const progressed = (bytes: number) => {
      done += bytes;
      options.onProgress?.(done, disk.sizeBytes);
    };
    /** Runs `write` in a slot of `slots`; resolves once it has started (the loop goes on meanwhile). */
    const start = async (slots: Semaphore, lowest: number, write: () => Promise<ReadonlyArray<number | ObjectReadError>>) => {
      const token = {};
      inFlight.set(token, lowest);
      await slots.acquire();
      const task = (async () => {
        try {
          for (const r of await write()) {
            if (r instanceof ObjectReadError) { failures.push(r); continue; }
            chunksRead++;
            wrote(r);
            progressed(r);
          }
        } catch (err) {
          if (err instanceof ObjectReadError) failures.push(err);
          else fatal ??= err;
        } finally {
          slots.release();
        }
      })();
      running.add(task);
      void task.finally(() => { running.delete(task); inFlight.delete(token); });
    };
    let batch: Array<{ id: string; position: number; range?: ChunkRange }> = [];
    const flush = () => {
      const chunks = batch;
      batch = [];
      // The worker that opens a chunk writes it into the target itself.
      return start(batchSlots, chunks[0]!.position, () => core.readChunksTo(chunks, fh.fd));
    };
    let pieces: Array<{ id: string; position: number; range: ChunkRange }> = [];
    const pieceIds = new Set<string>();
    const flushPieces = () => {
      // Pieces of the same chunk next to each other: the worker opens it once for them.
      const lowest = pieces.reduce((low, p) => Math.min(low, p.position), Infinity);
      const items = pieces.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : a.position - b.position));
      pieces = [];
      pieceIds.clear();
      return start(batchSlots, lowest, () => core.readChunksTo(items, fh.fd));
    };
    for (let p = 0; p * E < nChunks && fatal === undefined; p++) {
      let page: IndexPage;
      try {
        page = await disk.indexPage(p);
      } catch (e) {
        if (e instanceof ObjectReadError) { failures.push(e); continue; }
        throw e;
      }
      for (let i = 0; i < page.count && fatal === undefined; i++) {
        const slot = page.slot(i);
        const offset = (p * E + i) * cs;
        handedTo = offset;
        if (slot === null) { chunksZero++; progressed(Math.min(cs, disk.sizeBytes - offset)); continue; }
        if (options.throttle) await options.throttle(Math.min(cs, disk.sizeBytes - offset));
        if ('chunk' in slot) {
          batch.push({ id: slot.chunk, position: offset });
          if (batch.length >= batchChunks) await flush();
        } else {
          let at = offset;
          for (const piece of slot.pieces) {
            if (piece.id === ZERO_ID) progressed(piece.length);
            else {
              pieces.push({ id: piece.id, position: at, range: { from: piece.offset, length: piece.length } });
              pieceIds.add(piece.id);
            }
            at += piece.length;
          }
          // A batch ends between slots, so it may pass the bound by a slot's chunks.
          if (pieceIds.size >= PIECE_BATCH_CHUNKS) await flushPieces();
        }
      }
    }
    if (batch.length && fatal === undefined) await flush();
    if (pieces.length && fatal === undefined) await flushPieces();
    await Promise.all(running);
    await syncing;
    if (fatal !== undefined) throw fatal;
    if (failures.length) throw await damagedError(core, failures);
    tWritten = performance.now();
    await fh.sync();
    tSynced = performance.now();
  } catch (e) {
    dropper?.close();
    await fh.close().catch(() => undefined);
    await rm(rawPath, { force: true });
    throw e;
  }
  dropper?.close();
  await fh.close();
  try {
    if (format === 'qcow2') {
      const qPath = `${options.partialPath ?? `${targetPath}.cairn-partial-${randomId(4)}`}.qcow2`;
      try {
        await run('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', rawPath, qPath]);
        await chmod(qPath, 0o600);
        await rename(qPath, targetPath);
      } catch (e) {
        await rm(qPath, { force: true });
        throw new RepositoryError(`qemu-img convert to qcow2 failed: ${(e as Error).message}`, { cause: e });
      }
    } else {
      await rename(rawPath, targetPath);
    }
  } finally {
    await rm(rawPath, { force: true });
  }
  const timings = { writeMs: tWritten - t0, syncMs: tSynced - tWritten, finishMs: performance.now() - tSynced };
  return {
    path: targetPath, format, sizeBytes: disk.sizeBytes, chunksRead, chunksZero, timings,
    ...(dropping && 'unavailable' in dropping ? { dropBehindUnavailable: dropping.unavailable } : {}),
  };
}

