import { describe, expect, it } from 'vitest';
import { SubjectHeads } from './subject-heads.ts';

describe('SubjectHeads', () => {
  it('answers for the revision it knows as the last, and for no other', () => {
    const heads = new SubjectHeads();
    heads.note('s', { seq: 7, revision: 2n });
    expect(heads.at('s', 2n)).toEqual({ seq: 7, revision: 2n });
    expect(heads.at('s', 1n)).toBeUndefined();
    expect(heads.at('t', 2n)).toBeUndefined();
  });

  it('keeps the newest message of a subject (a late delivery of an older one changes nothing)', () => {
    const heads = new SubjectHeads();
    heads.note('s', { seq: 9, revision: 3n });
    heads.note('s', { seq: 7, revision: 2n });
    expect(heads.at('s', 3n)).toEqual({ seq: 9, revision: 3n });
    expect(heads.at('s', 2n)).toBeUndefined();
  });

  it('forgets the subject learnt longest ago past its limit', () => {
    const heads = new SubjectHeads(2);
    heads.note('a', { seq: 1, revision: 0n });
    heads.note('b', { seq: 2, revision: 0n });
    heads.note('a', { seq: 3, revision: 1n });
    heads.note('c', { seq: 4, revision: 0n });
    expect(heads.size).toBe(2);
    expect(heads.at('b', 0n)).toBeUndefined();
    expect(heads.at('a', 1n)).toBeDefined();
    expect(heads.at('c', 0n)).toBeDefined();
  });
});
