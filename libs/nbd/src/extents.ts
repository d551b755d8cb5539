// Walks a whole export's metadata in bounded windows and yields merged runs: the extents
// a dirty bitmap marks as changed, or the extents that may hold data. Memory stays
// bounded whatever the disk size (one window's extents at a time).
import { BASE_ALLOCATION, STATE_DIRTY, STATE_ZERO, type Extent } from './protocol.ts';

/** What the walkers need from a connection (NbdClient and NbdPool both fit). */
export interface BlockStatusSource {
  readonly size: number;
  blockStatus(offset: number, length: number, context: string): Promise<Extent[]>;
}

export interface WalkOptions {
  /** Bytes asked per BLOCK_STATUS request (default 1 GiB). */
  readonly windowBytes?: number;
  /** Only this part of the disk (default: all of it). */
  readonly offset?: number;
  readonly length?: number;
}

/** Every extent of `context` over the range, in order, as the server reported them. */
export async function* walkExtents(source: BlockStatusSource, context: string, options: WalkOptions = {}): AsyncGenerator<Extent> {
  const window = Math.max(4096, options.windowBytes ?? 1024 * 1024 * 1024);
  const start = options.offset ?? 0;
  const end = Math.min(source.size, start + (options.length ?? source.size));
  let at = start;
  while (at < end) {
    const extents = await source.blockStatus(at, Math.min(window, end - at), context);
    if (extents.length === 0) throw new Error(`server returned no extents at offset ${at}`);
    for (const e of extents) {
      if (e.offset !== at) throw new Error(`extent at ${e.offset} does not continue from ${at}`);
      yield e;
      at += e.length;
    }
  }
}

/** Merges adjacent extents that `keep` selects; the merged runs carry `flags`. */
export async function* selectAndMerge(
  extents: AsyncIterable<Extent>, keep: (e: Extent) => boolean, flags: number,
): AsyncGenerator<Extent> {
  let run: { offset: number; length: number } | null = null;
  for await (const e of extents) {
    if (!keep(e)) continue;
    if (run && run.offset + run.length === e.offset) {
      run.length += e.length;
    } else {
      if (run) yield { offset: run.offset, length: run.length, flags };
      run = { offset: e.offset, length: e.length };
    }
  }
  if (run) yield { offset: run.offset, length: run.length, flags };
}

/**
 * The runs a dirty bitmap context (`qemu:dirty-bitmap:<name>`) marks dirty, merged, in
 * order. flags = STATE_DIRTY.
 */
export function changedExtents(source: BlockStatusSource, bitmapContext: string, options?: WalkOptions): AsyncGenerator<Extent> {
  return selectAndMerge(walkExtents(source, bitmapContext, options), (e) => (e.flags & STATE_DIRTY) !== 0, STATE_DIRTY);
}

/**
 * The runs `base:allocation` does not promise to read as zeroes (NBD_STATE_ZERO clear),
 * merged, in order: what a backup must read. Holes and known-zero areas are skipped.
 * flags = 0.
 */
export function allocatedExtents(source: BlockStatusSource, options?: WalkOptions): AsyncGenerator<Extent> {
  return selectAndMerge(walkExtents(source, BASE_ALLOCATION, options), (e) => (e.flags & STATE_ZERO) === 0, 0);
}

/** Merges adjacent extents with equal flags (for callers holding a list). */
export function mergeExtents(extents: readonly Extent[]): Extent[] {
  const out: Extent[] = [];
  for (const e of extents) {
    const last = out[out.length - 1];
    if (last && last.offset + last.length === e.offset && last.flags === e.flags) {
      out[out.length - 1] = { offset: last.offset, length: last.length + e.length, flags: last.flags };
    } else {
      out.push(e);
    }
  }
  return out;
}
