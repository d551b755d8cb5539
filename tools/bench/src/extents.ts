// What Cairn's writer is fed in the benchmark: the regions a dirty bitmap reports,
// widened to whole chunks (the data mover reads whole chunks), read from the image file
// in chunk-aligned pieces.
import { open } from 'node:fs/promises';

export interface Region {
  readonly offset: number;
  readonly length: number;
}

/**
 * Turns dirty blocks (indices of `blockSize` units) into sorted, merged regions aligned to
 * `chunkSize` and clipped to the disk.
 */
export function chunkAlignedRegions(
  blocks: Iterable<number>,
  blockSize: number,
  chunkSize: number,
  diskSize: number,
): Region[] {
  const chunks = new Set<number>();
  for (const b of blocks) {
    const start = b * blockSize;
    const end = Math.min(start + blockSize, diskSize);
    for (let c = Math.floor(start / chunkSize); c * chunkSize < end; c++) chunks.add(c);
  }
  const sorted = [...chunks].sort((a, b) => a - b);
  const regions: Region[] = [];
  for (const c of sorted) {
    const offset = c * chunkSize;
    const length = Math.min(chunkSize, diskSize - offset);
    const last = regions.at(-1);
    if (last && last.offset + last.length === offset) regions[regions.length - 1] = { offset: last.offset, length: last.length + length };
    else regions.push({ offset, length });
  }
  return regions;
}

/**
 * Reads `regions` of a file as extents of at most `pieceSize` bytes (keep it a multiple of
 * the chunk size so pieces stay chunk-aligned). Every extent is read into the same buffer,
 * as a reader feeding Cairn's writer may (it copies what it keeps before asking for the next
 * extent); the next read starts only when the consumer asks for it.
 */
export async function* readRegions(
  path: string,
  regions: Iterable<Region>,
  pieceSize: number,
): AsyncGenerator<{ offset: number; data: Uint8Array }> {
  const file = await open(path, 'r');
  const buffer = new Uint8Array(pieceSize);
  try {
    for (const region of regions) {
      for (let at = region.offset; at < region.offset + region.length; at += pieceSize) {
        const length = Math.min(pieceSize, region.offset + region.length - at);
        const data = buffer.subarray(0, length);
        let filled = 0;
        while (filled < length) {
          const { bytesRead } = await file.read(data, filled, length - filled, at + filled);
          if (bytesRead === 0) throw new Error(`${path}: unexpected end of file at ${at + filled}`);
          filled += bytesRead;
        }
        yield { offset: at, data };
      }
    }
  } finally {
    await file.close();
  }
}
