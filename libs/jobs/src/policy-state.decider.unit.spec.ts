// Pausing, resuming and deleting a policy (PausePolicy, ResumePolicy, DeletePolicy), given/when/then.
import { describe, it } from 'vitest';
import { newEvent, type Policy } from '@cairn/contracts';
import { policyDecider, PolicyInvalidError } from './policy.decider.ts';
import { deciderSpec } from './testing/index.ts';

const policy: Policy = {
  policyId: 'p1', name: 'nightly', selector: { names: ['web'] },
  schedule: { cron: '0 2 * * *', timezone: 'Europe/Paris' },
  retention: { last: 2, daily: 7, weekly: 4, monthly: 0, yearly: 0 },
  repository: 'default', keyRef: 'default', priority: 10,
};
const meta = { site: 'a', actor: { kind: 'service' as const, id: 'scheduler' }, streamId: 'policy-p1' };
const created = newEvent('PolicyCreated', policy, meta);
const paused = newEvent('PolicyPaused', { policyId: 'p1' }, meta);
const resumed = newEvent('PolicyResumed', { policyId: 'p1' }, meta);
const deleted = newEvent('PolicyDeleted', { policyId: 'p1' }, meta);
const updated = newEvent('PolicyUpdated', { ...policy, priority: 20 }, meta);
const spec = deciderSpec(policyDecider);

describe('policy pause, resume and delete', () => {
  it('pauses a running policy', () => {
    spec.given([created]).when({ kind: 'pause', policyId: 'p1' }).then([{ type: 'PolicyPaused', data: { policyId: 'p1' } }]);
  });
  it('pausing a paused policy does nothing (asking twice is safe); an update keeps it paused', () => {
    spec.given([created, paused]).when({ kind: 'pause', policyId: 'p1' }).thenNothing();
    spec.given([created, paused, updated]).when({ kind: 'pause', policyId: 'p1' }).thenNothing();
  });
  it('resumes a paused policy; resuming a running one does nothing', () => {
    spec.given([created, paused]).when({ kind: 'resume', policyId: 'p1' }).then([{ type: 'PolicyResumed', data: { policyId: 'p1' } }]);
    spec.given([created]).when({ kind: 'resume', policyId: 'p1' }).thenNothing();
    spec.given([created, paused, resumed]).when({ kind: 'resume', policyId: 'p1' }).thenNothing();
  });
  it('refuses to pause or resume a policy that does not exist or was deleted', () => {
    const notFound = (e: unknown) => e instanceof PolicyInvalidError && e.code === 'not_found';
    spec.given([]).when({ kind: 'pause', policyId: 'p1' }).thenRefuses(notFound);
    spec.given([created, deleted]).when({ kind: 'pause', policyId: 'p1' }).thenRefuses(notFound);
    spec.given([created, paused, deleted]).when({ kind: 'resume', policyId: 'p1' }).thenRefuses(notFound);
  });
  it('deletes a policy, paused or not, once', () => {
    spec.given([created]).when({ kind: 'delete', policyId: 'p1' }).then([{ type: 'PolicyDeleted', data: { policyId: 'p1' } }]);
    spec.given([created, paused]).when({ kind: 'delete', policyId: 'p1' }).then([{ type: 'PolicyDeleted', data: { policyId: 'p1' } }]);
    spec.given([created, deleted]).when({ kind: 'delete', policyId: 'p1' }).thenNothing();
  });
  it('a policy created again after a delete starts running, not paused', () => {
    spec.given([created, paused, deleted, created]).when({ kind: 'pause', policyId: 'p1' }).then([{ type: 'PolicyPaused', data: { policyId: 'p1' } }]);
  });
});
