// Garbage collection: mark everything reachable from committed manifests, then sweep the
// chunks and index pages nothing references and that are older than the grace period.
// Safety against concurrent backups (docs/repository.md, "Garbage collection"): the sweep
// holds `gc/sweep` and starts only once no writer holds a lease; writers starting meanwhile
// wait; manifests committed between mark and sweep are marked before anything is deleted.
import { CorruptObjectError } from '../errors.ts';
import { CHUNKS_PREFIX, idFromContentKey, INDEX_PREFIX } from '../format/layout.ts';
import { ZERO_ID, type Manifest } from '../format/manifest.ts';
import type { RepositoryCore } from '../repository-core.ts';
import { forEachLimit } from '../concurrency/semaphore.ts';
import { walkIndexes } from './chunk-uses.ts';
import { acquireSweepLease, bumpGeneration } from '../leases/leases.ts';

export interface GcOptions {
  /** Unreferenced objects younger than this are kept (a writer may be about to use them). */
  readonly graceMs: number;
  /** How long the sweep waits for running writers before deferring (default: the lease time). */
  readonly waitForWritersMs?: number;
  /** Report what would be deleted without deleting. */
  readonly dryRun?: boolean;
}

export interface GcReport {
  readonly restorePoints: number;
  readonly chunksReferenced: number;
  readonly chunksDeleted: number;
  readonly pagesDeleted: number;
  readonly bytesDeleted: number;
  /** Unreferenced but younger than the grace period. */
  readonly keptYoung: number;
  /** True when writers kept running past `waitForWritersMs`: nothing was deleted. */
  readonly deferred: boolean;
  /** Temp files of crashed writes removed (directory backend), older than the grace period. */
  readonly debrisFiles?: number;
}

interface Candidate { key: string; id: string; size: number; kind: 'chunk' | 'page' }

async function mark(core: RepositoryCore, ids: readonly string[], live: Set<string>): Promise<void> {
  const manifests: Manifest[] = [];
  for (const id of ids) manifests.push(await core.readManifest(id)); // damage aborts: never sweep blind
  await walkIndexes(
    core, manifests,
    (chunkId) => { live.add(chunkId); },
    (pageId) => { live.add(pageId); },
    (e, m, disk) => {
      throw new CorruptObjectError(e.key, `index page of ${m.id}/${disk} unreadable (${e.damage}); garbage collection stops rather than sweep without knowing what it references`);
    },
  );
}

export async function collectGarbage(core: RepositoryCore, options: GcOptions): Promise<GcReport> {
  const started = Date.now();
  const live = new Set<string>([ZERO_ID]);
  const seen = await core.listRestorePointIds();
  await mark(core, seen, live);

  const candidates: Candidate[] = [];
  let keptYoung = 0;
  for (const [prefix, kind] of [[CHUNKS_PREFIX, 'chunk'], [INDEX_PREFIX, 'page']] as const) {
    for await (const o of core.backend.list(prefix)) {
      const id = idFromContentKey(o.key);
      if (!id || live.has(id)) continue;
      if (started - o.mtime.getTime() < options.graceMs) { keptYoung++; continue; }
      candidates.push({ key: o.key, id, size: o.size, kind });
    }
  }
  const report = { restorePoints: seen.length, chunksReferenced: live.size - 1, keptYoung };
  if (candidates.length === 0 || options.dryRun) {
    return {
      ...report, deferred: false, bytesDeleted: options.dryRun ? candidates.reduce((s, c) => s + c.size, 0) : 0,
      chunksDeleted: options.dryRun ? candidates.filter((c) => c.kind === 'chunk').length : 0,
      pagesDeleted: options.dryRun ? candidates.filter((c) => c.kind === 'page').length : 0,
    };
  }

  const t = core.tuning;
  const lease = await acquireSweepLease(core.backend, {
    leaseMs: t.leaseMs ?? 600_000,
    pollMs: t.pollMs ?? 1000,
    waitMs: options.waitForWritersMs ?? t.leaseMs ?? 600_000,
  });
  if (!lease) return { ...report, deferred: true, bytesDeleted: 0, chunksDeleted: 0, pagesDeleted: 0 };
  try {
    // Writers that committed while we marked or waited: their references count too.
    const now = await core.listRestorePointIds();
    const known = new Set(seen);
    await mark(core, now.filter((id) => !known.has(id)), live);
    // No writer runs now: temp files older than the grace period belong to crashed puts
    // (removed whenever a sweep runs; a repository with nothing to sweep keeps them meanwhile).
    const debris = core.backend.removeDebris ? await core.backend.removeDebris(options.graceMs) : undefined;
    const doomed = candidates.filter((c) => !live.has(c.id));
    let n = 0;
    await forEachLimit(doomed, t.deleteConcurrency ?? 8, async (c) => {
      if (n++ % 256 === 0) await lease.assertHeld();
      await core.backend.delete(c.key);
    });
    return {
      ...report,
      restorePoints: now.length,
      chunksReferenced: live.size - 1,
      deferred: false,
      chunksDeleted: doomed.filter((c) => c.kind === 'chunk').length,
      pagesDeleted: doomed.filter((c) => c.kind === 'page').length,
      bytesDeleted: doomed.reduce((s, c) => s + c.size, 0),
      ...(debris ? { debrisFiles: debris.files } : {}),
    };
  } finally {
    // Even after a partial sweep: cached chunk listings elsewhere must be reloaded.
    await bumpGeneration(core.backend).catch(() => undefined);
    await lease.release().catch(() => undefined);
  }
}
