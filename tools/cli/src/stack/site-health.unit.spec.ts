import { describe, expect, it } from 'vitest';
import { allowedGapStep, silenceStep, type SilenceState } from './site-health.ts';

describe('silenceStep (a site silent longer than its allowed gap)', () => {
  const gap = 60_000;
  const start: SilenceState = { lastContactAt: 1_000_000, contacted: true, silent: false };

  it('says nothing within the gap, SiteSilent once past it, and nothing again while it stays silent', () => {
    expect(silenceStep(start, { reached: false, now: start.lastContactAt + gap, allowedGapMs: gap }).event).toBeUndefined();
    const past = silenceStep(start, { reached: false, now: start.lastContactAt + gap + 1, allowedGapMs: gap });
    expect(past.event).toEqual({ type: 'SiteSilent', data: { lastContactAt: new Date(start.lastContactAt).toISOString(), allowedGapMs: gap, silentForMs: gap + 1 } });
    expect(silenceStep(past.state, { reached: false, now: start.lastContactAt + 10 * gap, allowedGapMs: gap }).event).toBeUndefined();
  });

  it('contact clears it with SiteContactRestored (how long it was silent); contact while not silent says nothing', () => {
    const silent = { ...start, silent: true };
    const back = silenceStep(silent, { reached: true, now: start.lastContactAt + 5 * gap, allowedGapMs: gap });
    expect(back.event).toEqual({ type: 'SiteContactRestored', data: { silentForMs: 5 * gap } });
    expect(back.state).toEqual({ lastContactAt: start.lastContactAt + 5 * gap, contacted: true, silent: false });
    expect(silenceStep(start, { reached: true, now: start.lastContactAt + 1, allowedGapMs: gap }).event).toBeUndefined();
  });

  it('a site never reached since the watch started counts from the start, with no last contact', () => {
    const never: SilenceState = { lastContactAt: 0, contacted: false, silent: false };
    expect(silenceStep(never, { reached: false, now: gap + 1, allowedGapMs: gap }).event).toMatchObject({ type: 'SiteSilent', data: { lastContactAt: null } });
  });
});

describe('allowedGapStep (a site\'s own allowed gap)', () => {
  it('records a change with the gap it replaces, nothing when it is that already, and refuses less than 1 s', () => {
    expect(allowedGapStep(300_000, 120_000)).toEqual({ event: { type: 'SiteAllowedGapSet', data: { allowedGapMs: 120_000, previousMs: 300_000 } } });
    expect(allowedGapStep(120_000, 120_000)).toEqual({});
    expect(() => allowedGapStep(300_000, 999)).toThrow(/at least 1000/);
    expect(() => allowedGapStep(300_000, 1.5e3 + 0.5)).toThrow(RangeError);
  });

  it('a site silent for 3 min is silent under a 2-min gap and not under the 5-min default', () => {
    const start: SilenceState = { lastContactAt: 0, contacted: true, silent: false };
    expect(silenceStep(start, { reached: false, now: 180_000, allowedGapMs: 120_000 }).event?.type).toBe('SiteSilent');
    expect(silenceStep(start, { reached: false, now: 180_000, allowedGapMs: 300_000 }).event).toBeUndefined();
  });
});
