// RPO watch as a pure decider on a clock the test controls: RPO 1 h, backups stopped →
// RpoMissed once; a restore point younger than the RPO → RpoRestored once; the default RPO.
import { describe, expect, it } from 'vitest';
import { newEvent, type KnownEvent, type Policy } from '@cairn/contracts';
import { deciderSpec } from './testing/index.ts';
import { policyRpoMinutes, rpoDecider, type RpoCheck } from './rpo.decider.ts';

const T0 = Date.parse('2026-03-01T10:00:00.000Z');
const at = (minutes: number) => new Date(T0 + minutes * 60_000);
const meta = { site: 's', streamId: 'rpo-vm-1', actor: { kind: 'service' as const, id: 'scheduler@s' } };
const check = (minutes: number, newest: RpoCheck['newest'] = { restorePointId: 'rp-1', at: at(0).toISOString() }): RpoCheck => ({
  kind: 'check', vmId: 'vm-1', policyId: 'p-1', rpoMinutes: 60, newest, coveredSince: at(-600).toISOString(), now: at(minutes),
});
const missed = newEvent('RpoMissed', { vmId: 'vm-1', policyId: 'p-1', rpoMinutes: 60, lastRestorePointAt: at(0).toISOString(), missedSince: at(60).toISOString() }, meta) as KnownEvent;

describe('RPO watch', () => {
  const spec = deciderSpec(rpoDecider);
  it('a VM whose policy says RPO 1 h raises RpoMissed once when backups stop', () => {
    spec.given([]).when(check(59)).thenNothing();
    spec.given([]).when(check(61)).then([{ type: 'RpoMissed', data: { vmId: 'vm-1', policyId: 'p-1', rpoMinutes: 60, lastRestorePointAt: at(0).toISOString(), missedSince: at(60).toISOString() } }]);
    // Checked again and again afterwards (every tick, a day later): nothing more.
    spec.given([missed]).when(check(62)).thenNothing();
    spec.given([missed]).when(check(24 * 60)).thenNothing();
  });
  it('RpoRestored once a restore point younger than the RPO exists; then a miss may come again', () => {
    const fresh = { restorePointId: 'rp-2', at: at(70).toISOString() };
    spec.given([missed]).when(check(75, fresh)).then([{ type: 'RpoRestored', data: { vmId: 'vm-1', policyId: 'p-1', restorePointId: 'rp-2', restorePointAt: at(70).toISOString() } }]);
    const restored = newEvent('RpoRestored', { vmId: 'vm-1', policyId: 'p-1', restorePointId: 'rp-2', restorePointAt: at(70).toISOString() }, meta) as KnownEvent;
    spec.given([missed, restored]).when(check(80, fresh)).thenNothing();
    spec.given([missed, restored]).when(check(131, fresh)).then([{ type: 'RpoMissed', data: { vmId: 'vm-1', policyId: 'p-1', rpoMinutes: 60, lastRestorePointAt: at(70).toISOString(), missedSince: at(130).toISOString() } }]);
  });
  it('a VM never backed up counts from when the policy began to cover it', () => {
    spec.given([]).when({ ...check(0, null), coveredSince: at(-59).toISOString() }).thenNothing();
    const out = rpoDecider.decide({ ...check(0, null), coveredSince: at(-61).toISOString() }, rpoDecider.initialState());
    expect(out).toEqual([{ type: 'RpoMissed', data: expect.objectContaining({ lastRestorePointAt: null, missedSince: at(-1).toISOString() }) }]);
  });
  it('the default RPO is the longest gap of the schedule plus 2 h: 26 h for a daily one', () => {
    const policy = (cron: string, rpoMinutes?: number): Policy => ({
      policyId: 'p', name: 'p', selector: { names: ['x'] }, schedule: { cron, timezone: 'UTC' },
      retention: { daily: 7, weekly: 0, monthly: 0, yearly: 0, last: 0 }, repository: 'default', keyRef: 'k', priority: 0, ...(rpoMinutes ? { rpoMinutes } : {}),
    });
    expect(policyRpoMinutes(policy('0 2 * * *'), at(0))).toBe(26 * 60);
    expect(policyRpoMinutes(policy('0 2 * * 1-5'), at(0))).toBe(3 * 24 * 60 + 120); // Friday to Monday
    expect(policyRpoMinutes(policy('0 2 * * *', 60), at(0))).toBe(60);
  });
});
