// A compact, exact set of chunk ids for `KnownChunks`: the ids sorted in a local temporary
// file (32 bytes each), and in memory only what finds an id's place in it: 65,536 bucket
// offsets by the id's first 16 bits and, per id, its next 32 bits (4 bytes per id: ~17 MB per
// TiB of 256 KiB chunks instead of ~150 bytes per id in a `Set` of hex strings). A lookup
// whose 48 bits match reads the whole id from the file (page cache, one `pread`) and answers
// only on an exact match, so a prefix collision can never make a missing chunk look stored.
// The file is unlinked as soon as it is open: nothing is left behind, even after a crash.
import { readSync } from 'node:fs';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

const ID_BYTES = 32;
const BUCKETS = 65536;
/** Ids sorted in memory (as hex strings) before they go to disk as one run: ~26 MB at most. */
const RUN_IDS = 262_144;
/** Ids read or written per I/O while merging. */
const BLOCK_IDS = 2048;

/** Opens a fresh temporary file in `dir` and unlinks it at once (it lives as long as the handle). */
async function anonymousFile(dir: string): Promise<FileHandle> {
  const path = join(dir, `cairn-known-chunks-${process.pid}-${randomBytes(6).toString('hex')}`);
  const fh = await open(path, 'wx+', 0o600);
  await unlink(path).catch(async (e: unknown) => { await fh.close(); throw e; });
  return fh;
}

/** An immutable sorted set of chunk ids; `has` is synchronous (memory, then one read on a prefix match). */
export class ChunkIdTable {
  private closed = false;
  private readonly probe = Buffer.alloc(ID_BYTES);
  private readonly want = Buffer.alloc(ID_BYTES);

  private constructor(
    private readonly file: FileHandle | undefined,
    readonly count: number,
    private readonly starts: Uint32Array,
    private readonly keys: Uint32Array,
  ) {}

  static empty(): ChunkIdTable {
    return new ChunkIdTable(undefined, 0, new Uint32Array(BUCKETS + 1), new Uint32Array(0));
  }

  /** Bytes this table holds in memory (the file is on disk / in the page cache). */
  get memoryBytes(): number {
    return this.starts.byteLength + this.keys.byteLength;
  }

  has(id: string): boolean {
    if (this.count === 0) return false;
    const bucket = parseInt(id.slice(0, 4), 16);
    const key = parseInt(id.slice(4, 12), 16) >>> 0;
    let lo = this.starts[bucket] as number;
    let hi = this.starts[bucket + 1] as number;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.keys[mid] as number) < key) lo = mid + 1; else hi = mid;
    }
    if (lo >= this.count || this.keys[lo] !== key) return false;
    if (this.closed || !this.file) throw new Error('known-chunks table used after it was closed');
    this.want.write(id, 0, 'hex');
    for (let i = lo; i < this.count && this.keys[i] === key; i++) {
      const n = readSync(this.file.fd, this.probe, 0, ID_BYTES, i * ID_BYTES);
      if (n !== ID_BYTES) throw new Error(`known-chunks table: short read at entry ${i} (${n} bytes)`);
      if (this.probe.equals(this.want)) return true;
    }
    return false;
  }

  /** Reads ids [from, to) in order. */
  cursor(from = 0, to = this.count): Cursor {
    if (!this.file || this.closed) return new ArrayCursor([]);
    return new FileCursor(this.file, from, to);
  }

  /** Only once nothing reads it any more (`KnownChunks` closes a table a rebuild still reads after the rebuild). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.file?.close().catch(() => undefined);
  }

  /**
   * Merges sorted sources into a new table in `dir` (duplicates kept once). `upTo` bounds the
   * number of ids the sources hold together (the memory for the keys is allocated once).
   */
  static async merge(dir: string, sources: readonly Cursor[], upTo: number): Promise<ChunkIdTable> {
    const file = await anonymousFile(dir);
    try {
      const keys = new Uint32Array(upTo);
      const starts = new Uint32Array(BUCKETS + 1);
      const out = Buffer.alloc(BLOCK_IDS * ID_BYTES);
      let fill = 0;
      let count = 0;
      let written = 0;
      const last = Buffer.alloc(ID_BYTES);
      const heap = new CursorHeap();
      for (const s of sources) { await s.advance(); if (s.current) heap.push(s); }
      while (heap.size > 0) {
        const s = heap.top();
        const id = s.current as Buffer;
        if (count === 0 || !id.equals(last)) {
          if (count >= upTo) throw new Error(`known-chunks merge: more than the ${upTo} ids announced`);
          id.copy(last);
          id.copy(out, fill * ID_BYTES);
          keys[count] = id.readUInt32BE(2);
          (starts[id.readUInt16BE(0) + 1] as number)++;
          count++;
          if (++fill === BLOCK_IDS) {
            await file.write(out, 0, fill * ID_BYTES, written);
            written += fill * ID_BYTES;
            fill = 0;
          }
        }
        await s.advance();
        if (s.current) heap.replaceTop(s); else heap.pop();
      }
      if (fill > 0) await file.write(out, 0, fill * ID_BYTES, written);
      for (let b = 0; b < BUCKETS; b++) starts[b + 1] = (starts[b + 1] as number) + (starts[b] as number);
      return new ChunkIdTable(file, count, starts, count === upTo ? keys : keys.slice(0, count));
    } catch (e) {
      await file.close();
      throw e;
    }
  }
}

/** Ids in increasing order: `current` after each `advance`, undefined at the end. */
export interface Cursor {
  current: Buffer | undefined;
  advance(): Promise<void>;
}

/** Sorted ids from memory (hex strings, sorted here: lowercase hex sorts like its bytes). */
export class ArrayCursor implements Cursor {
  current: Buffer | undefined;
  private i = 0;
  private readonly ids: string[];
  constructor(ids: Iterable<string>) {
    this.ids = [...ids].sort();
  }
  get length(): number { return this.ids.length; }
  async advance(): Promise<void> {
    const id = this.ids[this.i++];
    this.current = id === undefined ? undefined : Buffer.from(id, 'hex');
  }
}

class FileCursor implements Cursor {
  current: Buffer | undefined;
  private readonly block = Buffer.alloc(BLOCK_IDS * ID_BYTES);
  private have = 0;
  private at = 0;
  constructor(private readonly file: FileHandle, private next: number, private readonly end: number) {}
  async advance(): Promise<void> {
    if (this.at >= this.have) {
      const n = Math.min(BLOCK_IDS, this.end - this.next);
      if (n <= 0) { this.current = undefined; return; }
      const { bytesRead } = await this.file.read(this.block, 0, n * ID_BYTES, this.next * ID_BYTES);
      if (bytesRead !== n * ID_BYTES) throw new Error(`known-chunks table: short read at entry ${this.next}`);
      this.next += n;
      this.have = n;
      this.at = 0;
    }
    this.current = this.block.subarray(this.at * ID_BYTES, (this.at + 1) * ID_BYTES);
    this.at++;
  }
}

/** A min-heap of cursors by their current id. */
class CursorHeap {
  private readonly a: Cursor[] = [];
  get size(): number { return this.a.length; }
  top(): Cursor { return this.a[0] as Cursor; }
  push(c: Cursor): void {
    this.a.push(c);
    let i = this.a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (this.less(i, p)) { this.swap(i, p); i = p; } else break;
    }
  }
  pop(): void {
    const end = this.a.pop() as Cursor;
    if (this.a.length > 0) { this.a[0] = end; this.down(0); }
  }
  replaceTop(c: Cursor): void { this.a[0] = c; this.down(0); }
  private down(i: number): void {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < this.a.length && this.less(l, m)) m = l;
      if (r < this.a.length && this.less(r, m)) m = r;
      if (m === i) return;
      this.swap(i, m);
      i = m;
    }
  }
  private less(i: number, j: number): boolean {
    return Buffer.compare(this.a[i]!.current as Buffer, this.a[j]!.current as Buffer) < 0;
  }
  private swap(i: number, j: number): void {
    const t = this.a[i] as Cursor; this.a[i] = this.a[j] as Cursor; this.a[j] = t;
  }
}

/**
 * Collects ids in any order into sorted runs on disk (at most `RUN_IDS` hex strings in memory
 * at a time), for one merge into a table once every id is in.
 */
export class RunWriter {
  private file?: FileHandle;
  private pending: string[] = [];
  private readonly runs: Array<{ from: number; to: number }> = [];
  private written = 0;

  constructor(private readonly dir: string, private readonly runIds = RUN_IDS) {}

  /** Ids added so far. */
  get count(): number { return this.written + this.pending.length; }

  async add(id: string): Promise<void> {
    this.pending.push(id);
    if (this.pending.length >= this.runIds) await this.spill();
  }

  private async spill(): Promise<void> {
    if (this.pending.length === 0) return;
    this.file ??= await anonymousFile(this.dir);
    const ids = this.pending.sort();
    this.pending = [];
    const block = Buffer.alloc(BLOCK_IDS * ID_BYTES);
    const from = this.written;
    for (let i = 0; i < ids.length; i += BLOCK_IDS) {
      const n = Math.min(BLOCK_IDS, ids.length - i);
      for (let k = 0; k < n; k++) block.write(ids[i + k] as string, k * ID_BYTES, 'hex');
      await this.file.write(block, 0, n * ID_BYTES, this.written * ID_BYTES);
      this.written += n;
    }
    this.runs.push({ from, to: this.written });
  }

  /** The runs as cursors (the last one still in memory); `close` after the merge. */
  cursors(): Cursor[] {
    const out: Cursor[] = [];
    const file = this.file;
    if (file) for (const r of this.runs) out.push(new FileCursor(file, r.from, r.to));
    if (this.pending.length > 0) out.push(new ArrayCursor(this.pending));
    return out;
  }

  async close(): Promise<void> {
    this.pending = [];
    await this.file?.close();
    this.file = undefined;
  }
}

export const defaultTableDir = (): string => tmpdir();
