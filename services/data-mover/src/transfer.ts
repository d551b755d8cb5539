// One transfer: read a snapshot's disks over NBD (only the changed extents when the parent
// restore point and the dirty bitmap allow it, else every allocated extent) and write them
// as a restore point. Reading, processing and uploading overlap; memory stays bounded.
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { checkServerIdentity, type ConnectionOptions, type PeerCertificate } from 'node:tls';
import type { NbdEndpoint } from '@cairn/contracts';
import { loadSiteSecurity, type AnyIdentity } from '@cairn/nats-security';
import { NbdPool, allocatedExtents, changedExtents, type NbdReader } from '@cairn/nbd';
import { type DiskInput, type Extent, type RestorePointWriter } from '@cairn/repository';
import type { Static } from '@sinclair/typebox';
import { allocatedReads, planReads, readAhead, type PlannedRead } from './extent-plan.ts';
import type { Throttle } from './bandwidth.ts';
import type { ReadBufferPool } from './read-buffers.ts';

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
  /** Connections per disk export (default 2; one for an export of up to 64 MiB). */
  readonly connections?: number;
  /** Bytes per NBD read (a multiple of the chunk size; default 4 MiB or one chunk). */
  readonly readBytes?: number;
  /**
   * Reads in flight per disk (default 4 for a full read; 16 for an incremental, whose windows
   * are mostly single chunks, each waiting on a parent chunk fetched from the repository).
   */
  readonly readAhead?: number;
  /**
   * Where an incremental gets the unchanged parts of a partly changed chunk: `parent` (default)
   * reads only the changed blocks from the hypervisor and hands them to the repository as they
   * are (`partial`): it refers to the parent's chunks for the rest of each slot (index format 2,
   * no parent chunk read); `source` reads the whole chunk from the snapshot's export (up to
   * four times the bytes from the hypervisor for scattered 64 KiB writes, whole chunks stored).
   */
  readonly unchangedFrom?: 'source' | 'parent';
  /** Bandwidth limits of this job (bandwidth.ts): paid before each read from the hypervisor. */
  readonly throttle?: Throttle;
  /**
   * Where the read ring's buffers come from and go back to when the transfer succeeded (the
   * mover's transfers share one: read-buffers.ts); without it each transfer allocates its own.
   */
  readonly buffers?: ReadBufferPool;
  /** Opens the NBD reader (tests may wrap it). */
  readonly connect?: (endpoint: Endpoint, exportName: string, metaContexts: string[]) => Promise<NbdReader>;
}

export interface TransferResult {
  readonly restorePointId: string;
  readonly parentId: string | null;
  readonly disks: Array<{ name: string; sizeBytes: number; bytesRead: number; bytesStored: number; chunksNew: number; chunksReused: number; mode: 'full' | 'incremental'; reason: string }>;
  /** Where the transfer's time went (logged with the commit, read by tools/bench/src/product.ts). */
  readonly timings?: TransferTimings;
}

/**
 * Where a transfer's time went, in ms. `connect` and `plan` (the block-status pass) come before
 * any data; `nbdRead` sums the time of the reads from the hypervisor (they overlap: up to
 * `readAhead` at once); `waitForData` is how long the repository writer waited for the next
 * extent (the reader was behind), `writeRestorePoint` the whole write (chunking, sealing,
 * storing, index and manifest), `afterLastExtent` the part of it after the last extent was
 * handed over (chunks in flight, index pages, the manifest: the commit).
 */
export interface TransferTimings {
  connect: number;
  plan: number;
  nbdRead: number;
  waitForData: number;
  writeRestorePoint: number;
  afterLastExtent: number;
  total: number;
}

/**
 * Exports up to this size are read over one connection: a second one (its socket and
 * handshake, on both sides) costs more than it saves when the whole disk is a few reads.
 */
const ONE_CONNECTION_UP_TO = 64 * 1024 * 1024;

/**
 * A hole inside a full's window at least this long is zeroed by the mover instead of read (a
 * shorter one is read with its neighbours: one NBD request instead of two). 64 KiB is a qcow2
 * cluster and a dirty-bitmap granule, the smallest hole the hypervisors report in practice.
 */
const MIN_HOLE_SKIPPED = 64 * 1024;

/** Planned reads of a disk kept from the first pass over its block status (about 100 bytes each). */
const KEEP_PLANNED = 4096;

function address(endpoint: Endpoint): { path: string } | { host: string; port: number } {
  return 'socket' in endpoint ? { path: endpoint.socket } : { host: endpoint.host, port: endpoint.port };
}

/**
 * An export served with TLS: STARTTLS with the client certificate, the server verified against
 * the CA and its name (a wrong CA or name fails the connection: certificate verification is never off).
 */
async function tlsOptions(endpoint: Endpoint, env: NodeJS.ProcessEnv): Promise<ConnectionOptions | undefined> {
  if ('socket' in endpoint || !endpoint.tls) return undefined;
  const t = 'pki' in endpoint.tls ? await siteClientFiles(endpoint, env) : endpoint.tls;
  const read = (what: string, f: string) => readFile(f).catch((e: NodeJS.ErrnoException) => {
    throw new Error(`cannot read the NBD TLS ${what} ${f}: ${e.code ?? e.message}`);
  });
  const [ca, cert, key] = await Promise.all([read('CA', t.caFile), read('client certificate', t.certFile), read('client key', t.keyFile)]);
  const host = endpoint.host;
  // An IP address is no server name (SNI): its certificate is checked against the address.
  const name = isIP(host) ? { checkServerIdentity: (_h: string, c: PeerCertificate) => checkServerIdentity(host, c) } : { servername: host };
  return { ca, cert, key, rejectUnauthorized: true, ...name };
}

/**
 * An export that asks for the site's PKI (`tls: { pki: 'site' }`, a QEMU NBD server on another
 * node that requires client certificates): this process's site identity (CAIRN_NATS_SECURITY_DIR,
 * CAIRN_NATS_IDENTITY, default `data-mover`), the certificate it connects to NATS with.
 */
async function siteClientFiles(endpoint: { host: string; port: number }, env: NodeJS.ProcessEnv): Promise<{ caFile: string; certFile: string; keyFile: string }> {
  const dir = env['CAIRN_NATS_SECURITY_DIR'];
  if (!dir) {
    throw new Error(`NBD export ${endpoint.host}:${String(endpoint.port)} requires a client certificate of the site's PKI: set CAIRN_NATS_SECURITY_DIR to the site's security directory (cairn site init)`);
  }
  const c = (await loadSiteSecurity(dir)).credentials((env['CAIRN_NATS_IDENTITY'] as AnyIdentity | undefined) ?? 'data-mover');
  return { caFile: c.caFile, certFile: c.certFile, keyFile: c.keyFile };
}

/** Opens one export of a snapshot's endpoint as the transfer does (TLS when the endpoint says so). */
export async function connectNbdEndpoint(endpoint: Endpoint, exportName: string, metaContexts: string[], connections: number, env: NodeJS.ProcessEnv = process.env): Promise<NbdReader> {
  const tls = await tlsOptions(endpoint, env);
  try {
    return await NbdPool.connect(address(endpoint), { exportName, metaContexts, connections, ...(tls ? { tls } : {}) });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (tls && 'host' in endpoint && endpoint.tls && /CERT|SELF_SIGNED|ERR_TLS|UNABLE_TO/i.test(err.code ?? '')) {
      const ca = 'pki' in endpoint.tls ? `the site CA (${env['CAIRN_NATS_SECURITY_DIR'] ?? ''}/ca.pem)` : `the CA in ${endpoint.tls.caFile}`;
      throw new Error(`NBD export ${endpoint.host}:${String(endpoint.port)} over TLS: the server's certificate was refused (${err.message}); it must be signed by ${ca} and name ${endpoint.host}`, { cause: e });
    }
    throw e;
  }
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
  const t0 = performance.now();
  const timings: TransferTimings = { connect: 0, plan: 0, nbdRead: 0, waitForData: 0, writeRestorePoint: 0, afterLastExtent: 0, total: 0 };
  const since = (t: number): number => performance.now() - t;
  const chunkSize = repo.chunkSize;
  const readBytes = options.readBytes ?? Math.max(chunkSize, Math.floor((4 * 1024 * 1024) / chunkSize) * chunkSize);
  const readers: NbdReader[] = [];
  const modes: TransferResult['disks'] = [];
  // Bytes read from the hypervisor per disk (what a backup costs the VM's storage).
  const sourceReads = new Map<string, { read: number }>();
  const opened: Array<Promise<unknown>> = [];
  // Every ring buffer this transfer took, given back to the pool only after a success (a failed
  // transfer may leave a read in flight into one of them: those are left to the GC).
  const taken: Buffer[] = [];
  const takeBuffer = (bytes: number): Buffer => {
    const b = options.buffers ? options.buffers.take(bytes) : Buffer.allocUnsafeSlow(bytes);
    taken.push(b);
    return b;
  };
  let succeeded = false;
  try {
    const disks: DiskInput[] = [];
    let lastExtentAt = 0;
    // Every export is opened and planned at once, and the first disk's reads start, while the
    // repository writer sets itself up (its lease, the parent's manifest, the GC generation):
    // an incremental's few hundred reads no longer wait behind those round trips.
    for (const [diskIndex, exp] of input.nbd.exports.entries()) {
      const parentHasDisk = parent?.disks.some((d) => d.name === exp.disk && d.sizeBytes === exp.sizeBytes) ?? false;
      const incremental = input.mode !== 'full' && exp.mode === 'incremental' && !!exp.dirtyBitmapContext && parentHasDisk;
      const reason = incremental ? exp.reason
        : input.mode === 'full' ? 'full backup requested'
        : exp.mode === 'full' ? exp.reason
        : !parent ? 'no earlier restore point of this VM in the repository'
        : 'the earlier restore point lacks this disk at this size';
      const contexts = incremental ? ['base:allocation', exp.dirtyBitmapContext!] : ['base:allocation'];
      // Only the changed blocks, handed over as they are: the repository refers to the parent for the rest.
      const changedOnly = incremental && (options.unchangedFrom ?? 'parent') === 'parent';
      const counters = { read: 0 };
      const depth = options.readAhead ?? (incremental ? 16 : 4);
      let planned = 0;
      const open = (async () => {
        const tConnect = performance.now();
        const reader = options.connect
          ? await options.connect(input.nbd, exp.exportName, contexts)
          : await connectNbdEndpoint(input.nbd, exp.exportName, contexts, exp.sizeBytes <= ONE_CONNECTION_UP_TO ? 1 : options.connections ?? 2);
        readers.push(reader);
        timings.connect += since(tConnect);
        if (reader.size !== exp.sizeBytes) throw new Error(`export ${exp.exportName} is ${reader.size} bytes, the snapshot said ${exp.sizeBytes}`);
        const extentsOf = () => (incremental ? changedExtents(reader, exp.dirtyBitmapContext!) : allocatedExtents(reader));
        // A first pass over the (cheap) block status gives the total, for progress and ETA. Its
        // windows are kept while they are few (a small or lightly changed disk: one pass, not
        // two); past KEEP_PLANNED the block status is asked again, so memory stays bounded.
        const tPlan = performance.now();
        let kept: PlannedRead[] | undefined = [];
        for await (const w of planReads(extentsOf(), chunkSize, exp.sizeBytes, readBytes)) {
          planned += w.length;
          if (kept && kept.push(w) > KEEP_PLANNED) kept = undefined;
        }
        timings.plan += since(tPlan);
        const windows = kept;
        const plan = windows ? (async function* () { yield* windows; })() : planReads(extentsOf(), chunkSize, exp.sizeBytes, readBytes);
        // Whole-window reads land in a ring of reused buffers, not fresh memory per read (page
        // faults and garbage collection on the thread that also serves the NBD sockets). The
        // writer is done with an extent once it asks for the next one, and readAhead starts read
        // k only after extent k - depth - 1 was consumed, so depth + 2 buffers never overlap.
        const ring: Uint8Array[] = [];
        let reads = 0;
        const readWindow = async (w: PlannedRead): Promise<Extent[]> => {
          if (!changedOnly) {
            const slot = reads++ % (depth + 2); // taken in the order readAhead starts the reads
            if (!ring[slot] || ring[slot].length < w.length) ring[slot] = takeBuffer(w.length);
            const data = ring[slot].subarray(0, w.length);
            // A full reads only the window's allocated parts; the holes between them (the block
            // status says they read as zeros) are zeroed here, not sent over the socket. An
            // incremental's window is read whole: its unmarked parts are unchanged data.
            const parts = incremental ? [w] : allocatedReads(w, MIN_HOLE_SKIPPED);
            const bytes = parts.reduce((n, p) => n + p.length, 0);
            await options.throttle?.take(bytes);
            counters.read += bytes;
            const tRead = performance.now();
            let at = 0;
            const pending: Array<Promise<unknown>> = [];
            for (const p of parts) {
              const from = p.offset - w.offset;
              if (from > at) data.fill(0, at, from);
              at = from + p.length;
              pending.push(reader.read(p.offset, p.length, data.subarray(from, at)));
            }
            if (at < w.length) data.fill(0, at, w.length);
            await Promise.all(pending);
            timings.nbdRead += since(tRead);
            return [{ offset: w.offset, data }];
          }
          // Only the changed bytes come from the hypervisor, each marked range as an extent of its
          // own, packed one after the other into the window's ring buffer (the same ring and the
          // same reuse rule as a full's windows): no fresh 64 KiB buffer per changed block, to be
          // faulted in, then freed, on the thread that also serves the NBD sockets.
          const slot = reads++ % (depth + 2);
          const marked = w.marked.reduce((n, m) => n + m.length, 0);
          await options.throttle?.take(marked);
          if (!ring[slot] || ring[slot].length < marked) ring[slot] = takeBuffer(Math.max(marked, chunkSize));
          const buf = ring[slot];
          const tStart = performance.now();
          let at = 0;
          const parts = await Promise.all(w.marked.map((m) => {
            const into = buf.subarray(at, (at += m.length));
            return reader.read(m.offset, m.length, into).then((data) => ({ offset: m.offset, data }));
          }));
          timings.nbdRead += since(tStart);
          counters.read += marked;
          return parts;
        };
        return () => readAhead(plan, readWindow, depth);
      })();
      opened.push(open);
      open.catch(() => undefined); // surfaced by the writer's pull, or after the write (below)
      // The first disk's reads start as soon as its plan is known; a later disk's when the writer reaches it.
      const started = diskIndex === 0 ? open.then((start) => start()) : undefined;
      started?.catch(() => undefined);
      let done = 0;
      const extents = async function* (): AsyncGenerator<Extent> {
        const tOpen = performance.now();
        const windows = (started ? await started : (await open)())[Symbol.asyncIterator]();
        timings.waitForData += since(tOpen);
        for (;;) {
          // Time the writer waits here is time the reader is behind.
          const tWait = performance.now();
          const next = await windows.next();
          timings.waitForData += since(tWait);
          if (next.done) break;
          const { range, data } = next.value;
          done += range.length;
          options.onProgress?.({ disk: exp.disk, bytesDone: done, bytesPlanned: planned });
          // The writer copies what it needs before asking for the next extent: the ring's
          // buffer of this window is read into again only depth + 1 windows later.
          for (const part of data) yield part;
        }
        lastExtentAt = Math.max(lastExtentAt, performance.now());
      };
      disks.push({ name: exp.disk, sizeBytes: exp.sizeBytes, extents: extents(), full: !incremental, ...(changedOnly ? { partial: true } : {}) });
      sourceReads.set(exp.disk, counters);
      modes.push({ name: exp.disk, sizeBytes: exp.sizeBytes, bytesRead: 0, bytesStored: 0, chunksNew: 0, chunksReused: 0, mode: incremental ? 'incremental' : 'full', reason });
    }
    const anyIncremental = modes.some((m) => m.mode === 'incremental');
    const tWrite = performance.now();
    const result = await repo.writeRestorePoint({
      vm: { id: input.vm.id, name: input.vm.name, ...(input.vm.config ? { config: input.vm.config } : {}) },
      ...(parent && anyIncremental ? { parentId: parent.id } : {}),
      disks,
      labels: { jobId: input.jobId, ...(input.fileIndex === false ? { fileIndex: 'off' } : {}) },
      ...(input.heal?.length ? { heal: input.heal } : {}),
    }).catch(async (e: unknown) => {
      // An export that could not be opened (refused, TLS, wrong size) is the cause, not the write it stopped.
      const failed = (await Promise.allSettled(opened)).find((o): o is PromiseRejectedResult => o.status === 'rejected');
      throw failed ? failed.reason : e;
    });
    timings.writeRestorePoint = since(tWrite);
    timings.afterLastExtent = lastExtentAt ? performance.now() - lastExtentAt : 0;
    timings.total = since(t0);
    for (const k of Object.keys(timings) as Array<keyof TransferTimings>) timings[k] = Math.round(timings[k]);
    succeeded = true;
    return {
      restorePointId: result.restorePointId,
      parentId: parent && anyIncremental ? parent.id : null,
      disks: modes.map((m) => {
        const s = result.disks.find((d) => d.name === m.name)!;
        return { ...m, bytesRead: sourceReads.get(m.name)?.read ?? s.bytesRead, bytesStored: s.bytesStored, chunksNew: s.chunksNew, chunksReused: s.chunksReused };
      }),
      timings,
    };
  } finally {
    await Promise.allSettled(opened);
    await Promise.allSettled(readers.map((r) => r.close()));
    if (succeeded) options.buffers?.give(taken);
  }
}
