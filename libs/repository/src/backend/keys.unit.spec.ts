import { describe, expect, it } from 'vitest';
import { BackendError } from './backend.ts';
import { assertValidKey, assertValidPrefix, assertValidRange, isValidKey } from './keys.ts';

describe('keys', () => {
  it('accepts relative keys of safe segments', () => {
    for (const key of ['a', 'data/ab/abcdef0123', 'index/2026-11-25T03.00.00Z_x', '.hidden', 'a-b_c.d']) {
      expect(isValidKey(key), key).toBe(true);
    }
  });

  it('rejects traversal, absolute paths, empty segments and odd characters', () => {
    for (const key of ['', '/a', '..', 'a/..', '../a', 'a/./b', 'a//b', 'a/', 'a\\b', 'a b', 'é', 'a\0b', 'a:b']) {
      expect(isValidKey(key), JSON.stringify(key)).toBe(false);
      expect(() => assertValidKey(key)).toThrow(BackendError);
    }
    expect(() => assertValidKey('a/../b')).toThrow(/"\.\." segments are not allowed/);
    expect(() => assertValidKey('/etc/passwd')).toThrow(/absolute keys/);
  });

  it('accepts prefixes cut anywhere, but not traversal', () => {
    for (const p of ['', 'data/', 'data/a', 'a/b/']) expect(() => assertValidPrefix(p), p).not.toThrow();
    for (const p of ['/', '../', 'a//', '/a', 'a/../']) expect(() => assertValidPrefix(p), p).toThrow(BackendError);
  });

  it('rejects negative or fractional ranges', () => {
    expect(() => assertValidRange('k', 0, 0)).not.toThrow();
    for (const [o, l] of [[-1, 1], [0, -1], [0.5, 1], [0, Number.NaN], [Number.POSITIVE_INFINITY, 1]] as const) {
      expect(() => assertValidRange('k', o, l)).toThrow(BackendError);
    }
  });
});
