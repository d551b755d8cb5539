import { describe, it } from 'vitest';
import { Refusal, newEvent, type ReplicationPolicy } from '@cairn/contracts';
import { replicationPolicyDecider } from './replication-policy.decider.ts';
import { deciderSpec } from './testing/index.ts';

const meta = { site: 'a', actor: { kind: 'service' as const, id: 'test' }, streamId: 'replpolicy-p1' };
const policy: ReplicationPolicy = { policyId: 'p1', name: 'to-b', sourceSite: 'a', targetSites: ['b'], trigger: { kind: 'after-backup' }, delayMs: 0 };
const created = newEvent('ReplicationPolicyCreated', policy, meta);
const deleted = newEvent('ReplicationPolicyDeleted', { policyId: 'p1' }, meta);
const refused = (code: string) => (e: unknown) => e instanceof Refusal && e.code === code;

describe('replication policy decider (given/when/then)', () => {
  const spec = deciderSpec(replicationPolicyDecider);

  it('creates a policy once; its id again is a conflict, deleted or not', () => {
    spec.given([]).when({ kind: 'create', policy }).then([{ type: 'ReplicationPolicyCreated', data: policy }]);
    spec.given([created]).when({ kind: 'create', policy }).thenRefuses(refused('conflict'));
    spec.given([created, deleted]).when({ kind: 'create', policy }).thenRefuses(refused('conflict'));
  });

  it('deletes a policy once; an unknown or deleted one is not found', () => {
    spec.given([created]).when({ kind: 'delete', policyId: 'p1' }).then([{ type: 'ReplicationPolicyDeleted', data: { policyId: 'p1' } }]);
    spec.given([created, deleted]).when({ kind: 'delete', policyId: 'p1' }).thenRefuses(refused('not_found'));
    spec.given([]).when({ kind: 'delete', policyId: 'p1' }).thenRefuses(refused('not_found'));
  });
});
