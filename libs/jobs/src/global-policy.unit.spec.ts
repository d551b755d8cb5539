// Global policies at a site: which statements from the hub a site accepts (a person it trusts
// signed it, for this site, from its hub) and how the policy decider applies them as
// hub-managed policies that refuse local changes.
import { describe, expect, it } from 'vitest';
import {
  endorse, globalPolicyStatementText, newEvent, newStatementSigner,
  type EventDataMap, type EventType, type GlobalPolicyStatement, type KnownEvent, type Policy, type StatementSigner,
} from '@cairn/contracts';
import { checkGlobalPolicyStatement, type GlobalPolicySite } from './global-policy.ts';
import { decidePolicy, evolvePolicy, PolicyInvalidError, type PolicyState } from './policy.decider.ts';
import type { PositionedEvent, TrustRoot } from './operator-trust.ts';

let position = 0n;
function ev<K extends EventType>(type: K, data: EventDataMap[K], writer = 'gateway'): PositionedEvent {
  const e = newEvent(type, data, { site: 'a', actor: { kind: 'user', id: 'x' }, streamId: 'x' }) as KnownEvent;
  return { event: { ...e, provenance: { writer, publicKey: 'N', signature: 'x' } } as KnownEvent, position: ++position };
}

const root = newStatementSigner();
const olga = newStatementSigner();
const aud = newStatementSigner();
const rootOp: TrustRoot = { userId: 'op', publicKey: root.publicKey };
const streams: Record<string, PositionedEvent[]> = {
  op: [ev('UserCreated', { userId: 'op', roles: ['administrator'] }, 'admin'), ev('UserKeyAdded', { userId: 'op', publicKey: root.publicKey }, 'admin')],
  // An operator whose key the root endorsed; an auditor likewise (no policy permission).
  olga: [ev('UserCreated', { userId: 'olga', roles: ['operator'] }), ev('UserKeyAdded', { userId: 'olga', publicKey: olga.publicKey, endorsement: endorse('op', 'olga', { kind: 'key', publicKey: olga.publicKey }, root) })],
  aud: [ev('UserCreated', { userId: 'aud', roles: ['auditor'] }), ev('UserKeyAdded', { userId: 'aud', publicKey: aud.publicKey, endorsement: endorse('op', 'aud', { kind: 'key', publicKey: aud.publicKey }, root) })],
};
const siteA: GlobalPolicySite = { site: 'a', tags: ['eu'], hubId: 'hub1', users: (id) => streams[id], root: rootOp };

const policy: Policy = {
  policyId: 'g1', name: 'global-nightly', selector: { names: ['web'] },
  schedule: { cron: '0 2 * * *', timezone: 'UTC' }, retention: { last: 2, daily: 7, weekly: 0, monthly: 0, yearly: 0 },
  repository: 'default', keyRef: 'default', priority: 10,
};
const unsigned = (over: Partial<GlobalPolicyStatement> = {}): Omit<GlobalPolicyStatement, 'signatures'> => ({
  policyId: 'g1', version: 1, hubId: 'hub1', selector: { all: true }, policy, issuedAt: '2026-12-06T06:00:00.000Z', ...over,
});
const sign = (u: Omit<GlobalPolicyStatement, 'signatures'>, ...by: Array<[string, StatementSigner]>): GlobalPolicyStatement => ({
  ...u, signatures: by.map(([userId, s]) => ({ userId, publicKey: s.publicKey, signature: Buffer.from(s.sign(new TextEncoder().encode(globalPolicyStatementText(u)))).toString('base64url') })),
});

describe('a global policy statement at a site', () => {
  it('is accepted when signed by a key the site trusts of a user allowed to change policies', () => {
    expect(checkGlobalPolicyStatement(sign(unsigned(), ['olga', olga]), siteA)).toEqual({ ok: true, selected: true, signedBy: { userId: 'olga', publicKey: olga.publicKey } });
    // Several signatures (a person's key is per site): one the site trusts is enough.
    const stranger = newStatementSigner();
    expect(checkGlobalPolicyStatement(sign(unsigned(), ['bob', stranger], ['op', root]), siteA)).toMatchObject({ ok: true, signedBy: { userId: 'op' } });
  });

  it('refuses one the hub could make: unsigned, signed by a hub identity\'s key, or by a key the user never had', () => {
    const hubIdentity = newStatementSigner();
    expect(checkGlobalPolicyStatement(sign(unsigned()), siteA)).toMatchObject({ ok: false, needed: 'person-signature', reason: expect.stringMatching(/signed by nobody/) });
    expect(checkGlobalPolicyStatement(sign(unsigned(), ['olga', hubIdentity]), siteA)).toMatchObject({ ok: false, needed: 'person-signature', reason: expect.stringMatching(/not a current endorsed key/) });
    expect(checkGlobalPolicyStatement(sign(unsigned(), ['gateway', hubIdentity]), siteA)).toMatchObject({ ok: false, reason: expect.stringMatching(/no such user at site a/) });
  });

  it('refuses a statement changed after it was signed (another version, site list or policy)', () => {
    const signed = sign(unsigned(), ['olga', olga]);
    for (const changed of [{ ...signed, version: 2 }, { ...signed, selector: { sites: ['a'] } }, { ...signed, policy: { ...policy, retention: { ...policy.retention, daily: 1 } } }]) {
      expect(checkGlobalPolicyStatement(changed, siteA)).toMatchObject({ ok: false, reason: expect.stringMatching(/does not verify/) });
    }
  });

  it('refuses a signer without the policy permission, another hub\'s statement, a site with no hub', () => {
    expect(checkGlobalPolicyStatement(sign(unsigned(), ['aud', aud]), siteA)).toMatchObject({ ok: false, needed: 'policy', reason: expect.stringMatching(/auditor .* do not grant permission policy/) });
    expect(checkGlobalPolicyStatement(sign(unsigned({ hubId: 'other' }), ['olga', olga]), siteA)).toMatchObject({ ok: false, needed: 'hub' });
    expect(checkGlobalPolicyStatement(sign(unsigned(), ['olga', olga]), { ...siteA, hubId: undefined })).toMatchObject({ ok: false, needed: 'hub' });
    expect(checkGlobalPolicyStatement(sign(unsigned({ policy: { ...policy, policyId: 'other' } }), ['olga', olga]), siteA)).toMatchObject({ ok: false, needed: 'statement' });
  });

  it('accepts a signed statement that does not (or no longer) select the site as not selected: for this site a withdrawal', () => {
    expect(checkGlobalPolicyStatement(sign(unsigned({ selector: { sites: ['b'] } }), ['olga', olga]), siteA)).toMatchObject({ ok: true, selected: false });
    expect(checkGlobalPolicyStatement(sign(unsigned({ selector: { tags: ['eu', 'prod'] } }), ['olga', olga]), siteA)).toMatchObject({ ok: true, selected: false });
    expect(checkGlobalPolicyStatement(sign(unsigned({ selector: { tags: ['eu'] } }), ['olga', olga]), siteA)).toMatchObject({ ok: true, selected: true });
    expect(checkGlobalPolicyStatement(sign(unsigned({ selector: { sites: ['a', 'b'] } }), ['olga', olga]), siteA)).toMatchObject({ ok: true, selected: true });
    // Not selected is no shortcut past the signature: the hub cannot take a policy away from a site with a statement of its own.
    expect(checkGlobalPolicyStatement(sign(unsigned({ selector: { sites: ['b'] } })), siteA)).toMatchObject({ ok: false, needed: 'person-signature' });
    expect(checkGlobalPolicyStatement(sign(unsigned({ selector: { sites: ['b'] } }), ['olga', newStatementSigner()]), siteA)).toMatchObject({ ok: false, needed: 'person-signature' });
  });
});

describe('the policy decider and hub-managed policies', () => {
  const local = { ...policy, policyId: 'g1-at-a' };
  const none: PolicyState = { policy: null, deleted: false };
  const apply = (version: number, p: Policy = local) => ({ kind: 'apply-global' as const, policy: p, globalPolicyId: 'g1', version, knownRepositories: ['default'] });
  const fold = (events: ReturnType<typeof decidePolicy>, s: PolicyState = none) => events.reduce((st, d) => evolvePolicy(st, d as KnownEvent), s);

  it('applies version 1 as a managed policy, version 2 as an update, and ignores the same or an older version', () => {
    const v1 = decidePolicy(apply(1), none);
    expect(v1).toEqual([{ type: 'PolicyCreated', data: { ...local, managedBy: 'hub', globalVersion: 1, globalPolicyId: 'g1' } }]);
    const s1 = fold(v1);
    expect(decidePolicy(apply(1), s1)).toEqual([]);
    const v2 = decidePolicy(apply(2, { ...local, schedule: { cron: '0 3 * * *', timezone: 'UTC' } }), s1);
    expect(v2).toEqual([{ type: 'PolicyUpdated', data: expect.objectContaining({ globalVersion: 2, schedule: { cron: '0 3 * * *', timezone: 'UTC' } }) }]);
    expect(decidePolicy(apply(1), fold(v2, s1))).toEqual([]);
  });

  it('refuses a local edit, pause, resume or delete of a managed policy, saying it is the hub\'s', () => {
    const s1 = fold(decidePolicy(apply(3), none));
    for (const cmd of [
      { kind: 'update' as const, policy: local, knownRepositories: ['default'] },
      { kind: 'delete' as const, policyId: local.policyId },
      { kind: 'pause' as const, policyId: local.policyId },
      { kind: 'resume' as const, policyId: local.policyId },
    ]) {
      expect(() => decidePolicy(cmd, s1), cmd.kind).toThrow(PolicyInvalidError);
      expect(() => decidePolicy(cmd, s1)).toThrow(/managed by the hub \(global policy, version 3\).*change it at the hub/);
    }
  });

  it('a withdrawal deletes the copy with the version that withdrew it; an older statement replayed after it changes nothing', () => {
    const s2 = fold(decidePolicy(apply(2), none));
    const withdraw = { ...apply(3), withdrawn: true };
    const gone = decidePolicy(withdraw, s2);
    expect(gone).toEqual([{ type: 'PolicyDeleted', data: { policyId: local.policyId, globalVersion: 3 } }]);
    const s3 = fold(gone, s2);
    expect(s3).toMatchObject({ deleted: true, policy: { globalVersion: 3 } });
    expect(decidePolicy(apply(2), s3)).toEqual([]);
    expect(decidePolicy(withdraw, s3)).toEqual([]);
    // A site that never had it: nothing to delete.
    expect(decidePolicy(withdraw, none)).toEqual([]);
  });

  it('a version that no longer selects the site deletes its copy like a withdrawal; a later version selecting it again recreates it', () => {
    const s1 = fold(decidePolicy(apply(1), none));
    // The scheduler turns "not selected" into withdrawn for this site (applyGlobalPolicy).
    const narrowed = { ...apply(2), withdrawn: true };
    const gone = decidePolicy(narrowed, s1);
    expect(gone).toEqual([{ type: 'PolicyDeleted', data: { policyId: local.policyId, globalVersion: 2 } }]);
    const s2 = fold(gone, s1);
    expect(decidePolicy(apply(1), s2)).toEqual([]);
    expect(decidePolicy({ ...apply(3), withdrawn: true }, s2)).toEqual([]);
    const back = decidePolicy(apply(3), s2);
    expect(back).toEqual([{ type: 'PolicyCreated', data: expect.objectContaining({ globalVersion: 3, managedBy: 'hub' }) }]);
    expect(fold(back, s2)).toMatchObject({ deleted: false, policy: { globalVersion: 3 } });
  });

  it('never turns a local policy into a managed one, and refuses an invalid global policy with the problems', () => {
    const localState = fold(decidePolicy({ kind: 'create', policy: local, knownRepositories: ['default'] }, none));
    expect(() => decidePolicy(apply(1), localState)).toThrow(/is a local policy of this site/);
    expect(() => decidePolicy(apply(1, { ...local, repository: 'offsite' }), none)).toThrow(/repository "offsite" does not exist/);
  });
});
