// RPO watch: a VM's own stream `rpo-<vmId>` as a decider. Each check carries the policy's RPO,
// the VM's newest restore point (or none) and the time; a VM out of its RPO raises RpoMissed
// once per policy, and RpoRestored once it has a restore point younger than the RPO again.
// Pure: the time comes in with the command.
import type { KnownEvent, Policy } from '@cairn/contracts';
import type { Decider, Draft } from './decider.ts';
import { dueSlots } from './policy.decider.ts';

export interface RpoState {
  /** Policies whose RPO this VM is out of (RpoMissed raised, not yet restored). */
  readonly missed: ReadonlySet<string>;
}

export interface RpoCheck {
  readonly kind: 'check';
  readonly vmId: string;
  readonly policyId: string;
  readonly rpoMinutes: number;
  /** The VM's newest restore point, or null. */
  readonly newest: { readonly restorePointId: string; readonly at: string } | null;
  /** Since when the policy has covered the VM (the RPO of a VM never backed up counts from here). */
  readonly coveredSince: string;
  readonly now: Date;
}

export const rpoStreamId = (vmId: string) => `rpo-${vmId}`;

export const rpoDecider: Decider<RpoCheck, KnownEvent, RpoState> = {
  initialState: () => ({ missed: new Set() }),
  evolve(state, event) {
    if (event.type === 'RpoMissed') return { missed: new Set([...state.missed, event.data.policyId]) };
    if (event.type === 'RpoRestored') return { missed: new Set([...state.missed].filter((p) => p !== event.data.policyId)) };
    return state;
  },
  decide(c, state): readonly Draft[] {
    const base = Date.parse(c.newest?.at ?? c.coveredSince);
    const deadline = base + c.rpoMinutes * 60_000;
    const out = c.now.getTime() > deadline;
    const missed = state.missed.has(c.policyId);
    if (out && !missed) {
      return [{ type: 'RpoMissed', data: { vmId: c.vmId, policyId: c.policyId, rpoMinutes: c.rpoMinutes, lastRestorePointAt: c.newest?.at ?? null, missedSince: new Date(deadline).toISOString() } }];
    }
    if (!out && missed && c.newest) {
      return [{ type: 'RpoRestored', data: { vmId: c.vmId, policyId: c.policyId, restorePointId: c.newest.restorePointId, restorePointAt: c.newest.at } }];
    }
    return [];
  },
};

/** The policy's RPO: its own, else the longest gap between two slots of its schedule plus 2 h. */
export function policyRpoMinutes(policy: Policy, now: Date): number {
  if (policy.rpoMinutes) return policy.rpoMinutes;
  const slots = dueSlots(policy, now, new Date(now.getTime() + 400 * 86_400_000), 60);
  let gap = 24 * 60;
  if (slots.length >= 2) {
    gap = 0;
    for (let i = 1; i < slots.length; i++) gap = Math.max(gap, (slots[i]!.getTime() - slots[i - 1]!.getTime()) / 60_000);
  }
  return Math.ceil(gap) + 120;
}
