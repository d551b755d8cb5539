// Users, tokens and four-eyes approvals as deciders (given/when/then), and which keys and
// administrators readers trust: the root operator, endorsement chains, and what a compromised
// gateway or the `admin` identity can record but not make trusted.
import { describe, expect, it } from 'vitest';
import {
  approvalStatement, endorse, newEvent, newStatementSigner, signStatement,
  type ApprovalAction, type EventDataMap, type EventType, type KnownEvent, type StatementSigner,
} from '@cairn/contracts';
import { deciderSpec } from './testing/decider-spec.ts';
import { ApprovalRefused, approvalDecider, checkSignedApproval, type SignatureCheck } from './approval.decider.ts';
import { tokenDecider, userDecider, UserRefused } from './user.decider.ts';
import { trustedAdministratorKey, trustedUser, type PositionedEvent, type TrustRoot } from './operator-trust.ts';

const signer = (): StatementSigner => newStatementSigner();
const ctx = (endorsementRequired: boolean, otherEnabledAdministrators = 1) => ({ endorsementRequired, otherEnabledAdministrators });
let position = 0n;
function ev<K extends EventType>(type: K, data: EventDataMap[K], writer: string | null = 'gateway'): PositionedEvent {
  const d = data as { requestedBy?: string; approvedBy?: string };
  const e = newEvent(type, data, { site: 's', actor: { kind: 'user', id: d.requestedBy ?? d.approvedBy ?? 'x' }, streamId: 'x' }) as KnownEvent;
  return { event: writer ? { ...e, provenance: { writer, publicKey: 'N', signature: 'x' } } as KnownEvent : e, position: ++position };
}
const users = (map: Record<string, PositionedEvent[]>) => (id: string) => map[id];

describe('user decider', () => {
  const spec = deciderSpec(userDecider);
  const created = newEvent('UserCreated', { userId: 'ann', roles: ['administrator'] }, { site: 's', actor: { kind: 'user', id: 'x' }, streamId: 'user-ann' });
  it('creates a user once', () => {
    spec.given([]).when({ kind: 'create', userId: 'bob', roles: ['operator'], context: ctx(true) }).then([{ type: 'UserCreated', data: { userId: 'bob', roles: ['operator'] } }]);
    spec.given([created]).when({ kind: 'create', userId: 'ann', roles: ['operator'], context: ctx(true) }).thenRefuses((e) => e instanceof UserRefused && e.code === 'conflict');
  });
  it('on a secure site the administrator role and keys need an endorsement', () => {
    spec.given([]).when({ kind: 'create', userId: 'bob', roles: ['administrator'], context: ctx(true) }).thenRefuses((e) => e instanceof UserRefused && e.code === 'endorsement_required');
    spec.given([created]).when({ kind: 'addKey', publicKey: signer().publicKey, context: ctx(true) }).thenRefuses(/endorsement/);
    spec.given([]).when({ kind: 'create', userId: 'bob', roles: ['administrator'], context: ctx(false) }).then([{ type: 'UserCreated', data: { userId: 'bob', roles: ['administrator'] } }]);
  });
  it('keeps the last enabled administrator', () => {
    spec.given([created]).when({ kind: 'disable', context: ctx(false, 0) }).thenRefuses((e) => e instanceof UserRefused && e.code === 'last_administrator');
    spec.given([created]).when({ kind: 'setRoles', roles: ['auditor'], context: ctx(false, 0) }).thenRefuses(/last enabled administrator/);
    spec.given([created]).when({ kind: 'disable', context: ctx(false, 1) }).then([{ type: 'UserDisabled', data: { userId: 'ann' } }]);
  });
  it('keys: no duplicate, revoking an unknown key is not found', () => {
    const k = signer().publicKey;
    const added = newEvent('UserKeyAdded', { userId: 'ann', publicKey: k }, { site: 's', actor: { kind: 'user', id: 'x' }, streamId: 'user-ann' });
    spec.given([created, added]).when({ kind: 'addKey', publicKey: k, context: ctx(false) }).thenRefuses(/already/);
    spec.given([created]).when({ kind: 'revokeKey', publicKey: k }).thenRefuses((e) => e instanceof UserRefused && e.code === 'not_found');
  });
});

describe('token decider', () => {
  const spec = deciderSpec(tokenDecider);
  const user = { exists: true, userId: 'ann', roles: ['operator'] as const, disabled: false, keys: [] };
  const issued = newEvent('TokenIssued', { tokenId: 't1', userId: 'ann', name: 'x', tokenSha256: 'a'.repeat(64), expiresAt: null }, { site: 's', actor: { kind: 'user', id: 'x' }, streamId: 'token-t1' });
  it('issues once, never to a disabled user; revoking twice records once', () => {
    spec.given([issued]).when({ kind: 'issue', tokenId: 't1', userId: 'ann', name: 'x', tokenSha256: 'a'.repeat(64), expiresAt: null, user }).thenRefuses(/exists/);
    spec.given([]).when({ kind: 'issue', tokenId: 't1', userId: 'ann', name: 'x', tokenSha256: 'a'.repeat(64), expiresAt: null, user: { ...user, disabled: true } }).thenRefuses(/disabled/);
    const revoked = newEvent('TokenRevoked', { tokenId: 't1', userId: 'ann' }, { site: 's', actor: { kind: 'user', id: 'x' }, streamId: 'token-t1' });
    spec.given([issued]).when({ kind: 'revoke' }).then([{ type: 'TokenRevoked', data: { tokenId: 't1', userId: 'ann' } }]);
    spec.given([issued, revoked]).when({ kind: 'revoke' }).thenNothing();
  });
});

describe('approval decider', () => {
  const spec = deciderSpec(approvalDecider);
  const action: ApprovalAction = { kind: 'delete-restore-point', restorePointId: 'rp1' };
  const ann = signer();
  const bob = signer();
  const now = new Date();
  const secure: SignatureCheck = { required: true, now };
  const sign = (s: StatementSigner, decision: 'request' | 'grant', userId: string, at = now) =>
    signStatement((issuedAt) => approvalStatement({ approvalId: 'a1', decision, userId, action, issuedAt }), s, at);
  const requested = newEvent('ApprovalRequested', { approvalId: 'a1', action, requestedBy: 'ann', signature: sign(ann, 'request', 'ann') }, { site: 's', actor: { kind: 'user', id: 'ann' }, streamId: 'approval-a1' });
  it('a secure site refuses an unsigned request or grant, with a hint to the CLI', () => {
    spec.given([]).when({ kind: 'request', approvalId: 'a1', action, requestedBy: 'ann', check: secure }).thenRefuses((e) => e instanceof ApprovalRefused && e.code === 'signature_required' && /cairn/.test(e.message));
    spec.given([requested]).when({ kind: 'grant', approvedBy: 'bob', check: secure }).thenRefuses((e) => e instanceof ApprovalRefused && e.code === 'signature_required');
  });
  it('four-eyes: not by the requester; a signature of another statement, a stale one or an untrusted key is refused', () => {
    spec.given([requested]).when({ kind: 'grant', approvedBy: 'ann', signature: sign(ann, 'grant', 'ann'), check: secure }).thenRefuses((e) => e instanceof ApprovalRefused && e.code === 'four_eyes');
    spec.given([requested]).when({ kind: 'grant', approvedBy: 'bob', signature: sign(bob, 'request', 'bob'), check: secure }).thenRefuses(/does not verify/);
    spec.given([requested]).when({ kind: 'grant', approvedBy: 'bob', signature: sign(bob, 'grant', 'bob', new Date(now.getTime() - 600_000)), check: secure }).thenRefuses(/stale/);
    spec.given([requested]).when({ kind: 'grant', approvedBy: 'bob', signature: sign(bob, 'grant', 'bob'), check: { ...secure, keyProblem: 'not endorsed' } }).thenRefuses(/not endorsed/);
    const sig = sign(bob, 'grant', 'bob');
    spec.given([requested]).when({ kind: 'grant', approvedBy: 'bob', signature: sig, check: secure }).then([{ type: 'ApprovalGranted', data: { approvalId: 'a1', approvedBy: 'bob', signature: sig } }]);
  });
  it('a decided approval cannot be decided again', () => {
    const granted = newEvent('ApprovalGranted', { approvalId: 'a1', approvedBy: 'bob' }, { site: 's', actor: { kind: 'user', id: 'bob' }, streamId: 'approval-a1' });
    spec.given([requested, granted]).when({ kind: 'reject', rejectedBy: 'carl', check: secure }).thenRefuses((e) => e instanceof ApprovalRefused && e.code === 'conflict');
    spec.given([requested, granted]).when({ kind: 'executed', outcome: 'done' }).then([{ type: 'ApprovalExecuted', data: { approvalId: 'a1', outcome: 'done' } }]);
  });
});

describe('operator trust: endorsement chains from the root operator', () => {
  const root = signer();
  const bob = signer();
  const rootOp: TrustRoot = { userId: 'op', publicKey: root.publicKey };
  const opStream = [ev('UserCreated', { userId: 'op', roles: ['administrator'] }, 'admin'), ev('UserKeyAdded', { userId: 'op', publicKey: root.publicKey }, 'admin')];

  it('the root is trusted; a user the root endorsed is; a gateway-minted administrator and key are not', () => {
    const bobStream = [
      ev('UserCreated', { userId: 'bob', roles: ['administrator'], endorsement: endorse('op', 'bob', { kind: 'administrator' }, root) }),
      ev('UserKeyAdded', { userId: 'bob', publicKey: bob.publicKey, endorsement: endorse('op', 'bob', { kind: 'key', publicKey: bob.publicKey }, root) }),
    ];
    const mallory = signer();
    const malStream = [ev('UserCreated', { userId: 'mal', roles: ['administrator'] }), ev('UserKeyAdded', { userId: 'mal', publicKey: mallory.publicKey })];
    const u = users({ op: opStream, bob: bobStream, mal: malStream });
    expect(trustedAdministratorKey('op', root.publicKey, u, rootOp)).toBeUndefined();
    expect(trustedAdministratorKey('bob', bob.publicKey, u, rootOp)).toBeUndefined();
    expect(trustedAdministratorKey('mal', mallory.publicKey, u, rootOp)).toMatch(/not a trusted administrator.*no administrator endorsed it/);
    expect(trustedUser('mal', u, rootOp)).toMatchObject({ administrator: false, roles: [] });
  });

  it('the admin identity writes only the root: an admin-written administrator or key elsewhere is not trusted, even endorsed', () => {
    const malStream = [
      ev('UserCreated', { userId: 'mal', roles: ['administrator'], endorsement: endorse('op', 'mal', { kind: 'administrator' }, root) }, 'admin'),
    ];
    expect(trustedUser('mal', users({ op: opStream, mal: malStream }), rootOp)?.untrusted[0]?.why).toMatch(/written by admin/);
  });

  it('an endorsement by someone who was not a trusted administrator then, a replayed one, or a forged one counts for nothing', () => {
    const mallory = signer();
    const u = users({
      op: opStream,
      // An operator (not administrator) endorsing; a replay of the same endorsement; a signature by another key.
      olga: [ev('UserCreated', { userId: 'olga', roles: ['operator'] })],
      x: [
        ev('UserCreated', { userId: 'x', roles: ['administrator'], endorsement: endorse('olga', 'x', { kind: 'administrator' }, mallory) }),
      ],
    });
    expect(trustedUser('x', u, rootOp)?.administrator).toBe(false);
    const en = endorse('op', 'y', { kind: 'administrator' }, root);
    const y = [ev('UserCreated', { userId: 'y', roles: ['administrator'], endorsement: en }), ev('UserRolesChanged', { userId: 'y', roles: ['auditor'] }), ev('UserRolesChanged', { userId: 'y', roles: ['administrator'], endorsement: en })];
    const t = trustedUser('y', users({ op: opStream, y }), rootOp);
    expect(t?.administrator).toBe(false);
    expect(t?.everAdministrator).toBe(true);
    expect(t?.untrusted[0]?.why).toMatch(/replayed/);
  });

  it('checkSignedApproval: both people signed, with trusted keys, two people; a gateway-written grant without a person signature is refused naming the event', () => {
    const bobStream = [
      ev('UserCreated', { userId: 'bob', roles: ['administrator'], endorsement: endorse('op', 'bob', { kind: 'administrator' }, root) }),
      ev('UserKeyAdded', { userId: 'bob', publicKey: bob.publicKey, endorsement: endorse('op', 'bob', { kind: 'key', publicKey: bob.publicKey }, root) }),
    ];
    const trust = { users: users({ op: opStream, bob: bobStream }), root: rootOp };
    const action: ApprovalAction = { kind: 'delete-restore-point', restorePointId: 'rp1' };
    const sig = (s: StatementSigner, decision: 'request' | 'grant', userId: string) => signStatement((issuedAt) => approvalStatement({ approvalId: 'a1', decision, userId, action, issuedAt }), s);
    const request = ev('ApprovalRequested', { approvalId: 'a1', action, requestedBy: 'op', signature: sig(root, 'request', 'op') });
    const forThis = (a: ApprovalAction) => a.kind === 'delete-restore-point' && a.restorePointId === 'rp1';
    expect(checkSignedApproval('a1', [request, ev('ApprovalGranted', { approvalId: 'a1', approvedBy: 'bob', signature: sig(bob, 'grant', 'bob') })], forThis, trust)).toMatchObject({ ok: true, requestedBy: 'op', approvedBy: 'bob' });
    const bare = ev('ApprovalGranted', { approvalId: 'a1', approvedBy: 'bob' });
    const v = checkSignedApproval('a1', [request, bare], forThis, trust);
    expect(v).toMatchObject({ ok: false, code: 'approval_required', message: expect.stringMatching(/written by gateway.*no signature/) as unknown });
    expect(!v.ok && v.offending?.event.id).toBe(bare.event.id);
    // Without trust (an insecure site) the plain rule holds.
    expect(checkSignedApproval('a1', [request, bare], forThis)).toMatchObject({ ok: true });
    // The root's key signing the grant as bob: not bob's key.
    expect(checkSignedApproval('a1', [request, ev('ApprovalGranted', { approvalId: 'a1', approvedBy: 'bob', signature: sig(root, 'grant', 'bob') })], forThis, trust)).toMatchObject({ ok: false, message: expect.stringMatching(/not a trusted key of bob/) as unknown });
  });
});
