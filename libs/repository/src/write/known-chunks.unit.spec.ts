import { describe, expect, it } from 'vitest';
import { MemoryBackend } from '../backend/testing/memory-backend.ts';
import { chunkKey } from '../format/layout.ts';
import { bumpGeneration } from '../leases/leases.ts';
import { KnownChunks } from './known-chunks.ts';

const id = (n: number) => n.toString(16).padStart(64, '0');

describe('known chunks', () => {
  it('probes a few ids, then lists once; forgets after a sweep', async () => {
    const b = new MemoryBackend();
    for (const n of [1, 2, 3, 4]) await b.put(chunkKey(id(n)), new Uint8Array(1));
    const known = new KnownChunks(b, 2);
    const gen = await known.refresh();
    expect(await known.contains(id(1))).toBe(true);
    expect(await known.contains(id(9))).toBe(false);
    // Past the probe limit: one listing answers everything.
    expect(await Promise.all([id(2), id(3), id(4), id(8)].map((x) => known.contains(x)))).toEqual([true, true, true, false]);
    await b.delete(chunkKey(id(3)));
    expect(await known.contains(id(3))).toBe(true); // cached: nothing swept in between
    await bumpGeneration(b);
    expect(await known.refresh()).not.toBe(gen);
    expect(await known.contains(id(3))).toBe(false);
    known.close();
  });

  it('an upload under way is known to other writers only once its writer made it durable', async () => {
    const known = new KnownChunks(new MemoryBackend(), 0);
    const owner = {};
    let fail!: (e: Error) => void;
    const upload = new Promise<void>((_, reject) => { fail = reject; });
    known.claim(id(5), owner, upload, Promise.resolve());
    expect(known.inFlight(id(5))?.owner).toBe(owner);
    fail(new Error('boom'));
    await upload.catch(() => undefined);
    await Promise.resolve();
    expect(known.inFlight(id(5))).toBeUndefined();
    expect(await known.contains(id(5))).toBe(false);

    // Stored, but the writer's flush has not made it durable yet: not known.
    let durable!: () => void;
    let lost!: (e: Error) => void;
    known.claim(id(6), owner, Promise.resolve(), new Promise<void>((res) => { durable = res; }));
    await new Promise((r) => setTimeout(r, 0));
    expect(known.has(id(6))).toBe(false);
    expect(known.inFlight(id(6))?.owner).toBe(owner);
    durable();
    await new Promise((r) => setTimeout(r, 0));
    expect(known.has(id(6))).toBe(true);
    expect(known.inFlight(id(6))).toBeUndefined();

    // Stored, then the writer failed before its flush: never known.
    known.claim(id(7), owner, Promise.resolve(), new Promise<void>((_, rej) => { lost = rej; }));
    lost(new Error('writer failed'));
    await new Promise((r) => setTimeout(r, 0));
    expect(known.has(id(7))).toBe(false);
    expect(await known.contains(id(7))).toBe(false);
    known.close();
  });

  it('folds what it learns into its on-disk table in the background and stays exact', async () => {
    const b = new MemoryBackend();
    const known = new KnownChunks(b, 0, undefined, 100);
    await known.refresh();
    const owner = {};
    const ids = Array.from({ length: 1000 }, (_, n) => id(n + 1));
    for (const x of ids) known.claim(x, owner, Promise.resolve(), Promise.resolve());
    await new Promise((r) => setTimeout(r, 50));
    for (const x of ids) expect(known.has(x)).toBe(true);
    expect(known.has(id(5000))).toBe(false);
    // Folded: the memory held is the table's index, not a Set of 1000 strings.
    expect(known.memoryBytes).toBeLessThan(65537 * 4 + 1000 * 4 + 200 * 120);
    // A listing merges with what was folded; nothing learnt before is lost.
    await b.put(chunkKey(id(7777)), new Uint8Array(1));
    expect(await known.contains(id(7777))).toBe(true);
    expect(await known.contains(id(7778))).toBe(false);
    for (const x of ids) expect(await known.contains(x)).toBe(true);
    // A sweep drops it all.
    await bumpGeneration(b);
    await known.refresh();
    expect(known.has(id(1))).toBe(false);
    known.close();
  });

  it('says where the table could not be written (TMPDIR) and stores nothing wrongly as known', async () => {
    const b = new MemoryBackend();
    await b.put(chunkKey(id(1)), new Uint8Array(1));
    const known = new KnownChunks(b, 0, '/nonexistent/cairn-known-chunks');
    await expect(known.contains(id(1))).rejects.toThrow(/known-chunks table in \/nonexistent\/cairn-known-chunks could not be written: .*ENOENT.*TMPDIR/);
    expect(known.has(id(1))).toBe(false);
    known.close();
  });

  it('a failed listing is not remembered: the next writer lists again', async () => {
    const b = new MemoryBackend();
    await b.put(chunkKey(id(1)), new Uint8Array(1));
    let fail = true;
    const flaky = Object.assign(Object.create(b) as MemoryBackend, {
      list: (prefix: string) => {
        if (fail) throw new Error('listing failed');
        return b.list(prefix);
      },
    });
    const known = new KnownChunks(flaky, 0);
    await expect(known.contains(id(1))).rejects.toThrow(/listing failed/);
    fail = false;
    expect(await known.contains(id(1))).toBe(true);
    known.close();
  });
});
