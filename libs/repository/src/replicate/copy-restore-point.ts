// Copies one restore point to a replica sink (a ReplicaTarget here, or a remote one behind
// a transport): only the objects the sink lacks, chunks before the index pages that name
// them, pages before the manifest, which goes last. Killed midway and run again, it asks
// the sink again and sends nothing the sink already holds.
//
// Bytes for the questions stay small: a page the sink holds vouches for its chunks (a page
// is written only after them), so only the chunks of missing pages that differ from the
// base restore point's page at the same place are asked about.
import { forEachLimit } from '../concurrency/semaphore.ts';
import type { PageRef, ReplicationSource, RepositoryIdentity, SealedObject } from './replication-source.ts';
import type { ReplicaRefs } from './replica-target.ts';
import type { SealedRef } from './sealed-objects.ts';

export interface ReplicaSink {
  adopt(identity: RepositoryIdentity): Promise<unknown>;
  missing(refs: readonly SealedRef[]): Promise<SealedRef[]>;
  put(obj: SealedObject): Promise<void>;
  commit(manifest: { readonly id: string; readonly bytes: Uint8Array; readonly sha256: string }, pageIds: readonly string[]): Promise<boolean>;
  /**
   * Takes the ids of every chunk and index page the restore point references, before its
   * manifest (so a keyless copy can garbage-collect). Sinks without it get no refs.
   */
  putRefs?(restorePointId: string, refs: ReplicaRefs): Promise<void>;
}

export interface CopyOptions {
  /** A restore point the sink probably holds (the parent): its pages vouch for unchanged chunks. */
  readonly base?: string;
  /** Objects sent at the same time (default 4). */
  readonly concurrency?: number;
  /** Ids asked about per `missing` call (default 2048). */
  readonly batch?: number;
  /** Called after each object the sink accepted. */
  readonly onSent?: (obj: SealedObject) => void;
  /** Skip `adopt` (the caller did it for this sink already). */
  readonly adopted?: boolean;
}

export interface CopyResult {
  readonly restorePointId: string;
  /** False when the sink already held the restore point. */
  readonly committed: boolean;
  readonly chunksSent: number;
  readonly chunkBytesSent: number;
  readonly pagesSent: number;
  readonly pageBytesSent: number;
  readonly manifestBytes: number;
  /** Chunk ids asked about (the rest were vouched for by pages the sink holds). */
  readonly chunksAsked: number;
}

export async function copyRestorePoint(source: ReplicationSource, sink: ReplicaSink, restorePointId: string, options: CopyOptions = {}): Promise<CopyResult> {
  const concurrency = options.concurrency ?? 4;
  const batch = options.batch ?? 2048;
  if (!options.adopted) await sink.adopt(await source.identity());
  const stats = { chunksSent: 0, chunkBytesSent: 0, pagesSent: 0, pageBytesSent: 0, manifestBytes: 0, chunksAsked: 0 };
  const send = async (obj: SealedObject) => {
    await sink.put(obj);
    if (obj.kind === 'chunk') { stats.chunksSent++; stats.chunkBytesSent += obj.bytes.length; } else { stats.pagesSent++; stats.pageBytesSent += obj.bytes.length; }
    options.onSent?.(obj);
  };

  const pages = await source.pages(restorePointId);
  const basePages = new Map<string, PageRef>();
  if (options.base && options.base !== restorePointId) {
    const base = await source.pages(options.base).catch(() => [] as PageRef[]); // the base may have expired
    for (const p of base) basePages.set(`${p.disk}\0${p.index}`, p);
  }
  const pageIds = [...new Set(pages.map((p) => p.id))];
  const asked = [...new Set([...pageIds, ...[...basePages.values()].map((p) => p.id)])];
  const lackingPages = new Set((await sink.missing(asked.map((id) => ({ kind: 'index-page' as const, id })))).map((r) => r.id));

  const settled = new Set<string>(); // chunk ids the sink is known to hold now
  const sentPages = new Set<string>();
  const refChunks = new Set<string>(); // every chunk the restore point references (with putRefs)
  for (const page of pages) {
    if (!lackingPages.has(page.id) || sentPages.has(page.id)) {
      if (sink.putRefs && !sentPages.has(page.id)) for (const id of await source.pageChunks(page)) refChunks.add(id);
      continue;
    }
    const ids = await source.pageChunks(page);
    for (const id of ids) refChunks.add(id);
    const base = basePages.get(`${page.disk}\0${page.index}`);
    if (base && !lackingPages.has(base.id)) for (const id of await source.pageChunks(base)) settled.add(id);
    const ask = [...new Set(ids.filter((id) => !settled.has(id)))];
    stats.chunksAsked += ask.length;
    for (let i = 0; i < ask.length; i += batch) {
      const lacking = await sink.missing(ask.slice(i, i + batch).map((id) => ({ kind: 'chunk' as const, id })));
      await forEachLimit(lacking, concurrency, async (r) => { await send(await source.sealed('chunk', r.id)); });
      for (const id of ask.slice(i, i + batch)) settled.add(id);
    }
    await send(await source.sealed('index-page', page.id));
    sentPages.add(page.id);
  }
  if (sink.putRefs) await sink.putRefs(restorePointId, { pages: pageIds, chunks: [...refChunks] });
  const manifest = await source.sealed('manifest', restorePointId);
  stats.manifestBytes = manifest.bytes.length;
  const committed = await sink.commit(manifest, pageIds);
  return { restorePointId, committed, ...stats };
}
