import { describe, expect, it } from 'vitest';
import type { Policy } from '@cairn/contracts';
import { cronProblems, decidePolicy, dueSlots, dueTestRestoreSlots, inBackupWindow, policyProblems, PolicyInvalidError, selects } from './policy.decider.ts';
import { applyRetention } from './retention.ts';

const policy: Policy = {
  policyId: 'p1', name: 'nightly', selector: { names: ['web'] },
  schedule: { cron: '0 2 * * *', timezone: 'Europe/Paris' },
  retention: { last: 2, daily: 7, weekly: 4, monthly: 0, yearly: 0 },
  repository: 'default', keyRef: 'default', priority: 10,
};

describe('policy decider', () => {
  it('creates a valid policy', () => {
    expect(decidePolicy({ kind: 'create', policy, knownRepositories: ['default'] }, { policy: null, deleted: false }))
      .toEqual([{ type: 'PolicyCreated', data: policy }]);
  });

  it('refuses an invalid cron, an unknown time zone, an empty selector and a missing repository, naming each', () => {
    const bad = { ...policy, selector: {}, schedule: { cron: '61 * * * *', timezone: 'Mars/Olympus' }, repository: 'nope' };
    try {
      decidePolicy({ kind: 'create', policy: bad, knownRepositories: ['default'] }, { policy: null, deleted: false });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(PolicyInvalidError);
      const problems = (e as PolicyInvalidError).problems.join('\n');
      expect(problems).toMatch(/cron/);
      expect(problems).toMatch(/time zone/);
      expect(problems).toMatch(/selector is empty/);
      expect(problems).toMatch(/repository "nope" does not exist/);
    }
  });

  it('takes cron exactly as documented (5 or 6 fields) and no schedule closer than the minimum interval', () => {
    for (const ok of ['0 2 * * *', '*/5 * * * *', '0 */5 * * * *', '0 0 * * 1-5', '30 2 1 * *']) expect(cronProblems(ok, 'Europe/Paris'), ok).toEqual([]);
    const bad: [string, RegExp][] = [
      ['* * * * * * *', /7 fields: give 5/], ['* * * *', /4 fields/], ['', /1 fields/], ['61 * * * *', /invalid/],
      ['* * * * *', /every 1 min: backups must be at least 5 min apart/], ['* * * * * *', /every 1 s/],
      ['*/4 * * * *', /every 4 min/], ['0,1 3 * * *', /every 1 min/], ['*/10 * * * * *', /every 10 s/],
    ];
    for (const [cron, why] of bad) expect(cronProblems(cron, 'UTC').join('\n'), cron).toMatch(why);
    // The minimum is the site's: a test site may allow every 10 s.
    expect(cronProblems('*/10 * * * * *', 'UTC', 10_000)).toEqual([]);
    const often = { ...policy, schedule: { cron: '* * * * *', timezone: 'UTC' } };
    expect(() => decidePolicy({ kind: 'create', policy: often, knownRepositories: ['default'] }, { policy: null, deleted: false })).toThrow(/at least 5 min apart/);
    expect(decidePolicy({ kind: 'create', policy: often, knownRepositories: ['default'], minIntervalMs: 60_000 }, { policy: null, deleted: false })).toHaveLength(1);
  });

  it('gives the due slots in the policy time zone', () => {
    const slots = dueSlots(policy, new Date('2026-03-01T00:00:00Z'), new Date('2026-03-03T12:00:00Z'));
    expect(slots.map((d) => d.toISOString())).toEqual(['2026-03-01T01:00:00.000Z', '2026-03-02T01:00:00.000Z', '2026-03-03T01:00:00.000Z']);
  });

  it('knows whether a time is inside the backup window, in the policy time zone, across midnight', () => {
    const night = { ...policy.schedule, window: { start: '22:00', end: '06:00' } };
    expect(inBackupWindow(night, new Date('2026-03-01T22:30:00Z'))).toBe(true);   // 23:30 Paris
    expect(inBackupWindow(night, new Date('2026-03-01T04:30:00Z'))).toBe(true);   // 05:30 Paris
    expect(inBackupWindow(night, new Date('2026-03-01T05:30:00Z'))).toBe(false);  // 06:30 Paris
    expect(inBackupWindow(night, new Date('2026-03-01T12:00:00Z'))).toBe(false);
    expect(inBackupWindow({ ...policy.schedule, window: { start: '09:00', end: '17:00' } }, new Date('2026-03-01T12:00:00Z'))).toBe(true);
    expect(inBackupWindow(policy.schedule, new Date())).toBe(true);
  });

  it('selects VMs by name, tags and hypervisor', () => {
    expect(selects(policy, { name: 'web', tags: [], hypervisor: 'h1' })).toBe(true);
    expect(selects(policy, { name: 'db', tags: [], hypervisor: 'h1' })).toBe(false);
    expect(selects({ ...policy, selector: { tags: ['prod'] } }, { name: 'db', tags: ['prod', 'eu'], hypervisor: 'h1' })).toBe(true);
  });
});

describe('GFS retention', () => {
  it('keeps the last N and the newest point of each day, ISO week (Jan 5-11 -> Jan 11) and month; expires the rest with a reason', () => {
    const points = Array.from({ length: 30 }, (_, i) => ({ id: `rp${i}`, time: new Date(Date.UTC(2026, 0, 1 + Math.floor(i / 2), i % 2 ? 13 : 1)).toISOString() }));
    const d = applyRetention(points, { last: 2, daily: 3, weekly: 2, monthly: 1, yearly: 0 }, 'UTC');
    expect([...d.keep.keys()].sort()).toEqual(['rp21', 'rp25', 'rp27', 'rp28', 'rp29'].sort());
    expect(d.expire.size).toBe(25);
    expect(d.keep.get('rp29')).toEqual(expect.arrayContaining(['last', 'daily 2026-1-15']));
  });
});

describe('a policy\'s testRestore schedule', () => {
  const tested: Policy = { ...policy, testRestore: { cron: '0 4 * * 0', serialPattern: 'login:' } };

  it('has slots in the policy\'s time zone, none without a testRestore', () => {
    // Sundays 04:00 Paris (UTC+1 in March before the change) in the first half of March 2026.
    expect(dueTestRestoreSlots(tested, new Date('2026-03-01T00:00:00Z'), new Date('2026-03-15T12:00:00Z')).map((d) => d.toISOString()))
      .toEqual(['2026-03-01T03:00:00.000Z', '2026-03-08T03:00:00.000Z', '2026-03-15T03:00:00.000Z']);
    expect(dueTestRestoreSlots(policy, new Date('2026-03-01T00:00:00Z'), new Date('2026-03-15T12:00:00Z'))).toEqual([]);
  });

  it('refuses a bad cron, or one closer than the site\'s shortest gap, naming testRestore.cron', () => {
    expect(policyProblems(tested, ['default'])).toEqual([]);
    expect(policyProblems({ ...tested, testRestore: { cron: 'nope', serialPattern: 'x' } }, ['default']).join('\n')).toMatch(/testRestore\.cron "nope" has 1 fields/);
    expect(policyProblems({ ...tested, testRestore: { cron: '* * * * *', serialPattern: 'x' } }, ['default']))
      .toEqual(['testRestore.cron "* * * * *" runs every 1 min: test restores must be at least 5 min apart on this site']);
  });
});
