// One transfer: read a snapshot's disks over NBD (only the changed extents when the parent
// restore point and the dirty bitmap allow it, else every allocated extent) and write them
// as a restore point. Reading, processing and uploading overlap; memory stays bounded.
import type { NbdEndpoint } from '@cairn/contracts';
import { NbdPool, allocatedExtents, changedExtents, type NbdReader } from '@cairn/nbd';
import type { DiskInput, Extent, RestorePointWriter } from '@cairn/repository';
import type { Static } from '@sinclair/typebox';
import { partialChunks, planReads, readAhead, type PlannedRead } from './extent-plan.ts';
import type { Throttle } from './bandwidth.ts';

type Endpoint = Static<typeof NbdEndpoint>;

export interface TransferInput {
  readonly jobId: string;
  /** `config`: the VM's configuration and the snapshot's consistency, kept in the manifest. */
  readonly vm: { readonly id: string; readonly name: string; readonly config?: Readonly<Record<string, unknown>> };
  readonly nbd: Endpoint;
  readonly mode: 'auto' | 'full';
  /**
   * The parent as the scheduler knows it (null: none to build on, a full read). Absent, the
   * repository's newest point of the VM; on a redelivery the repository is also asked whether a
   * mover committed this job's restore point already and died.
   */
  readonly parent?: { readonly restorePointId: string; readonly disks: ReadonlyArray<{ readonly name: string; readonly sizeBytes: number }> } | null;
  readonly redelivered?: boolean;
  /** false: the policy wants no file index (the manifest says so in its labels). */
  readonly fileIndex?: boolean;
  /** Chunk ids a verify found damaged: stored again when the data yields them (TransferWork.heal). */
  readonly heal?: readonly string[];
}

export interface TransferProgress {
  readonly disk: string;
  readonly bytesDone: number;
  readonly bytesPlanned: number | null;
}

export interface TransferOptions {
  /** The writer role: write the restore point, read the parent's unchanged data. */
  readonly repository: RestorePointWriter;
  readonly onProgress?: (p: TransferProgress) => void;
  /** Connections per disk export (default 2). */
  readonly connections?: number;
  /** Bytes per NBD read (a multiple of the chunk size; default 4 MiB or one chunk). */
  readonly readBytes?: number;
  /** Reads in flight per disk (default 4). */
  readonly readAhead?: number;
  /** Bandwidth limits of this job (bandwidth.ts): paid before each read from the hypervisor. */
  readonly throttle?: Throttle;
  /** Opens the NBD reader (tests may wrap it). */
  readonly connect?: (endpoint: Endpoint, exportName: string, metaContexts: string[]) => Promise<NbdReader>;
}

export interface TransferResult {
  readonly restorePointId: string;
  readonly parentId: string | null;
  readonly disks: Array<{ name: string; sizeBytes: number; bytesRead: number; bytesStored: number; chunksNew: number; chunksReused: number; mode: 'full' | 'incremental'; reason: string }>;
}

function address(endpoint: Endpoint): { path: string } | { host: string; port: number } {
  return 'socket' in endpoint ? { path: endpoint.socket } : { host: endpoint.host, port: endpoint.port };
}

async function defaultConnect(endpoint: Endpoint, exportName: string, metaContexts: string[], connections: number): Promise<NbdReader> {
  return NbdPool.connect(address(endpoint), { exportName, metaContexts, connections });
}

/** Finds the restore point an incremental builds on: the newest of this VM with every disk. */
async function findParent(repo: TransferOptions['repository'], vmId: string, jobId: string) {
  const points = (await repo.listRestorePoints()).filter((p) => p.vm.id === vmId);
  const already = points.find((p) => p.labels?.['jobId'] === jobId);
  const newest = points.filter((p) => p !== already).sort((a, b) => b.committedAt.localeCompare(a.committedAt))[0];
  return { already, parent: newest };
}

export async function runTransfer(input: TransferInput, options: TransferOptions): Promise<TransferResult> {
  const repo = options.repository;
  // The scheduler's parent holds on a redelivery too (it may have ruled the newest point out);
  // a redelivery asks the repository whether an earlier delivery committed this job already.
  const found = input.parent !== undefined && !input.redelivered ? undefined : await findParent(repo, input.vm.id, input.jobId);
  const already = found?.already;
  const parent = input.parent !== undefined ? (input.parent ? { id: input.parent.restorePointId, disks: input.parent.disks } : undefined) : found?.parent;
  if (already) {
    // A previous delivery committed this job's restore point and died before saying so.
    return {
      restorePointId: already.id,
      parentId: already.parentId ?? null,
      disks: already.disks.map((d) => ({ ...d, bytesRead: 0, bytesStored: 0, chunksNew: 0, chunksReused: 0, mode: 'full', reason: 'committed by an earlier delivery' })),
    };
  }
  const chunkSize = repo.chunkSize;
  const readBytes = options.readBytes ?? Math.max(chunkSize, Math.floor((4 * 1024 * 1024) / chunkSize) * chunkSize);
  const readers: NbdReader[] = [];
  const modes: TransferResult['disks'] = [];
  // Bytes read from the hypervisor per disk (what a backup costs the VM's storage).
  const sourceReads = new Map<string, { read: number }>();
  try {
    const disks: DiskInput[] = [];
    for (const exp of input.nbd.exports) {
      const parentHasDisk = parent?.disks.some((d) => d.name === exp.disk && d.sizeBytes === exp.sizeBytes) ?? false;
      const incremental = input.mode !== 'full' && exp.mode === 'incremental' && !!exp.dirtyBitmapContext && parentHasDisk;
      const reason = incremental ? exp.reason
        : input.mode === 'full' ? 'full backup requested'
        : exp.mode === 'full' ? exp.reason
        : !parent ? 'no earlier restore point of this VM in the repository'
        : 'the earlier restore point lacks this disk at this size';
      const contexts = incremental ? ['base:allocation', exp.dirtyBitmapContext!] : ['base:allocation'];
      const reader = options.connect
        ? await options.connect(input.nbd, exp.exportName, contexts)
        : await defaultConnect(input.nbd, exp.exportName, contexts, options.connections ?? 2);
      readers.push(reader);
      if (reader.size !== exp.sizeBytes) throw new Error(`export ${exp.exportName} is ${reader.size} bytes, the snapshot said ${exp.sizeBytes}`);
      const extentsOf = () => (incremental ? changedExtents(reader, exp.dirtyBitmapContext!) : allocatedExtents(reader));
      // A first pass over the (cheap) block status gives the total, for progress and ETA.
      let planned = 0;
      for await (const w of planReads(extentsOf(), chunkSize, exp.sizeBytes, readBytes)) planned += w.length;
      const plan = planReads(extentsOf(), chunkSize, exp.sizeBytes, readBytes);
      const parentDisk = incremental ? await repo.openDisk(parent!.id, exp.disk) : undefined;
      const counters = { read: 0 };
      const readWindow = async (w: PlannedRead): Promise<Uint8Array> => {
        if (!parentDisk) {
          await options.throttle?.take(w.length);
          counters.read += w.length;
          return reader.read(w.offset, w.length);
        }
        await options.throttle?.take(w.marked.reduce((n, m) => n + m.length, 0));
        // Only the changed bytes come from the hypervisor; the unchanged rest of a partly
        // changed chunk comes from the parent restore point.
        const buf = Buffer.allocUnsafe(w.length);
        for (const p of partialChunks(w, chunkSize)) {
          buf.set(await parentDisk.read(p.offset, p.length), p.offset - w.offset);
        }
        await Promise.all(w.marked.map((m) => reader.read(m.offset, m.length, buf.subarray(m.offset - w.offset, m.offset - w.offset + m.length))));
        counters.read += w.marked.reduce((n, m) => n + m.length, 0);
        return buf;
      };
      let done = 0;
      const extents = async function* (): AsyncGenerator<Extent> {
        for await (const { range, data } of readAhead(plan, readWindow, options.readAhead ?? 4)) {
          done += range.length;
          options.onProgress?.({ disk: exp.disk, bytesDone: done, bytesPlanned: planned });
          yield { offset: range.offset, data };
        }
      };
      disks.push({ name: exp.disk, sizeBytes: exp.sizeBytes, extents: extents(), full: !incremental });
      sourceReads.set(exp.disk, counters);
      modes.push({ name: exp.disk, sizeBytes: exp.sizeBytes, bytesRead: 0, bytesStored: 0, chunksNew: 0, chunksReused: 0, mode: incremental ? 'incremental' : 'full', reason });
    }
    const anyIncremental = modes.some((m) => m.mode === 'incremental');
    const result = await repo.writeRestorePoint({
      vm: { id: input.vm.id, name: input.vm.name, ...(input.vm.config ? { config: input.vm.config } : {}) },
      ...(parent && anyIncremental ? { parentId: parent.id } : {}),
      disks,
      labels: { jobId: input.jobId, ...(input.fileIndex === false ? { fileIndex: 'off' } : {}) },
      ...(input.heal?.length ? { heal: input.heal } : {}),
    });
    return {
      restorePointId: result.restorePointId,
      parentId: parent && anyIncremental ? parent.id : null,
      disks: modes.map((m) => {
        const s = result.disks.find((d) => d.name === m.name)!;
        return { ...m, bytesRead: sourceReads.get(m.name)?.read ?? s.bytesRead, bytesStored: s.bytesStored, chunksNew: s.chunksNew, chunksReused: s.chunksReused };
      }),
    };
  } finally {
    await Promise.allSettled(readers.map((r) => r.close()));
  }
}
