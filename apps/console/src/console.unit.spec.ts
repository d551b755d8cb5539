import { describe, expect, it } from 'vitest';
import { toCsv } from './csv.ts';
import { inWindow, nextRuns, retentionInWords } from './schedule.ts';

describe('schedule preview', () => {
  const from = new Date('2026-12-05T21:00:00Z');
  it('gives the next five runs in the policy\'s time zone', () => {
    const r = nextRuns({ cron: '0 2 * * *', timezone: 'Europe/Paris' }, 5, from);
    expect('runs' in r && r.runs.map((d) => d.toISOString())).toEqual([
      '2026-12-06T01:00:00.000Z', '2026-12-07T01:00:00.000Z', '2026-12-08T01:00:00.000Z', '2026-12-09T01:00:00.000Z', '2026-12-10T01:00:00.000Z',
    ]);
  });
  it('skips runs outside the backup window, which may wrap midnight', () => {
    const schedule = { cron: '0 * * * *', timezone: 'UTC', window: { start: '22:00', end: '02:00' } };
    const r = nextRuns(schedule, 5, from);
    expect('runs' in r && r.runs.map((d) => d.toISOString().slice(11, 16))).toEqual(['22:00', '23:00', '00:00', '01:00', '22:00']);
    expect(inWindow(schedule, new Date('2026-12-05T12:00:00Z'))).toBe(false);
  });
  it('says why a schedule cannot be read', () => {
    expect(nextRuns({ cron: '61 * * * *', timezone: 'UTC' })).toMatchObject({ error: expect.stringMatching(/cannot be read/) });
  });
  it('explains retention in words', () => {
    expect(retentionInWords({ last: 7, daily: 7, weekly: 4, monthly: 0, yearly: 1 })).toMatch(/^Keeps the last 7, one a day for 7 days, one a week for 4 weeks, one a year for 1 year;/);
    expect(retentionInWords({ last: 0, daily: 0, weekly: 0, monthly: 0, yearly: 0 })).toMatch(/Keeps nothing/);
  });
});

describe('audit CSV export', () => {
  it('quotes separators and defuses formulas', () => {
    const csv = toCsv([{ position: 1, eventId: 'e', time: 't', type: 'UserCreated', site: 's', actor: { kind: 'user', id: '=HYPERLINK("x")' }, streamId: 'user-a,b', correlationId: 'c', data: { a: 1 } }]);
    const [head, row] = csv.split('\r\n');
    expect(head).toBe('position,time,type,site,actorKind,actor,streamId,correlationId,data');
    expect(row).toBe('1,t,UserCreated,s,user,"\'=HYPERLINK(""x"")","user-a,b",c,"{""a"":1}"');
  });
});
