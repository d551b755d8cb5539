import { describe, expect, it } from 'vitest';
import { progressLine } from './operate.command.ts';

describe('job watch progress line', () => {
  it('shows a bar, the share, bytes, rate and ETA when the total is known', () => {
    expect(progressLine('disk0', 50 * 1024 * 1024, 200 * 1024 * 1024, 25 * 1024 * 1024))
      .toBe('disk0 [#####---------------]  25% 50.0 MiB of 200.0 MiB, 25.0 MiB/s, ETA 6 s');
  });
  it('shows bytes and rate without a total', () => {
    expect(progressLine('disk0', 1024, null, 0)).toBe('disk0: 1.0 KiB read, 0 B/s');
  });
});
