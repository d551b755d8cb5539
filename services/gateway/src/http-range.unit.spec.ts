// Range, If-Range, If-None-Match and Content-Disposition as the file download route uses them.
import { describe, expect, it } from 'vitest';
import { contentDisposition, decideRange, ifRangeAllows, notModified } from './http-range.ts';

describe('decideRange', () => {
  it('takes one range of bytes, open-ended and suffix ranges included', () => {
    expect(decideRange(undefined, 100)).toEqual({ kind: 'whole' });
    expect(decideRange('bytes=0-9', 100)).toEqual({ kind: 'range', start: 0, end: 9 });
    expect(decideRange('bytes=90-', 100)).toEqual({ kind: 'range', start: 90, end: 99 });
    expect(decideRange('bytes=90-500', 100)).toEqual({ kind: 'range', start: 90, end: 99 });
    expect(decideRange('bytes=-10', 100)).toEqual({ kind: 'range', start: 90, end: 99 });
    expect(decideRange('bytes=-1000', 100)).toEqual({ kind: 'range', start: 0, end: 99 });
  });
  it('answers the whole file for what it does not serve, 416 past the end', () => {
    expect(decideRange('bytes=0-1,5-6', 100)).toEqual({ kind: 'whole' });
    expect(decideRange('items=0-1', 100)).toEqual({ kind: 'whole' });
    expect(decideRange('bytes=9-1', 100)).toEqual({ kind: 'whole' });
    expect(decideRange('bytes=100-', 100)).toEqual({ kind: 'unsatisfiable' });
    expect(decideRange('bytes=-0', 100)).toEqual({ kind: 'unsatisfiable' });
    expect(decideRange('bytes=0-', 0)).toEqual({ kind: 'unsatisfiable' });
  });
  it('validators: If-Range by strong ETag, If-None-Match with lists and *', () => {
    expect(ifRangeAllows(undefined, '"a"')).toBe(true);
    expect(ifRangeAllows('"a"', '"a"')).toBe(true);
    expect(ifRangeAllows('"b"', '"a"')).toBe(false);
    expect(ifRangeAllows('Sat, 01 Jan 2000 00:00:00 GMT', '"a"')).toBe(false);
    expect(notModified('"x", "a"', '"a"')).toBe(true);
    expect(notModified('*', '"a"')).toBe(true);
    expect(notModified('"x"', '"a"')).toBe(false);
  });
  it('names the download in ASCII and in UTF-8', () => {
    expect(contentDisposition('Grüße ☃.txt')).toBe(`attachment; filename="Gr__e _.txt"; filename*=UTF-8''Gr%C3%BC%C3%9Fe%20%E2%98%83.txt`);
  });
});
