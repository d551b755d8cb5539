// A writable view of a read-only source: written blocks go to an overlay (memory, or a
// sparse temp file for large write sets) and reads merge overlay over base. The base is
// never written, so an instant-recovery VM can run from a restore point and its changes
// are thrown away (or kept, by whoever owns the overlay) when the export ends.
import { mkdtemp, open, rm, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readChecked, type BlockSource, type WritableBlockSource } from './block-source.ts';
import { NBD_ENOSPC, NbdRequestError, type Extent } from './protocol.ts';

/** Where written blocks live. Blocks are `blockSize` bytes, addressed by index. */
export interface OverlayStore {
  has(block: number): boolean;
  read(block: number): Promise<Uint8Array>;
  write(block: number, data: Uint8Array): Promise<void>;
  flush(): Promise<void>;
  close(): Promise<void>;
  readonly storedBytes: number;
}

export interface CopyOnWriteOptions {
  /** Overlay granularity (default 4096, a power of two). */
  readonly blockSize?: number;
  /** 'memory' (default) or a temp file in `dir` (default os.tmpdir()). */
  readonly overlay?: 'memory' | { readonly dir?: string };
  /** Writes that would grow the overlay past this fail with ENOSPC (default 1 GiB). */
  readonly maxOverlayBytes?: number;
}

export type CopyOnWriteDisk = WritableBlockSource & {
  /** Number of overlay bytes in use. */
  readonly overlayBytes: number;
  /** Releases the overlay (deletes a temp file). */
  close(): Promise<void>;
};

export async function copyOnWrite(base: BlockSource, options: CopyOnWriteOptions = {}): Promise<CopyOnWriteDisk> {
  const blockSize = options.blockSize ?? 4096;
  if (!Number.isInteger(blockSize) || blockSize < 512 || (blockSize & (blockSize - 1)) !== 0) {
    throw new RangeError(`blockSize must be a power of two ≥ 512, got ${blockSize}`);
  }
  const store = options.overlay === undefined || options.overlay === 'memory'
    ? new MemoryOverlay()
    : await FileOverlay.create(options.overlay.dir ?? tmpdir(), blockSize);
  return new CopyOnWrite(base, store, blockSize, options.maxOverlayBytes ?? 1024 * 1024 * 1024);
}

class CopyOnWrite implements CopyOnWriteDisk {
  readonly size: number;
  readonly blockStatus?: (offset: number, length: number) => Promise<Extent[]>;
  // Writes are serialised so a partial-block read-modify-write never races another write.
  private writeChain: Promise<void> = Promise.resolve();

  constructor(
    private readonly base: BlockSource,
    private readonly store: OverlayStore,
    private readonly blockSize: number,
    private readonly maxOverlayBytes: number,
  ) {
    this.size = base.size;
    if (base.blockStatus) this.blockStatus = (offset, length) => this.mergedStatus(offset, length);
  }

  get overlayBytes(): number {
    return this.store.storedBytes;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const out = Buffer.allocUnsafe(length);
    const bs = this.blockSize;
    const end = offset + length;
    let at = offset;
    // Runs of blocks absent from the overlay are read from the base in one call.
    while (at < end) {
      const block = Math.floor(at / bs);
      const blockEnd = Math.min((block + 1) * bs, end);
      if (this.store.has(block)) {
        const data = await this.store.read(block);
        out.set(data.subarray(at - block * bs, blockEnd - block * bs), at - offset);
        at = blockEnd;
        continue;
      }
      let runEnd = blockEnd;
      while (runEnd < end && !this.store.has(Math.floor(runEnd / bs))) runEnd = Math.min(runEnd + bs, end);
      out.set(await readChecked(this.base, at, runEnd - at), at - offset);
      at = runEnd;
    }
    return out;
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    const run = this.writeChain.then(() => this.writeNow(offset, data));
    this.writeChain = run.catch(() => undefined);
    return run;
  }

  async flush(): Promise<void> {
    await this.writeChain;
    await this.store.flush();
  }

  close(): Promise<void> {
    return this.store.close();
  }

  private async writeNow(offset: number, data: Uint8Array): Promise<void> {
    const bs = this.blockSize;
    const end = offset + data.length;
    const first = Math.floor(offset / bs);
    const last = Math.floor((end - 1) / bs);
    let fresh = 0;
    for (let b = first; b <= last; b++) if (!this.store.has(b)) fresh++;
    if (this.store.storedBytes + fresh * bs > this.maxOverlayBytes) {
      throw new NbdRequestError(`copy-on-write overlay full (${this.maxOverlayBytes} bytes)`, NBD_ENOSPC);
    }
    for (let b = first; b <= last; b++) {
      const bStart = b * bs;
      const bEnd = Math.min(bStart + bs, this.size);
      const from = Math.max(offset, bStart);
      const to = Math.min(end, bEnd);
      let block: Uint8Array;
      if (from === bStart && to === bEnd) {
        block = data.slice(from - offset, to - offset);
      } else {
        block = Buffer.from(this.store.has(b) ? await this.store.read(b) : await readChecked(this.base, bStart, bEnd - bStart));
        block.set(data.subarray(from - offset, to - offset), from - bStart);
      }
      await this.store.write(b, block);
    }
  }

  private async mergedStatus(offset: number, length: number): Promise<Extent[]> {
    const baseExtents = await this.base.blockStatus!(offset, length);
    const bs = this.blockSize;
    const out: Extent[] = [];
    const push = (o: number, l: number, flags: number) => {
      const last = out[out.length - 1];
      if (last && last.offset + last.length === o && last.flags === flags) out[out.length - 1] = { ...last, length: last.length + l };
      else out.push({ offset: o, length: l, flags });
    };
    for (const e of baseExtents) {
      let at = e.offset;
      const end = e.offset + e.length;
      while (at < end) {
        const block = Math.floor(at / bs);
        const next = Math.min((block + 1) * bs, end);
        push(at, next - at, this.store.has(block) ? 0 : e.flags);
        at = next;
      }
    }
    return out;
  }
}

class MemoryOverlay implements OverlayStore {
  private readonly blocks = new Map<number, Uint8Array>();
  private bytes = 0;

  get storedBytes(): number {
    return this.bytes;
  }

  has(block: number): boolean {
    return this.blocks.has(block);
  }

  async read(block: number): Promise<Uint8Array> {
    return this.blocks.get(block)!;
  }

  async write(block: number, data: Uint8Array): Promise<void> {
    const old = this.blocks.get(block);
    this.bytes += data.length - (old?.length ?? 0);
    this.blocks.set(block, data);
  }

  async flush(): Promise<void> {}

  async close(): Promise<void> {
    this.blocks.clear();
    this.bytes = 0;
  }
}

/** Blocks at their own offset in a sparse temp file; which ones are present is kept in memory. */
class FileOverlay implements OverlayStore {
  private readonly present = new Map<number, number>();
  private bytes = 0;

  private constructor(private readonly dir: string, private readonly fh: FileHandle, private readonly blockSize: number) {}

  static async create(parent: string, blockSize: number): Promise<FileOverlay> {
    const dir = await mkdtemp(join(parent, 'cairn-nbd-cow-'));
    const fh = await open(join(dir, 'overlay'), 'w+');
    return new FileOverlay(dir, fh, blockSize);
  }

  get storedBytes(): number {
    return this.bytes;
  }

  has(block: number): boolean {
    return this.present.has(block);
  }

  async read(block: number): Promise<Uint8Array> {
    const length = this.present.get(block)!;
    const buf = Buffer.alloc(length);
    await this.fh.read(buf, 0, length, block * this.blockSize);
    return buf;
  }

  async write(block: number, data: Uint8Array): Promise<void> {
    await this.fh.write(data, 0, data.length, block * this.blockSize);
    const old = this.present.get(block) ?? 0;
    this.bytes += data.length - old;
    this.present.set(block, data.length);
  }

  flush(): Promise<void> {
    return this.fh.sync();
  }

  async close(): Promise<void> {
    await this.fh.close().catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true });
  }
}
