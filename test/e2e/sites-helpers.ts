// Helpers for the several-sites tests: disk images, restore points written with the
// repository writer (no QEMU: the VM is not the point there) and recorded in the site's log
// as a backup job would record them, and the chunk files a repository holds.
import { randomUUID } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { newEvent, type Actor } from '@cairn/contracts';
import type { Stack } from '@cairn/cli';
import { appendSignedBatch, logAs } from './provenance-helpers.ts';

const ACTOR: Actor = { kind: 'service', id: 'sites-e2e' };

/** A disk image that compresses to roughly half: random runs between runs of text. */
export function makeImage(size: number, seed: number): Uint8Array {
  let x = seed >>> 0 || 1;
  const next = () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x; };
  const out = Buffer.alloc(size);
  const text = Buffer.from('cairn keeps every restore point of every site. ');
  for (let o = 0; o < size;) {
    const run = Math.min(size - o, 4096 + (next() % 8192));
    if (next() % 2) for (let i = 0; i < run; i++) out[o + i] = next() & 0xff;
    else for (let i = 0; i < run; i++) out[o + i] = text[(o + i) % text.length]!;
    o += run;
  }
  return out;
}

/** Writes random 4 KiB blocks into `count` distinct chunks; returns the chunk indexes changed. */
export function changeChunks(image: Uint8Array, chunkSize: number, count: number, seed: number): number[] {
  const chunks = Math.ceil(image.length / chunkSize);
  const picked = new Set<number>();
  let x = seed;
  while (picked.size < Math.min(count, chunks)) { x = (x * 1103515245 + 12345) & 0x7fffffff; picked.add(x % chunks); }
  for (const c of picked) {
    const at = c * chunkSize + ((x >>> 3) % Math.max(1, chunkSize - 4096));
    for (let i = 0; i < 4096 && at + i < image.length; i++) { x = (x * 1103515245 + 12345) & 0x7fffffff; image[at + i] = x & 0xff; }
  }
  return [...picked].sort((a, b) => a - b);
}

export interface Vm { readonly vmId: string; readonly name: string; readonly size: number }

/** VmDiscovered in the site's log, as the coordinator records a VM. */
export async function discoverVm(stack: Stack, vm: Vm): Promise<void> {
  const streamId = `vm-${vm.vmId}`;
  await (await logAs(stack, 'snapshot-coordinator')).append(streamId, [newEvent('VmDiscovered', {
    vmId: vm.vmId, name: vm.name, hypervisor: { kind: 'qemu', host: `${stack.site}-host` }, tags: [], disks: [{ name: 'disk0', sizeBytes: vm.size }],
  }, { site: stack.site, actor: ACTOR, streamId })], { expectedRevision: 'any' });
}

/**
 * A backup of `image` as restore point of `vm` (incremental to `parentId` when `chunks` names
 * the changed chunks), recorded as a completed job: JobRequested, RestorePointCommitted,
 * JobCompleted. Returns the restore point id.
 *
 * The three events go in one batch expecting a new stream, which on nats-server 2.9 is three
 * publishes: the site's scheduler can take the manual JobRequested and append its start between
 * them (seen under the suite's load). The batch is then refused whole after its first event, and
 * the job is recorded again under a new id; the first id stays a job the scheduler fails on its
 * own (the VM's host is not a hypervisor), which nothing here looks at.
 */
export async function backup(stack: Stack, vm: Vm, image: Uint8Array, parent?: { id: string; chunks: readonly number[] }): Promise<string> {
  const cs = stack.repository.chunkSize;
  const extents = parent
    ? parent.chunks.map((c) => ({ offset: c * cs, data: image.subarray(c * cs, Math.min(image.length, (c + 1) * cs)) }))
    : Array.from({ length: Math.ceil(image.length / cs) }, (_, c) => ({ offset: c * cs, data: image.subarray(c * cs, Math.min(image.length, (c + 1) * cs)) }));
  const firstJobId = randomUUID();
  const started = Date.now();
  const w = await stack.repository.writeRestorePoint({
    vm: { id: vm.vmId, name: vm.name },
    ...(parent ? { parentId: parent.id } : {}),
    disks: [{ name: 'disk0', sizeBytes: image.length, extents }],
    labels: { jobId: firstJobId },
  });
  for (let attempt = 1; ; attempt++) {
    try {
      await recordJob(stack, vm, w, attempt === 1 ? firstJobId : randomUUID(), started, parent?.id);
      return w.restorePointId;
    } catch (e) {
      if ((e as Error).name !== 'WrongExpectedRevisionError' || attempt === 3) throw e;
    }
  }
}

/** The completed job of `backup` under `jobId`, in one batch on a new stream. */
async function recordJob(stack: Stack, vm: Vm, w: Awaited<ReturnType<Stack['repository']['writeRestorePoint']>>, jobId: string, started: number, parentId?: string): Promise<void> {
  const d = w.disks[0]!;
  const streamId = `job-${jobId}`;
  const meta = { site: stack.site, actor: ACTOR, streamId, correlationId: jobId };
  // Each event signed by the service that writes it (on a secure site), in one batch as before.
  await appendSignedBatch(stack, streamId, [
    { identity: 'scheduler', event: newEvent('JobRequested', { jobId, vmId: vm.vmId, policyId: null, mode: parentId ? 'auto' : 'full', trigger: 'manual' }, meta) },
    { identity: 'data-mover', event: newEvent('RestorePointCommitted', {
      restorePointId: w.restorePointId, jobId, vmId: vm.vmId, parentId: parentId ?? null,
      disks: [{ name: d.name, sizeBytes: d.sizeBytes, bytesRead: d.bytesRead, bytesStored: d.bytesStored, chunksNew: d.chunksNew, chunksReused: d.chunksReused }],
    }, meta) },
    { identity: 'scheduler', event: newEvent('JobCompleted', { jobId, restorePointId: w.restorePointId, bytesRead: d.bytesRead, bytesStored: d.bytesStored, durationMs: Date.now() - started }, meta) },
  ], { expectedRevision: 'no_stream' });
}

/** Chunk files of a directory repository: id -> size in bytes (sealed: compressed + envelope). */
export async function chunkFiles(repoDir: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const sub of await readdir(join(repoDir, 'chunks')).catch(() => [] as string[])) {
    for (const f of await readdir(join(repoDir, 'chunks', sub))) out.set(f, (await stat(join(repoDir, 'chunks', sub, f))).size);
  }
  return out;
}
