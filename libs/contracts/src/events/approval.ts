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

type Retention = Static<typeof PolicyRetention>;

/**
 * How long an immutable policy locks a restore point committed at `committedAt`: until the latest
 * time its GFS retention can still keep it. A point kept as the newest of its day, ISO week,
 * month or year stays kept until a backup lands in the bucket `n` buckets later, which starts at
 * most `n` days, weeks, months or years after the point; so the lock ends at `committedAt` plus the
 * longest of `daily` days, `weekly` weeks, `monthly` months and `yearly` years (UTC calendar).
 * `last` keeps by count, not by time, and adds nothing. Undefined when no calendar rule keeps
 * anything (an immutable policy needs one: the policy decider refuses it otherwise).
 */
export function immutabilityLockUntil(retention: Retention, committedAt: Date): Date | undefined {
  const t = committedAt.getTime();
  const candidates: number[] = [];
  const add = (f: (d: Date) => void) => { const d = new Date(t); f(d); candidates.push(d.getTime()); };
  if (retention.daily > 0) add((d) => d.setUTCDate(d.getUTCDate() + retention.daily));
  if (retention.weekly > 0) add((d) => d.setUTCDate(d.getUTCDate() + 7 * retention.weekly));
  if (retention.monthly > 0) add((d) => d.setUTCMonth(d.getUTCMonth() + retention.monthly));
  if (retention.yearly > 0) add((d) => d.setUTCFullYear(d.getUTCFullYear() + retention.yearly));
  return candidates.length ? new Date(Math.max(...candidates)) : undefined;
}

/** True when `next` locks less than `current`: immutability turned off, or a shorter lock period. */
export function immutabilityWeakened(
  current: { immutable?: boolean; retention: Retention },
  next: { immutable?: boolean; retention: Retention },
  at = new Date(),
): boolean {
  if (!current.immutable) return false;
  if (!next.immutable) return true;
  const before = immutabilityLockUntil(current.retention, at)?.getTime() ?? 0;
  const after = immutabilityLockUntil(next.retention, at)?.getTime() ?? 0;
  return after < before;
}

/**
 * The four-eyes approval a policy change needs, if any: `disable-immutability` when it locks
 * new restore points less (that approval also covers a shorter retention: it carries the whole
 * new policy), else `shorten-retention` when it keeps fewer restore points of any kind.
 */
export function policyChangeApproval(
  current: { immutable?: boolean; retention: Retention },
  next: { immutable?: boolean; retention: Retention },
  at = new Date(),
): 'disable-immutability' | 'shorten-retention' | undefined {
  if (immutabilityWeakened(current, next, at)) return 'disable-immutability';
  if (retentionShortened(current.retention, next.retention)) return 'shorten-retention';
  return undefined;
}
