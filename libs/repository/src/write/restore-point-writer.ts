// Commits a restore point: takes a share of the process's writer lease (GC safety), writes
// each disk's chunks and index pages, and writes the manifest last. Any failure leaves no
// manifest, so no part of the restore point is ever visible; the error says which object
// failed and why.
import { InvalidExtentError, RestorePointWriteError } from '../errors.ts';
import { newRestorePointId } from '../format/ids.ts';
import { MANIFEST_VERSION, type DiskManifest, type DiskStats, type Manifest } from '../format/manifest.ts';
import { readGeneration } from '../leases/leases.ts';
import type { WriterLeaseHold } from '../leases/shared-writer-lease.ts';
import type { RepositoryCore } from '../repository-core.ts';
import { DiskWriter, type DiskInput } from './disk-writer.ts';
import type { KnownChunks } from './known-chunks.ts';
import { WriterSession } from './writer-session.ts';
import { Semaphore } from '../concurrency/semaphore.ts';

export interface VmInfo {
  readonly id: string;
  readonly name: string;
  readonly config?: unknown;
}

export interface WriteRestorePointInput {
  readonly vm: VmInfo;
  /** The restore point this one is incremental to: regions not sent are copied from it. */
  readonly parentId?: string;
  readonly disks: readonly DiskInput[];
  readonly labels?: Readonly<Record<string, string>>;
  /**
   * Chunk ids a verify found damaged: when the data yields one of them, it is stored again
   * (overwriting the damaged object, unless a lock forbids it) instead of being trusted.
   */
  readonly heal?: readonly string[];
}

export interface WriteRestorePointResult {
  readonly restorePointId: string;
  readonly disks: ReadonlyArray<DiskStats & { readonly name: string; readonly sizeBytes: number }>;
  readonly manifest: Manifest;
}

export async function writeRestorePoint(
  core: RepositoryCore,
  known: KnownChunks,
  input: WriteRestorePointInput,
): Promise<WriteRestorePointResult> {
  const names = new Set<string>();
  for (const d of input.disks) {
    if (!d.name || names.has(d.name)) throw new InvalidExtentError(`disk names must be unique and non-empty (got "${d.name}")`);
    names.add(d.name);
  }
  const createdAt = new Date();
  const id = newRestorePointId(createdAt);
  const t = core.tuning;
  let lease: WriterLeaseHold | undefined;
  let step = 'taking the writer lease';
  // Only changed blocks (an incremental): few objects, each fsynced while the rest is still
  // being read (deferred-names.ts), so the commit after the last extent does not wait for them all.
  const session = new WriterSession({ syncEarly: input.disks.length > 0 && input.disks.every((d) => d.partial === true) });
  const heal = new Set(input.heal ?? []);
  // The chunk workers start while the lease is taken and the caller's first extent is read.
  core.pool.warm();
  try {
    lease = await core.writerLease.acquire();
    const parent = input.parentId ? await core.readManifest(input.parentId) : undefined;
    step = 'reading the garbage collection generation';
    const generation = await known.refresh();
    // Chunks in flight across the whole pipeline: enough to keep every worker and upload busy.
    const slots = new Semaphore(core.pool.size * 2 + (t.uploadConcurrency ?? 16));
    const disks: DiskManifest[] = [];
    for (const d of input.disks) {
      step = `writing disk ${d.name}`;
      const parentDisk = parent?.disks.find((p) => p.name === d.name);
      if (parent && !parentDisk && !d.full) {
        throw new InvalidExtentError(`disk ${d.name} is not in parent ${parent.id}: send it whole with \`full: true\``);
      }
      disks.push(await new DiskWriter(core, known, d, parentDisk, slots, session, heal).write());
    }
    // Chunks and index pages were put with deferSync: make them durable before the
    // manifest names them, or a crash could leave a restore point without its data.
    step = 'making the chunks and index pages durable';
    await core.backend.flush(session.group);
    session.markDurable();
    step = 'committing the manifest';
    await lease.assertHeld();
    if ((await readGeneration(core.backend)) !== generation) {
      throw new Error('a garbage collection swept while this writer was considered gone; chunks it relies on may be deleted');
    }
    const manifest: Manifest = {
      // Version 2 only when a disk's index has slots of pieces: other restore points stay readable by older readers.
      version: disks.some((d) => d.indexFormat === 2) ? MANIFEST_VERSION : 1,
      id,
      vm: input.vm.config === undefined ? { id: input.vm.id, name: input.vm.name } : { ...input.vm },
      ...(input.parentId ? { parentId: input.parentId } : {}),
      ...(input.labels ? { labels: { ...input.labels } } : {}),
      createdAt: createdAt.toISOString(),
      committedAt: new Date().toISOString(),
      disks,
    };
    await core.writeManifest(manifest);
    return {
      restorePointId: id,
      disks: disks.map((d) => ({ name: d.name, sizeBytes: d.sizeBytes, ...d.stats })),
      manifest,
    };
  } catch (e) {
    if (e instanceof InvalidExtentError || (e as Error).name === 'RestorePointNotFoundError') throw e;
    throw new RestorePointWriteError(
      `restore point ${id} of VM ${input.vm.name} was not committed (failed while ${step}): ${(e as Error).message}`,
      { cause: e },
    );
  } finally {
    session.end();
    await lease?.release().catch(() => undefined);
  }
}
