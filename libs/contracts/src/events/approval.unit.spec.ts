import { describe, expect, it } from 'vitest';
import { newEvent } from './new-event.ts';
import { immutabilityLockUntil, policyChangeApproval, retentionShortened, verifyApproval } from './approval.ts';
import type { KnownEvent } from './event-types.ts';

const site = 'site-a';
const ann = { kind: 'user' as const, id: 'ann' };
const bob = { kind: 'user' as const, id: 'bob' };
const streamId = 'approval-a1';
const action = { kind: 'delete-restore-point' as const, restorePointId: 'rp1' };
const requested = newEvent('ApprovalRequested', { approvalId: 'a1', action, requestedBy: 'ann' }, { site, actor: ann, streamId }) as KnownEvent;
const grantedBy = (who: typeof ann) => newEvent('ApprovalGranted', { approvalId: 'a1', approvedBy: who.id }, { site, actor: who, streamId }) as KnownEvent;
const forRp1 = (a: { kind: string; restorePointId?: string }) => a.kind === 'delete-restore-point' && a.restorePointId === 'rp1';

describe('verifyApproval', () => {
  it('accepts a request granted by someone else, for this act, not used', () => {
    expect(verifyApproval('a1', [requested, grantedBy(bob)], forRp1)).toEqual({ ok: true, requestedBy: 'ann', approvedBy: 'bob', action });
  });

  it('refuses no request, another act, no grant, a self-grant, and a used or rejected one', () => {
    expect(verifyApproval('a1', [], forRp1)).toMatchObject({ ok: false, code: 'approval_required' });
    expect(verifyApproval('a1', [requested, grantedBy(bob)], (a) => a.kind === 'delete-restore-point' && a.restorePointId === 'rp2')).toMatchObject({ ok: false, code: 'approval_required' });
    expect(verifyApproval('a1', [requested], forRp1)).toMatchObject({ ok: false, message: expect.stringMatching(/not granted/) as unknown });
    expect(verifyApproval('a1', [requested, grantedBy(ann)], forRp1)).toMatchObject({ ok: false, message: expect.stringMatching(/own requester/) as unknown });
    const used = newEvent('ApprovalExecuted', { approvalId: 'a1', outcome: 'done' }, { site, actor: bob, streamId }) as KnownEvent;
    expect(verifyApproval('a1', [requested, grantedBy(bob), used], forRp1)).toMatchObject({ ok: false, code: 'conflict' });
    const rejected = newEvent('ApprovalRejected', { approvalId: 'a1', rejectedBy: 'bob' }, { site, actor: bob, streamId }) as KnownEvent;
    expect(verifyApproval('a1', [requested, rejected, grantedBy(bob)], forRp1)).toMatchObject({ ok: false, code: 'conflict' });
    expect(verifyApproval('a2', [requested, grantedBy(bob)], forRp1)).toMatchObject({ ok: false, code: 'approval_required' });
  });
});

describe('retentionShortened', () => {
  const r = { daily: 7, weekly: 4, monthly: 6, yearly: 0, last: 3 };
  it('is true when any kind keeps fewer, false when all keep as many or more', () => {
    expect(retentionShortened(r, { ...r, daily: 6 })).toBe(true);
    expect(retentionShortened(r, { ...r, last: 2, daily: 30 })).toBe(true);
    expect(retentionShortened(r, { ...r, yearly: 5 })).toBe(false);
    expect(retentionShortened(r, r)).toBe(false);
  });
});

describe('immutability of a policy', () => {
  const r = (daily: number, weekly: number, monthly: number, yearly: number, last = 0) => ({ daily, weekly, monthly, yearly, last });
  const at = new Date('2026-01-31T02:00:00.000Z');

  it('locks until the longest calendar span its retention can keep a restore point', () => {
    expect(immutabilityLockUntil(r(7, 0, 0, 0), at)?.toISOString()).toBe('2026-02-07T02:00:00.000Z');
    expect(immutabilityLockUntil(r(7, 4, 0, 0), at)?.toISOString()).toBe('2026-02-28T02:00:00.000Z');
    expect(immutabilityLockUntil(r(7, 4, 1, 0), at)?.toISOString()).toBe('2026-03-03T02:00:00.000Z'); // 31 Jan + 1 month (UTC calendar)
    expect(immutabilityLockUntil(r(0, 0, 0, 2, 5), at)?.toISOString()).toBe('2028-01-31T02:00:00.000Z');
    expect(immutabilityLockUntil(r(0, 0, 0, 0, 5), at)).toBeUndefined();
  });

  it('turning it off or shortening the lock needs disable-immutability; keeping fewer alone, shorten-retention', () => {
    const on = { immutable: true, retention: r(7, 4, 0, 0, 3) };
    expect(policyChangeApproval(on, { ...on, immutable: false })).toBe('disable-immutability');
    expect(policyChangeApproval(on, { ...on, retention: r(7, 2, 0, 0, 3) })).toBe('disable-immutability');
    expect(policyChangeApproval(on, { ...on, retention: r(7, 4, 0, 0, 1) })).toBe('shorten-retention'); // same lock, fewer kept
    expect(policyChangeApproval(on, { ...on, retention: r(7, 4, 6, 0, 3) })).toBeUndefined();
    expect(policyChangeApproval({ retention: on.retention }, on)).toBeUndefined(); // turning it on
    expect(policyChangeApproval({ retention: on.retention }, { retention: r(1, 4, 0, 0, 3) })).toBe('shorten-retention');
  });
});
