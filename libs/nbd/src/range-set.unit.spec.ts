import { describe, expect, it } from 'vitest';
import { RangeSet } from './range-set.ts';
import { Prng } from './test-support/fake-wire.ts';

describe('RangeSet', () => {
  it('accepts disjoint ranges in any order and refuses overlaps', () => {
    const s = new RangeSet();
    expect(s.add(10, 20)).toBe(true);
    expect(s.add(0, 5)).toBe(true);
    expect(s.add(30, 40)).toBe(true);
    expect(s.add(19, 21)).toBe(false);
    expect(s.add(4, 11)).toBe(false);
    expect(s.add(0, 100)).toBe(false);
    expect(s.add(5, 10)).toBe(true);
    expect(s.add(20, 30)).toBe(true);
    expect(s.covered).toBe(40);
    expect(s.add(15, 16)).toBe(false);
    expect(s.add(7, 7)).toBe(false);
  });

  it('agrees with a byte map on random inputs', () => {
    const rng = new Prng(7);
    for (let round = 0; round < 200; round++) {
      const s = new RangeSet();
      const used = new Uint8Array(500);
      for (let i = 0; i < 40; i++) {
        const a = rng.int(0, 499);
        const b = rng.int(a + 1, Math.min(500, a + 60));
        const free = used.subarray(a, b).every((x) => x === 0);
        expect(s.add(a, b)).toBe(free);
        if (free) used.fill(1, a, b);
      }
      expect(s.covered).toBe(used.reduce((n, x) => n + x, 0));
    }
  });
});
