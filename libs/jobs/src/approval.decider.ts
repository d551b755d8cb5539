// Four-eyes approvals (stream `approval-<id>`): the decider the gateway runs for requests,
// decisions and outcomes, and the check a service carrying out an approved act makes itself
// (`checkSignedApproval`): on a secure site the request and the grant must each carry the
// person's own signature with a key an endorsement chain vouches for, by two different
// administrators (docs/security.md, "Four-eyes that no single identity completes").
import {
  approvalStatement, verifyApproval, verifyStatement,
  type ApprovalAction, type ApprovalDecision, type ApprovalVerdict, type KnownEvent, type PersonSignatureValue,
} from '@cairn/contracts';
import type { Decider, Draft } from './decider.ts';
import { trustedAdministratorKey, type PositionedEvent, type TrustRoot, type UserRecords } from './operator-trust.ts';

type ApprovalEvent = Extract<KnownEvent, { type: 'ApprovalRequested' | 'ApprovalGranted' | 'ApprovalRejected' | 'ApprovalExecuted' }>;

export type ApprovalStatus = 'none' | 'pending' | 'approved' | 'rejected' | 'done' | 'failed';

export interface ApprovalState {
  readonly status: ApprovalStatus;
  readonly approvalId?: string;
  readonly action?: ApprovalAction;
  readonly requestedBy?: string;
  readonly requestKey?: string;
}

/** What a signed decision must be checked against (computed by the handler from the log). */
export interface SignatureCheck {
  /** The site requires the person's own signature (secure). */
  readonly required: boolean;
  /** Why the signing key is not a trusted key of an enabled administrator (undefined: it is). */
  readonly keyProblem?: string;
  readonly now: Date;
}

export type ApprovalCommand =
  | { readonly kind: 'request'; readonly approvalId: string; readonly action: ApprovalAction; readonly requestedBy: string; readonly reason?: string; readonly signature?: PersonSignatureValue; readonly check: SignatureCheck }
  | { readonly kind: 'grant'; readonly approvedBy: string; readonly signature?: PersonSignatureValue; readonly check: SignatureCheck }
  | { readonly kind: 'reject'; readonly rejectedBy: string; readonly reason?: string; readonly signature?: PersonSignatureValue; readonly check: SignatureCheck }
  | { readonly kind: 'executed'; readonly outcome: 'done' | 'failed'; readonly detail?: string };

export class ApprovalRefused extends Error {
  override readonly name = 'ApprovalRefused';
  constructor(readonly code: 'not_found' | 'conflict' | 'four_eyes' | 'signature_required' | 'bad_signature', message: string) {
    super(message);
  }
}

/** How far a signature's time may be from the deciding gateway's clock. */
export const SIGNATURE_MAX_SKEW_MS = 5 * 60_000;

function checkSignature(approvalId: string, decision: ApprovalDecision, userId: string, action: ApprovalAction, signature: PersonSignatureValue | undefined, check: SignatureCheck): void {
  if (!signature) {
    if (check.required) {
      throw new ApprovalRefused('signature_required', `this site needs the ${decision === 'request' ? 'request' : 'decision'} signed with ${userId}'s own operator key: use the CLI (cairn ${decision === 'request' ? 'restore-point delete / repo delete / user …' : `approval ${decision === 'grant' ? 'approve' : 'reject'} ${approvalId}`} --operator-key <file>); see docs/security.md, four-eyes`);
    }
    return;
  }
  if (!verifyStatement(approvalStatement({ approvalId, decision, userId, action, issuedAt: signature.issuedAt }), signature)) {
    throw new ApprovalRefused('bad_signature', `the signature of ${userId}'s ${decision} of approval ${approvalId} does not verify`);
  }
  if (!(Math.abs(Date.parse(signature.issuedAt) - check.now.getTime()) <= SIGNATURE_MAX_SKEW_MS)) {
    throw new ApprovalRefused('bad_signature', `the ${decision} of approval ${approvalId} was signed at ${signature.issuedAt}: more than 5 min from now (stale or replayed)`);
  }
  if (check.keyProblem) throw new ApprovalRefused('bad_signature', `approval ${approvalId}: ${check.keyProblem}`);
}

export const approvalDecider: Decider<ApprovalCommand, ApprovalEvent, ApprovalState> = {
  initialState: () => ({ status: 'none' }),
  evolve(state, e) {
    switch (e.type) {
      case 'ApprovalRequested':
        return state.status === 'none'
          ? { status: 'pending', approvalId: e.data.approvalId, action: e.data.action, requestedBy: e.data.requestedBy, ...(e.data.signature ? { requestKey: e.data.signature.publicKey } : {}) }
          : state;
      case 'ApprovalGranted': return state.status === 'pending' ? { ...state, status: 'approved' } : state;
      case 'ApprovalRejected': return state.status === 'pending' ? { ...state, status: 'rejected' } : state;
      case 'ApprovalExecuted': return state.status === 'approved' ? { ...state, status: e.data.outcome } : state;
      default: return state;
    }
  },
  decide(c, s): Draft<ApprovalEvent>[] {
    if (c.kind === 'request') {
      if (s.status !== 'none') throw new ApprovalRefused('conflict', `approval ${c.approvalId} exists`);
      checkSignature(c.approvalId, 'request', c.requestedBy, c.action, c.signature, c.check);
      return [{ type: 'ApprovalRequested', data: { approvalId: c.approvalId, action: c.action, requestedBy: c.requestedBy, ...(c.reason ? { reason: c.reason } : {}), ...(c.signature ? { signature: c.signature } : {}) } }];
    }
    if (s.status === 'none' || !s.approvalId || !s.action || !s.requestedBy) throw new ApprovalRefused('not_found', 'no such approval');
    if (c.kind === 'executed') {
      if (s.status !== 'approved') throw new ApprovalRefused('conflict', `approval ${s.approvalId} is ${s.status}, not approved`);
      return [{ type: 'ApprovalExecuted', data: { approvalId: s.approvalId, outcome: c.outcome, ...(c.detail ? { detail: c.detail.slice(0, 4096) } : {}) } }];
    }
    if (s.status !== 'pending') throw new ApprovalRefused('conflict', `approval ${s.approvalId} is ${s.status}, not pending`);
    if (c.kind === 'grant') {
      if (c.approvedBy === s.requestedBy) throw new ApprovalRefused('four_eyes', `approval ${s.approvalId} was asked for by ${c.approvedBy}: four-eyes needs a second administrator`);
      checkSignature(s.approvalId, 'grant', c.approvedBy, s.action, c.signature, c.check);
      if (c.signature && c.signature.publicKey === s.requestKey) throw new ApprovalRefused('four_eyes', `approval ${s.approvalId}: the grant is signed with the key that signed the request`);
      return [{ type: 'ApprovalGranted', data: { approvalId: s.approvalId, approvedBy: c.approvedBy, ...(c.signature ? { signature: c.signature } : {}) } }];
    }
    // Anyone with the permission may reject (the requester withdraws); a signature, when given, must hold.
    if (c.signature) checkSignature(s.approvalId, 'reject', c.rejectedBy, s.action, c.signature, c.check);
    return [{ type: 'ApprovalRejected', data: { approvalId: s.approvalId, rejectedBy: c.rejectedBy, ...(c.reason ? { reason: c.reason } : {}), ...(c.signature ? { signature: c.signature } : {}) } }];
  },
};

export type SignedApprovalVerdict =
  | Extract<ApprovalVerdict, { ok: true }>
  | (Extract<ApprovalVerdict, { ok: false }> & {
    /** The approval event that failed the person-signature check (to report as a provenance violation). */
    readonly offending?: PositionedEvent;
  });

/**
 * The executor's check. Without `trust` (an insecure site), the plain rule (`verifyApproval`).
 * With it, also: the request and the grant each signed by their person over this approval and
 * act, with a key that an endorsement chain from the root vouches for, each person an enabled
 * trusted administrator now, and two different people with two different keys.
 */
export function checkSignedApproval(
  approvalId: string,
  records: readonly PositionedEvent[],
  forThisAct: (action: ApprovalAction) => boolean,
  trust?: { readonly users: UserRecords; readonly root: TrustRoot | null },
): SignedApprovalVerdict {
  const events = records.map((r) => r.event);
  const base = verifyApproval(approvalId, events, forThisAct);
  if (!base.ok || !trust) return base;
  const request = records.find((r) => r.event.type === 'ApprovalRequested')!;
  const grant = records.find((r) => r.event.type === 'ApprovalGranted')!;
  const refuse = (offending: PositionedEvent, message: string): SignedApprovalVerdict => ({ ok: false, code: 'approval_required', message, offending });
  for (const [r, decision, userId] of [[request, 'request', base.requestedBy], [grant, 'grant', base.approvedBy]] as const) {
    const sig = 'signature' in r.event.data ? r.event.data.signature : undefined;
    const writer = r.event.provenance?.writer ?? 'nobody';
    if (!sig) return refuse(r, `approval ${approvalId}: the ${decision} by ${userId} (written by ${writer}) carries no signature of ${userId}'s own: on a secure site four-eyes needs both people's signatures`);
    if (!verifyStatement(approvalStatement({ approvalId, decision, userId, action: base.action, issuedAt: sig.issuedAt }), sig)) {
      return refuse(r, `approval ${approvalId}: the ${decision} signature of ${userId} (written by ${writer}) does not verify`);
    }
    const problem = trustedAdministratorKey(userId, sig.publicKey, trust.users, trust.root);
    if (problem) return refuse(r, `approval ${approvalId}: the ${decision} (written by ${writer}) is signed by ${problem}`);
  }
  const [rk, gk] = [request, grant].map((r) => ('signature' in r.event.data ? r.event.data.signature?.publicKey : undefined));
  if (rk === gk) return refuse(grant, `approval ${approvalId}: request and grant are signed with the same key`);
  return base;
}
