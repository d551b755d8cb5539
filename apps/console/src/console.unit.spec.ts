import { describe, expect, it } from 'vitest';
import { toCsv } from './csv.ts';
import { inWindow, nextRuns, retentionInWords } from './schedule.ts';
import { minutesInWords, rpoMinutesOf, rpoOfVms, selects } from './rpo.ts';
import type { Policy, SiteHealth, Vm } from './api.ts';
import { summarizeSite } from './site-health.ts';

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

describe('RPO on the dashboard (the scheduler\'s rules)', () => {
  const now = new Date('2026-12-06T12:00:00Z');
  const vm = (name: string, lastBackupAt: string | null, tags: string[] = [], host = 'h1'): Vm => ({
    vmId: `id-${name}`, name, site: 's', hypervisor: { kind: 'qemu', host }, tags, disks: [], lastBackupAt, restorePoints: 0,
  });
  const policy = (p: Partial<Policy>): Policy => ({
    policyId: p.name ?? 'p', name: 'p', selector: {}, schedule: { cron: '0 2 * * *', timezone: 'UTC' }, retention: { daily: 7, weekly: 0, monthly: 0, yearly: 0, last: 0 },
    repository: 'default', keyRef: 'k', priority: 0, version: 1, deletedAt: null, createdAt: '2026-12-01T00:00:00Z', ...p,
  });
  it('uses the policy\'s rpoMinutes, else the longest gap of its schedule plus 2 h', () => {
    expect(rpoMinutesOf(policy({ rpoMinutes: 90 }), now)).toBe(90);
    expect(rpoMinutesOf(policy({}), now)).toBe(24 * 60 + 120);
    expect(rpoMinutesOf(policy({ schedule: { cron: '0 */6 * * *', timezone: 'UTC' } }), now)).toBe(6 * 60 + 120);
    expect(minutesInWords(90)).toBe('90 min');
    expect(minutesInWords(26 * 60)).toBe('26 h');
  });
  it('judges each VM against the shortest RPO of the active policies that select it', () => {
    const policies = [
      policy({ name: 'hourly', selector: { tags: ['prod'] }, rpoMinutes: 60 }),
      policy({ name: 'daily', selector: { hypervisor: 'h1' } }),
      policy({ name: 'paused', selector: { names: ['c'] }, rpoMinutes: 1, pausedAt: '2026-12-02T00:00:00Z' }),
    ];
    const r = rpoOfVms([
      vm('a', '2026-12-06T11:30:00Z', ['prod']), vm('b', '2026-12-06T10:00:00Z', ['prod']), vm('c', '2026-12-05T20:00:00Z'),
      vm('d', null, [], 'h2'), vm('e', null),
    ], policies, now);
    expect(r.map((x) => [x.name, x.policy, x.rpoMinutes, x.within])).toEqual([
      ['a', 'hourly', 60, true], ['b', 'hourly', 60, false], ['c', 'daily', 1560, true], ['d', null, null, null], ['e', 'daily', 1560, false],
    ]);
    expect(selects(policies[1]!, vm('x', null, [], 'h2'))).toBe(false);
  });
});

describe('every site\'s health at the hub (Sites tile and page)', () => {
  const now = Date.parse('2026-12-06T05:00:00Z');
  const base: SiteHealth = {
    site: 'b', leafLink: 'up', lastContactAt: '2026-12-06T04:59:50Z', silent: false, allowedGapMs: 300_000,
    eventsAtSite: 120, eventsCopied: 120, eventLag: 0, relayConnected: true, failedJobs24h: 0, rpoMisses24h: 0,
    restorePoints: 3, repositoryBytes: 1024, replication: [{ target: 'a', replicas: 2, lastReplicaAt: '2026-12-06T04:50:00Z', lagMs: 125_000 }],
  };
  it('says a reached site\'s link, contact, event lag, failures, RPO misses and replication lag per pair', () => {
    const s = summarizeSite(base, now);
    expect(s.verdict).toBe('ok');
    expect(s.line).toBe('b: link up · contact 10 s ago · event lag 0 · 0 failed jobs 24 h · 0 RPO misses 24 h · → a 2 min lag, 2 replicas');
  });
  it('marks a silent site bad, and one with failures, RPO misses or events not yet copied as a warning', () => {
    const silent = summarizeSite({ ...base, site: 'a', leafLink: 'down', silent: true, lastContactAt: '2026-12-06T04:40:00Z', eventLag: null, replication: [] }, now);
    expect(silent).toMatchObject({ verdict: 'bad', link: 'link down, SILENT', lastContact: '20 min ago', eventLag: 'unknown' });
    expect(silent.line).toContain('no replication');
    expect(summarizeSite({ ...base, lastContactAt: null }, now).lastContact).toBe('never');
    expect(summarizeSite({ ...base, failedJobs24h: 1 }, now).verdict).toBe('warn');
    expect(summarizeSite({ ...base, rpoMisses24h: 2 }, now).verdict).toBe('warn');
    expect(summarizeSite({ ...base, eventLag: 4 }, now).verdict).toBe('warn');
  });
});
