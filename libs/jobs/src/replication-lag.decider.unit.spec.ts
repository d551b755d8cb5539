// The replication lag decider on a controlled clock: behind once past the allowed lag, caught up
// once back within it; the default allowed lag of each trigger.
import { describe, expect, it } from 'vitest';
import { replicationLagDecider, replicationMaxLagMinutes, type ReplicationLagCheck } from './replication-lag.decider.ts';

const T0 = Date.parse('2027-01-01T00:00:00.000Z');
const check = (minutesLater: number, unreplicated: ReplicationLagCheck['unreplicated']): ReplicationLagCheck => ({
  kind: 'check', policyId: 'p1', sourceSite: 'a', targetSite: 'b', maxLagMinutes: 60, unreplicated, now: new Date(T0 + minutesLater * 60_000),
});
const rp = (id: string, minutes: number) => ({ restorePointId: id, vmId: 'vm-1', committedAt: new Date(T0 + minutes * 60_000).toISOString() });

describe('replication lag decider', () => {
  it('raises ReplicationBehind once past the allowed lag, ReplicationCaughtUp once back', () => {
    const d = replicationLagDecider;
    let s = d.initialState();
    expect(d.decide(check(59, [rp('r1', 0)]), s)).toEqual([]);
    const behind = d.decide(check(61, [rp('r2', 30), rp('r1', 0)]), s);
    expect(behind).toEqual([{ type: 'ReplicationBehind', data: {
      policyId: 'p1', sourceSite: 'a', targetSite: 'b', maxLagMinutes: 60, lagMinutes: 61, unreplicated: 2, oldestUnreplicated: rp('r1', 0), newestUnreplicated: rp('r2', 30),
    } }]);
    s = { behind: true };
    expect(d.decide(check(120, [rp('r1', 0)]), s)).toEqual([]);
    expect(d.decide(check(121, [rp('r3', 100)]), s)).toEqual([{ type: 'ReplicationCaughtUp', data: { policyId: 'p1', sourceSite: 'a', targetSite: 'b', unreplicated: 1 } }]);
    expect(d.decide(check(121, []), { behind: false })).toEqual([]);
  });

  it('default allowed lag: after-backup delay + 60 min, schedule 2 × interval + 60 min, cron 26 h; a stated one wins', () => {
    expect(replicationMaxLagMinutes({ trigger: { kind: 'after-backup' }, delayMs: 30 * 60_000 })).toBe(90);
    expect(replicationMaxLagMinutes({ trigger: { kind: 'schedule', everyMs: 3_600_000 }, delayMs: 0 })).toBe(180);
    expect(replicationMaxLagMinutes({ trigger: { kind: 'cron', cron: '0 2 * * *', timezone: 'UTC' }, delayMs: 0 })).toBe(1560);
    expect(replicationMaxLagMinutes({ trigger: { kind: 'cron', cron: '0 2 * * *', timezone: 'UTC' }, delayMs: 0, maxLagMinutes: 15 })).toBe(15);
  });
});
