import { describe, expect, it } from 'vitest';
import { allocatedReads, planReads, readAhead } from './extent-plan.ts';

const KiB = 1024;
async function all<T>(g: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of g) out.push(x);
  return out;
}

describe('planReads', () => {
  it('widens 64 KiB dirty runs to whole 256 KiB chunks and merges neighbours', async () => {
    const dirty = [{ offset: 64 * KiB, length: 64 * KiB }, { offset: 192 * KiB, length: 64 * KiB }, { offset: 1024 * KiB, length: 64 * KiB }];
    expect(await all(planReads(dirty, 256 * KiB, 4096 * KiB, 1024 * KiB))).toEqual([
      { offset: 0, length: 256 * KiB, marked: [{ offset: 64 * KiB, length: 64 * KiB }, { offset: 192 * KiB, length: 64 * KiB }] },
      { offset: 1024 * KiB, length: 256 * KiB, marked: [{ offset: 1024 * KiB, length: 64 * KiB }] },
    ]);
  });

  it('cuts long runs into bounded reads and clips the disk tail', async () => {
    const reads = await all(planReads([{ offset: 0, length: 2600 * KiB }], 256 * KiB, 2600 * KiB, 1024 * KiB));
    expect(reads).toEqual([
      { offset: 0, length: 1024 * KiB, marked: [{ offset: 0, length: 1024 * KiB }] },
      { offset: 1024 * KiB, length: 1024 * KiB, marked: [{ offset: 1024 * KiB, length: 1024 * KiB }] },
      { offset: 2048 * KiB, length: 552 * KiB, marked: [{ offset: 2048 * KiB, length: 552 * KiB }] },
    ]);
  });

  it('refuses extents out of order', async () => {
    await expect(all(planReads([{ offset: 100, length: 1 }, { offset: 0, length: 1 }], 4096, 8192, 4096))).rejects.toThrow(/out of order/);
  });
});

describe('allocatedReads', () => {
  const window = (marked: Array<[number, number]>) => ({ offset: 0, length: 1024 * KiB, marked: marked.map(([offset, length]) => ({ offset, length })) });

  it("asks only for a full window's marked parts, joining those a short hole apart", () => {
    expect(allocatedReads(window([[64 * KiB, 64 * KiB], [192 * KiB, 64 * KiB], [900 * KiB, 4 * KiB]]), 64 * KiB)).toEqual([
      { offset: 64 * KiB, length: 64 * KiB }, { offset: 192 * KiB, length: 64 * KiB }, { offset: 900 * KiB, length: 4 * KiB },
    ]);
    // Holes of 8 and 60 KiB are read with their neighbours; the 64 KiB one is not.
    expect(allocatedReads(window([[0, 4 * KiB], [12 * KiB, 4 * KiB], [76 * KiB, 4 * KiB], [144 * KiB, 16 * KiB]]), 64 * KiB)).toEqual([
      { offset: 0, length: 80 * KiB }, { offset: 144 * KiB, length: 16 * KiB },
    ]);
  });

  it('asks for nothing where nothing is marked, and for the whole window where all of it is', () => {
    expect(allocatedReads(window([]), 64 * KiB)).toEqual([]);
    expect(allocatedReads(window([[0, 1024 * KiB]]), 64 * KiB)).toEqual([{ offset: 0, length: 1024 * KiB }]);
  });
});

describe('readAhead', () => {
  it('keeps order while reading several ranges at once, and surfaces a failed read', async () => {
    let inFlight = 0; let peak = 0;
    const ranges = (async function* () { for (let i = 0; i < 10; i++) yield { offset: i, length: 1 }; })();
    const out = await all(readAhead(ranges, async (r) => {
      inFlight++; peak = Math.max(peak, inFlight);
      await new Promise((res) => setTimeout(res, (10 - r.offset) % 3));
      inFlight--;
      return r.offset;
    }, 3));
    expect(out.map((x) => x.data)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(peak).toBeLessThanOrEqual(3);
    const failing = (async function* () { yield { offset: 0, length: 1 }; yield { offset: 1, length: 1 }; })();
    await expect(all(readAhead(failing, async (r) => { if (r.offset === 1) throw new Error('boom'); return 1; }, 2))).rejects.toThrow('boom');
  });

  it('starts the first reads at the call, before the first pull, and never more than depth', async () => {
    const started: number[] = [];
    const ranges = (async function* () { for (let i = 0; i < 6; i++) yield { offset: i, length: 1 }; })();
    const reads = readAhead(ranges, async (r) => { started.push(r.offset); return r.offset; }, 2);
    await new Promise((res) => setTimeout(res, 5));
    expect(started).toEqual([0, 1]);
    const out = await all(reads);
    expect(out.map((x) => x.data)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(started).toEqual([0, 1, 2, 3, 4, 5]);
  });
});
