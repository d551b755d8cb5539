import { describe, expect, it } from 'vitest';
import { silenceStep, type SilenceState } from './site-health.ts';

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
