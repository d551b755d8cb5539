// What a person signs with their own operator key (an nkey) so that no service, the gateway
// included, can speak for them in four-eyes acts: approval requests and decisions
// (`approvalStatement`) and endorsements of another user's key or administrator role
// (`endorsementStatement`). The CLI (and a browser holding the seed in memory) signs; the
// services verify (docs/security.md, "Four-eyes that no single identity completes").
import { createUser, fromPublic, fromSeed } from '@nats-io/nkeys';
import { canonicalJson } from './command.ts';
import type { ApprovalAction } from './events/security.events.ts';

export type ApprovalDecision = 'request' | 'grant' | 'reject';

/** A signature as carried in events: the key, the signature (base64url) and when it was made. */
export interface PersonSignatureValue {
  readonly publicKey: string;
  readonly signature: string;
  readonly issuedAt: string;
}

/** What signs (an operator key): public half and a signing function. */
export interface StatementSigner {
  readonly publicKey: string;
  sign(data: Uint8Array): Uint8Array;
}

/** One line each: the approval, the decision, who, when, and the act (canonical JSON). */
export function approvalStatement(o: { approvalId: string; decision: ApprovalDecision; userId: string; action: ApprovalAction; issuedAt: string }): string {
  return ['cairn-approval-v1', o.approvalId, o.decision, o.userId, o.issuedAt, canonicalJson(o.action)].join('\n');
}

/** What an endorsement vouches for: an operator key of a user, or the administrator role. */
export type EndorsedGrant = { readonly kind: 'key'; readonly publicKey: string } | { readonly kind: 'administrator' };

export function endorsementStatement(o: { endorser: string; userId: string; grant: EndorsedGrant; issuedAt: string }): string {
  const what = o.grant.kind === 'key' ? `key ${o.grant.publicKey}` : 'role administrator';
  return ['cairn-endorse-v1', o.endorser, o.userId, what, o.issuedAt].join('\n');
}

/** Signs a statement at `now`. */
export function signStatement(statement: (issuedAt: string) => string, signer: StatementSigner, now = new Date()): PersonSignatureValue {
  const issuedAt = now.toISOString();
  const signature = toBase64Url(signer.sign(new TextEncoder().encode(statement(issuedAt))));
  return { publicKey: signer.publicKey, signature, issuedAt };
}

/** Whether `sig` is a valid signature of `statement` by `sig.publicKey` (not whose key that is). */
export function verifyStatement(statement: string, sig: { readonly publicKey: string; readonly signature: string }): boolean {
  try {
    return fromPublic(sig.publicKey).verify(new TextEncoder().encode(statement), fromBase64Url(sig.signature));
  } catch {
    return false;
  }
}

// Without Buffer: the console signs in the browser with the same code.
function toBase64Url(bytes: Uint8Array): string {
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function fromBase64Url(text: string): Uint8Array {
  const bin = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

/** An endorsement as carried in events: the endorsing administrator and their signature. */
export interface EndorsementValue extends PersonSignatureValue {
  readonly userId: string;
}

/** The endorsement of `grant` for `userId` by `endorser`, signed now. */
export function endorse(endorser: string, userId: string, grant: EndorsedGrant, signer: StatementSigner, now = new Date()): EndorsementValue {
  return { userId: endorser, ...signStatement((issuedAt) => endorsementStatement({ endorser, userId, grant, issuedAt }), signer, now) };
}

/** A signer from an operator key's seed (`SU…`); the console keeps it in memory only. */
export function statementSignerFromSeed(seed: string): StatementSigner {
  const kp = fromSeed(new TextEncoder().encode(seed.trim()));
  return { publicKey: kp.getPublicKey(), sign: (data) => kp.sign(data) };
}

/** A new operator key pair (tests; the CLI writes keys with `cairn user key add`). */
export function newStatementSigner(): StatementSigner & { readonly seed: string } {
  const kp = createUser();
  return { publicKey: kp.getPublicKey(), seed: new TextDecoder().decode(kp.getSeed()), sign: (data) => kp.sign(data) };
}
