import { describe, expect, it } from 'vitest';
import { decodeFileIndex, encodeFileIndex, fileMatcher, type FileIndex } from './file-index.ts';

describe('file index', () => {
  it('round-trips through its encoding and refuses anything else', () => {
    const index: FileIndex = { version: 1, builtAt: '2026-12-05T00:00:00.000Z', filesystems: [{ disk: 'disk0', name: 'part1', type: 'ext4', indexed: true }], files: [{ disk: 'disk0', path: '/part1/a b/ü.txt', type: 'file', size: 3, mtime: '2020-01-01T00:00:00.000Z' }] };
    expect(decodeFileIndex(encodeFileIndex(index))).toEqual(index);
    expect(() => decodeFileIndex(Buffer.from('nope'))).toThrow();
  });

  it('matches globs by name or by path, and regular expressions', () => {
    const byName = fileMatcher('*.xlsx');
    expect(byName('/part1/home/anna/budget 2026.xlsx')).toBe(true);
    expect(byName('/part1/home/anna/budget.xlsx.bak')).toBe(false);
    const byPath = fileMatcher('/part1/etc/**');
    expect(byPath('/part1/etc/ssh/sshd_config')).toBe(true);
    expect(byPath('/part2/etc/hosts')).toBe(false);
    const rx = fileMatcher('report-\\d{4}\\.txt$', { regex: true });
    expect(rx('/part1/report-2026.txt')).toBe(true);
    expect(rx('/part1/report-x.txt')).toBe(false);
    expect(() => fileMatcher('([', { regex: true })).toThrow(/not a valid regular expression/);
    expect(() => fileMatcher('')).toThrow(/empty/);
  });
});
