import { describe, expect, it } from 'vitest';
import { allocatedExtents, changedExtents, mergeExtents, walkExtents, type BlockStatusSource } from './extents.ts';
import type { Extent } from './protocol.ts';

/** A source that answers at most `perReply` extents of a fixed map, like a server giving a prefix. */
function source(map: Array<[number, number]>, perReply: number): BlockStatusSource & { calls: number } {
  const extents: Extent[] = [];
  let at = 0;
  for (const [length, flags] of map) {
    extents.push({ offset: at, length, flags });
    at += length;
  }
  return {
    size: at,
    calls: 0,
    async blockStatus(offset, length) {
      this.calls++;
      const out: Extent[] = [];
      for (const e of extents) {
        const s = Math.max(e.offset, offset);
        const t = Math.min(e.offset + e.length, offset + length);
        if (s < t && out.length < perReply) out.push({ offset: s, length: t - s, flags: e.flags });
      }
      return out;
    },
  };
}

const collect = async (it: AsyncIterable<Extent>) => {
  const out: Extent[] = [];
  for await (const e of it) out.push(e);
  return out;
};

describe('extent walkers', () => {
  const map: Array<[number, number]> = [[100, 0], [50, 1], [50, 1], [30, 0], [20, 1], [10, 3], [40, 2], [5, 0]];

  it('walks the whole disk in windows even when replies cover only a prefix', async () => {
    const src = source(map, 2);
    const all = await collect(walkExtents(src, 'x', { windowBytes: 4096 }));
    expect(all.reduce((n, e) => n + e.length, 0)).toBe(src.size);
    expect(src.calls).toBeGreaterThan(3);
  });

  it('merges dirty runs across replies and windows', async () => {
    const src = source(map, 1);
    expect(await collect(changedExtents(src, 'qemu:dirty-bitmap:b', { windowBytes: 4096 }))).toEqual([
      { offset: 100, length: 100, flags: 1 }, { offset: 230, length: 30, flags: 1 },
    ]);
  });

  it('selects what base:allocation does not promise to be zero', async () => {
    expect(await collect(allocatedExtents(source(map, 3), { windowBytes: 4096 }))).toEqual([
      { offset: 0, length: 250, flags: 0 }, { offset: 300, length: 5, flags: 0 },
    ]);
  });

  it('restricts to a range and refuses a server that does not make progress', async () => {
    expect(await collect(changedExtents(source(map, 5), 'b', { offset: 120, length: 20 }))).toEqual([{ offset: 120, length: 20, flags: 1 }]);
    const stuck: BlockStatusSource = { size: 100, blockStatus: async () => [] };
    await expect(collect(allocatedExtents(stuck))).rejects.toThrow(/no extents/);
  });

  it('merges equal neighbours in a list', () => {
    expect(mergeExtents([{ offset: 0, length: 5, flags: 1 }, { offset: 5, length: 5, flags: 1 }, { offset: 10, length: 1, flags: 0 }]))
      .toEqual([{ offset: 0, length: 10, flags: 1 }, { offset: 10, length: 1, flags: 0 }]);
  });
});
