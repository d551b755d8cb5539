// What the NBD server serves: any random-access byte source. A restore point's disk
// (the repository reader), a raw file, or a copy-on-write view of either.
import { open, type FileHandle } from 'node:fs/promises';
import type { Extent } from './protocol.ts';

/**
 * A read-only disk. `read` returns exactly `length` bytes for any range inside `size`.
 * `blockStatus`, when present, describes `base:allocation` for a prefix of the range
 * (consecutive extents from `offset`, flags STATE_HOLE/STATE_ZERO); without it the server
 * detects zero blocks by reading.
 */
export interface BlockSource {
  readonly size: number;
  read(offset: number, length: number): Promise<Uint8Array>;
  blockStatus?(offset: number, length: number): Promise<Extent[]>;
  /**
   * The server is done with a buffer `read` returned: its bytes are written to the socket (or
   * dropped with the connection), so the source may fill it for a later read. Called at most
   * once per buffer, never for one the server still holds; a source without it hands out
   * fresh buffers.
   */
  release?(data: Uint8Array): void;
}

/** A disk that also takes writes (the server exports it writable). */
export interface WritableBlockSource extends BlockSource {
  write(offset: number, data: Uint8Array): Promise<void>;
  /** Makes completed writes durable (as far as the source promises durability). */
  flush(): Promise<void>;
}

export function isWritable(source: BlockSource): source is WritableBlockSource {
  return typeof (source as Partial<WritableBlockSource>).write === 'function'
    && typeof (source as Partial<WritableBlockSource>).flush === 'function';
}

/** The shape of the repository's restore-point disk reader. */
export interface RepositoryDisk {
  readonly sizeBytes: number;
  read(offset: number, length: number): Promise<Uint8Array>;
}

/** Adapts the repository's disk reader ({ sizeBytes, read }) to a BlockSource. */
export function fromRepositoryDisk(disk: RepositoryDisk): BlockSource {
  return {
    size: disk.sizeBytes,
    read: (offset, length) => disk.read(offset, length),
  };
}

/** A raw image file as a read-only source; close() releases the file. */
export async function openFileSource(path: string): Promise<BlockSource & { close(): Promise<void> }> {
  const fh: FileHandle = await open(path, 'r');
  const { size } = await fh.stat();
  return {
    size,
    async read(offset, length) {
      const buf = Buffer.allocUnsafe(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(buf, done, length - done, offset + done);
        if (bytesRead === 0) throw new Error(`unexpected end of ${path} at ${offset + done}`);
        done += bytesRead;
      }
      return buf;
    },
    close: () => fh.close(),
  };
}

/** source.read, refusing a result of the wrong length (a broken source must not serve wrong bytes). */
export async function readChecked(source: BlockSource, offset: number, length: number): Promise<Uint8Array> {
  const data = await source.read(offset, length);
  if (data.length !== length) throw new Error(`source returned ${data.length} bytes for a ${length}-byte read at ${offset}`);
  return data;
}
