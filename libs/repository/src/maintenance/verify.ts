// Verify: re-reads the chunks (and index pages) of chosen restore points, or a sampled
// fraction of their chunks, and checks each one fully (authentication, decompression, id).
// Every damaged object is reported with all restore points and disk offsets that use it.
import type { DamagedObject } from '../errors.ts';
import type { Manifest } from '../format/manifest.ts';
import { ObjectReadError, type RepositoryCore, DEFAULT_FETCH_CONCURRENCY } from '../repository-core.ts';
import { forEachLimit } from '../concurrency/semaphore.ts';
import { findUses, toDamaged, UseCollector, walkIndexes } from './chunk-uses.ts';

export interface VerifyOptions {
  /** Restore point ids to check (default: all). */
  readonly restorePoints?: readonly string[];
  /** Fraction of the distinct chunks to check, 0..1 (default 1: all). Index pages are always checked. */
  readonly sample?: number;
  /**
   * Awaited before each chunk is read: a verify in the background waits there while the
   * process has jobs to run (data-mover.main.ts holds it while transfers run).
   */
  readonly pace?: () => Promise<void>;
}

export interface VerifyReport {
  readonly ok: boolean;
  readonly restorePoints: readonly string[];
  readonly chunksTotal: number;
  readonly chunksChecked: number;
  readonly bytesChecked: number;
  readonly pagesChecked: number;
  readonly damaged: readonly DamagedObject[];
}

export async function verify(core: RepositoryCore, options: VerifyOptions = {}): Promise<VerifyReport> {
  const sample = options.sample ?? 1;
  if (!(sample >= 0 && sample <= 1)) throw new RangeError(`sample must be within 0..1, got ${sample}`);
  const ids = options.restorePoints ? [...options.restorePoints] : await core.listRestorePointIds();
  const manifests: Manifest[] = [];
  for (const id of ids) manifests.push(await core.readManifest(id));

  const uses = new UseCollector();
  const pageUses = new UseCollector();
  const failures: ObjectReadError[] = [];
  const pages = new Set<string>();
  await walkIndexes(
    core, manifests,
    (chunkId, m, disk, offset) => uses.add(chunkId, m.id, disk, offset),
    (pageId, m, disk, offset) => { pages.add(pageId); pageUses.add(pageId, m.id, disk, offset); },
    (e) => { if (!failures.some((f) => f.id === e.id)) failures.push(e); },
  );

  const all = [...uses.ids()];
  const chosen = sample >= 1 ? all : all.filter(() => Math.random() < sample);
  if (sample > 0 && chosen.length === 0 && all.length > 0) chosen.push(all[Math.floor(Math.random() * all.length)] as string);
  let bytesChecked = 0;
  await forEachLimit(chosen, core.tuning.fetchConcurrency ?? DEFAULT_FETCH_CONCURRENCY, async (id) => {
    await options.pace?.();
    try {
      bytesChecked += (await core.readChunk(id)).byteLength;
    } catch (e) {
      if (e instanceof ObjectReadError) failures.push(e);
      else throw e;
    }
  });

  // Name every restore point that uses a damaged object, not only the ones checked.
  const everywhere = failures.length && options.restorePoints ? await findUses(core, new Set(failures.map((f) => f.id))) : undefined;
  const damaged = failures.map((f) => toDamaged(f, everywhere ?? (f.kind === 'chunk' ? uses : pageUses)));
  return {
    ok: damaged.length === 0,
    restorePoints: ids,
    chunksTotal: all.length,
    chunksChecked: chosen.length,
    bytesChecked,
    pagesChecked: pages.size,
    damaged,
  };
}
