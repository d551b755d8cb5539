// A replication policy's own stream (`replpolicy-<id>`) as a decider: created once (the id of a
// policy that exists, or existed, is a conflict), deleted once (an unknown or deleted policy is
// not found). Replication appends through it at the revision it read.
import { Refusal, type KnownEvent, type ReplicationPolicy } from '@cairn/contracts';
import type { Decider, Draft } from './decider.ts';

export interface ReplicationPolicyState {
  readonly policy?: ReplicationPolicy;
  readonly deleted: boolean;
}

export type ReplicationPolicyCommand =
  | { readonly kind: 'create'; readonly policy: ReplicationPolicy }
  | { readonly kind: 'delete'; readonly policyId: string };

export const replicationPolicyDecider: Decider<ReplicationPolicyCommand, KnownEvent, ReplicationPolicyState> = {
  initialState: () => ({ deleted: false }),
  evolve(state, event) {
    if (event.type === 'ReplicationPolicyCreated') return { policy: event.data, deleted: false };
    if (event.type === 'ReplicationPolicyDeleted') return { ...state, deleted: true };
    return state;
  },
  decide(command, state): readonly Draft[] {
    if (command.kind === 'create') {
      if (state.policy) throw new Refusal('conflict', `replication policy ${command.policy.policyId} exists`);
      return [{ type: 'ReplicationPolicyCreated', data: command.policy }];
    }
    if (!state.policy || state.deleted) throw new Refusal('not_found', `no replication policy ${command.policyId}`);
    return [{ type: 'ReplicationPolicyDeleted', data: { policyId: command.policyId } }];
  },
};
