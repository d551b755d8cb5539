// Four-eyes approvals as the services that carry out destructive acts check them: from the
// events of the approval's stream (`approval-<id>`), whether it was asked for this act, granted
// by someone other than the requester, and neither rejected nor used before.
import type { ApprovalAction } from './security.events.ts';
import type { KnownEvent } from './event-types.ts';
import type { PolicyRetention } from './policy.events.ts';
import type { Static } from '@sinclair/typebox';

export type ApprovalVerdict =
  | { readonly ok: true; readonly requestedBy: string; readonly approvedBy: string; readonly action: ApprovalAction }
  | { readonly ok: false; readonly code: 'approval_required' | 'conflict'; readonly message: string };

export function verifyApproval(approvalId: string, events: readonly KnownEvent[], forThisAct: (action: ApprovalAction) => boolean): ApprovalVerdict {
  const refuse = (message: string, code: 'approval_required' | 'conflict' = 'approval_required') => ({ ok: false as const, code, message });
  const requested = events.find((e) => e.type === 'ApprovalRequested');
  if (requested?.type !== 'ApprovalRequested' || requested.data.approvalId !== approvalId) return refuse(`no approval ${approvalId}: this act needs one granted by a second administrator`);
  if (!forThisAct(requested.data.action)) return refuse(`approval ${approvalId} is for another act (${requested.data.action.kind})`);
  const granted = events.find((e) => e.type === 'ApprovalGranted');
  if (granted?.type !== 'ApprovalGranted') return refuse(`approval ${approvalId} is not granted yet`);
  if (granted.data.approvedBy === requested.data.requestedBy || granted.actor.id === requested.actor.id) {
    return refuse(`approval ${approvalId} was granted by its own requester: four-eyes needs a second administrator`);
  }
  if (events.some((e) => e.type === 'ApprovalRejected' || e.type === 'ApprovalExecuted')) return refuse(`approval ${approvalId} was already used or rejected`, 'conflict');
  return { ok: true, requestedBy: requested.data.requestedBy, approvedBy: granted.data.approvedBy, action: requested.data.action };
}

/** True when `next` keeps fewer restore points of any kind than `current` (a four-eyes act). */
export function retentionShortened(current: Static<typeof PolicyRetention>, next: Static<typeof PolicyRetention>): boolean {
  return (['daily', 'weekly', 'monthly', 'yearly', 'last'] as const).some((k) => next[k] < current[k]);
}
