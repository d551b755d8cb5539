import { describe, expect, it } from 'vitest';
import { continueTrace } from './request-context.middleware.ts';

describe('continueTrace', () => {
  it('keeps the caller\'s trace id and flags with a new span id', () => {
    const incoming = `00-${'1'.repeat(32)}-${'2'.repeat(16)}-00`;
    const [version, trace, span, flags] = continueTrace(incoming).split('-');
    expect([version, trace, flags]).toEqual(['00', '1'.repeat(32), '00']);
    expect(span).toMatch(/^[0-9a-f]{16}$/);
    expect(span).not.toBe('2'.repeat(16));
  });

  it('starts a new trace when the header is missing, malformed or all zeros', () => {
    for (const header of [undefined, 'garbage', `00-${'0'.repeat(32)}-${'2'.repeat(16)}-01`]) {
      expect(continueTrace(header)).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
      expect(continueTrace(header).split('-')[1]).not.toBe('0'.repeat(32));
    }
  });
});
