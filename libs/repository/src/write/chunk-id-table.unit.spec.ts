import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArrayCursor, ChunkIdTable, RunWriter } from './chunk-id-table.ts';

let dir: string;
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'cairn-chunk-id-table-')); });
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

const random = (n: number) => Array.from({ length: n }, () => randomBytes(32).toString('hex'));

describe('chunk id table', () => {
  it('answers exactly from sorted runs merged on disk, duplicates kept once, and leaves no file behind', async () => {
    const ids = random(5000);
    const runs = new RunWriter(dir, 700); // 7 runs on disk and one in memory
    for (const id of [...ids, ...ids.slice(0, 300)]) await runs.add(id);
    const table = await ChunkIdTable.merge(dir, runs.cursors(), runs.count);
    await runs.close();
    expect(table.count).toBe(5000);
    for (const id of ids) expect(table.has(id)).toBe(true);
    for (const id of random(5000)) expect(table.has(id)).toBe(false);
    expect(table.memoryBytes).toBe(65537 * 4 + 5000 * 4);
    expect(await readdir(dir)).toEqual([]); // unlinked once open
    table.close();
  });

  it('never takes a prefix match for the id: ids sharing their first 48 bits are told apart by the whole id', async () => {
    const prefix = 'abcdef012345';
    const same = random(4).map((id) => prefix + id.slice(12));
    const stored = same.slice(0, 3);
    const table = await ChunkIdTable.merge(dir, [new ArrayCursor(stored)], 3);
    for (const id of stored) expect(table.has(id)).toBe(true);
    expect(table.has(same[3] as string)).toBe(false);
    // Differs only in the last byte.
    const last = stored[0] as string;
    const flipped = last.slice(0, 63) + (last[63] === '0' ? '1' : '0');
    expect(table.has(flipped)).toBe(false);
    table.close();
    expect(() => table.has(last)).toThrow(/closed/);
  });

  it('merges a table with new ids into a new table (the old one stays readable until closed)', async () => {
    const a = random(3000);
    const b = random(2000);
    const first = await ChunkIdTable.merge(dir, [new ArrayCursor(a)], 3000);
    const second = await ChunkIdTable.merge(dir, [first.cursor(), new ArrayCursor([...b, ...a.slice(0, 10)])], 5010);
    expect(second.count).toBe(5000);
    for (const id of [...a, ...b]) expect(second.has(id)).toBe(true);
    expect(first.has(b[0] as string)).toBe(false);
    first.close();
    second.close();
    const empty = ChunkIdTable.empty();
    expect(empty.has(a[0] as string)).toBe(false);
  });

  it('refuses more ids than announced rather than drop some', async () => {
    await expect(ChunkIdTable.merge(dir, [new ArrayCursor(random(5))], 4)).rejects.toThrow(/more than the 4 ids/);
  });
});
