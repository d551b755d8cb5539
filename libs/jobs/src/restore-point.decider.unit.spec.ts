import { describe, it } from 'vitest';
import { newEvent } from '@cairn/contracts';
import { restorePointDecider } from './restore-point.decider.ts';
import { deciderSpec } from './testing/index.ts';

const meta = { site: 'a', actor: { kind: 'service' as const, id: 'test' }, streamId: 'restorepoint-rp1' };
const now = new Date('2026-03-01T00:00:00Z');
const data = { restorePointId: 'rp1', vmId: 'vm1', policyId: 'p1', reason: 'beyond last 2' };
const locked = (until: string) => newEvent('RestorePointLocked', { restorePointId: 'rp1', retainUntil: until, objectsLocked: 3 }, meta);

describe('restore point decider: retention expiry (given/when/then)', () => {
  const spec = deciderSpec(restorePointDecider);

  it('expires a restore point retention lets go, once', () => {
    spec.given([]).when({ kind: 'expire', data, now }).then([{ type: 'RestorePointExpired', data }]);
    spec.given([newEvent('RestorePointExpired', data, meta)]).when({ kind: 'expire', data, now }).thenNothing();
  });

  it('keeps a locked one until its lock ends (the longest lock counts), then expires it', () => {
    spec.given([locked('2026-04-01T00:00:00Z'), locked('2026-02-01T00:00:00Z')]).when({ kind: 'expire', data, now }).thenNothing();
    spec.given([locked('2026-02-01T00:00:00Z')]).when({ kind: 'expire', data, now }).then([{ type: 'RestorePointExpired', data }]);
  });

  it('records a lock that holds longer than the longest recorded, and nothing for a shorter or equal one', () => {
    const lock = (until: string) => ({ restorePointId: 'rp1', retainUntil: until, objectsLocked: 3 });
    spec.given([]).when({ kind: 'recordLock', data: lock('2026-04-01T00:00:00.000Z') }).then([{ type: 'RestorePointLocked', data: lock('2026-04-01T00:00:00.000Z') }]);
    spec.given([locked('2026-04-01T00:00:00Z')]).when({ kind: 'recordLock', data: lock('2026-05-01T00:00:00.000Z') }).then([{ type: 'RestorePointLocked', data: lock('2026-05-01T00:00:00.000Z') }]);
    spec.given([locked('2026-04-01T00:00:00Z')]).when({ kind: 'recordLock', data: lock('2026-04-01T00:00:00.000Z') }).thenNothing();
    spec.given([locked('2026-04-01T00:00:00Z')]).when({ kind: 'recordLock', data: lock('2026-03-15T00:00:00.000Z') }).thenNothing();
  });

  it('does not expire one deleted after an approval', () => {
    const deleted = newEvent('RestorePointDeleted', { restorePointId: 'rp1', approvalId: 'a1', requestedBy: 'alice', approvedBy: 'bob' }, meta);
    spec.given([deleted]).when({ kind: 'expire', data, now }).thenNothing();
  });
});

describe('restore point decider: damage a verify found', () => {
  const spec = deciderSpec(restorePointDecider);
  const damage = (verifyId: string) => ({ restorePointId: 'rp1', vmId: 'vm1', verifyId, damaged: [{ kind: 'chunk' as const, id: 'c1', damage: 'authentication' }], damagedCount: 1 });

  it('records it once per verify; a later verify records it again; not on a point gone', () => {
    spec.given([]).when({ kind: 'damaged', data: damage('v1') }).then([{ type: 'RestorePointDamaged', data: damage('v1') }]);
    spec.given([newEvent('RestorePointDamaged', damage('v1'), meta)]).when({ kind: 'damaged', data: damage('v1') }).thenNothing();
    spec.given([newEvent('RestorePointDamaged', damage('v1'), meta)]).when({ kind: 'damaged', data: damage('v2') }).then([{ type: 'RestorePointDamaged', data: damage('v2') }]);
    spec.given([newEvent('RestorePointExpired', data, meta)]).when({ kind: 'damaged', data: damage('v1') }).thenNothing();
  });

  it('records a four-eyes deletion once, also after retention expired the point', () => {
    const deleted = { restorePointId: 'rp1', approvalId: 'ap1', requestedBy: 'alice', approvedBy: 'bob' };
    spec.given([]).when({ kind: 'delete', data: deleted }).then([{ type: 'RestorePointDeleted', data: deleted }]);
    spec.given([newEvent('RestorePointExpired', data, meta)]).when({ kind: 'delete', data: deleted }).then([{ type: 'RestorePointDeleted', data: deleted }]);
    spec.given([newEvent('RestorePointDeleted', deleted, meta)]).when({ kind: 'delete', data: { ...deleted, approvalId: 'ap2' } }).thenNothing();
  });
});
