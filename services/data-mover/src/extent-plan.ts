// Turns the extents a hypervisor reports (dirty bitmap runs, allocated runs) into the reads
// a data mover makes: widened to whole chunks (the repository stores whole chunks), merged
// where they touch, and cut into reads of bounded size. Pure and streaming: memory does not
// grow with the disk.

export interface Range {
  readonly offset: number;
  readonly length: number;
}

/** A planned read: a chunk-aligned window, and the parts of it the source marked. */
export interface PlannedRead extends Range {
  /** The reported extents inside the window, clipped to it, in order. */
  readonly marked: readonly Range[];
}

export async function* planReads(
  extents: AsyncIterable<Range> | Iterable<Range>,
  chunkSize: number,
  diskSize: number,
  maxReadBytes: number,
): AsyncGenerator<PlannedRead> {
  if (maxReadBytes < chunkSize || maxReadBytes % chunkSize !== 0) {
    throw new RangeError(`maxReadBytes (${maxReadBytes}) must be a multiple of the chunk size (${chunkSize})`);
  }
  let run: { start: number; end: number; marked: Range[] } | null = null;
  const emit = function* (r: { start: number; end: number; marked: Range[] }): Generator<PlannedRead> {
    let i = 0;
    for (let at = r.start; at < r.end; at += maxReadBytes) {
      const end = Math.min(at + maxReadBytes, r.end);
      const marked: Range[] = [];
      while (i < r.marked.length) {
        const m = r.marked[i]!;
        const s = Math.max(m.offset, at);
        const e = Math.min(m.offset + m.length, end);
        if (e > s) marked.push({ offset: s, length: e - s });
        if (m.offset + m.length <= end) i++;
        else break;
      }
      yield { offset: at, length: end - at, marked };
    }
  };
  let lastEnd = -1;
  for await (const e of extents) {
    if (e.length <= 0) continue;
    if (e.offset < lastEnd) throw new RangeError(`extents out of order: ${e.offset} after ${lastEnd}`);
    lastEnd = e.offset + e.length;
    const start = Math.floor(e.offset / chunkSize) * chunkSize;
    const end = Math.min(diskSize, Math.ceil((e.offset + e.length) / chunkSize) * chunkSize);
    if (start >= diskSize) break;
    const mark = { offset: e.offset, length: Math.min(e.offset + e.length, diskSize) - e.offset };
    if (run && start <= run.end) {
      run.end = Math.max(run.end, end);
      run.marked.push(mark);
      continue;
    }
    if (run) yield* emit(run);
    run = { start, end, marked: [mark] };
  }
  if (run) yield* emit(run);
}

/**
 * What a full's window asks the source for: its marked ranges (the parts that may hold data),
 * a gap between two of them shorter than `minHole` read with them (one request, not two). The
 * rest of the window reads as zeros by the source's own block status (NBD_STATE_ZERO), so the
 * reader zeroes it itself instead of moving it over the socket. Not for an incremental's
 * windows: there the unmarked parts are unchanged data, not zeros.
 */
export function allocatedReads(window: PlannedRead, minHole: number): Range[] {
  const out: Array<{ offset: number; length: number }> = [];
  for (const m of window.marked) {
    const last = out[out.length - 1];
    if (last && m.offset - (last.offset + last.length) < minHole) last.length = m.offset + m.length - last.offset;
    else out.push({ offset: m.offset, length: m.length });
  }
  return out;
}

/**
 * Reads planned ranges with up to `depth` reads in flight, yielding data in order. The first
 * reads start at the call, not at the first pull: a consumer that sets itself up first (the
 * repository writer takes its lease and reads the parent's manifest) finds them under way.
 * Read k starts only after the consumer pulled the result of read k - depth - 1 (a producer
 * may recycle depth + 2 buffers). Reads started but never pulled still run to their end.
 */
export function readAhead<R extends Range, T>(
  ranges: AsyncIterable<R>,
  read: (r: R) => Promise<T>,
  depth: number,
): AsyncGenerator<{ range: R; data: T }> {
  const queue: Array<{ range: R; data: Promise<T> }> = [];
  const it = ranges[Symbol.asyncIterator]();
  let done = false;
  const fill = async () => {
    while (!done && queue.length < depth) {
      const n = await it.next();
      if (n.done) { done = true; break; }
      const data = read(n.value);
      data.catch(() => undefined); // surfaced when its turn comes
      queue.push({ range: n.value, data });
    }
  };
  // Started now; the generator waits for it before it fills again, so fills never overlap.
  const first = fill();
  first.catch(() => undefined);
  return (async function* () {
    try {
      await first;
      while (queue.length) {
        const head = queue.shift()!;
        const data = await head.data;
        await fill();
        yield { range: head.range, data };
      }
    } finally {
      await it.return?.(undefined);
    }
  })();
}
