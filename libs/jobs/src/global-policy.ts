// Whether a site accepts a global policy statement from its hub (docs/sites.md, "Global
// policies"). Pure: the site's users come in as records. The statement's authority is a
// person's signature, checked here against this site's own users: a current key an endorsement
// chain from the site's root operator vouches for, a user not disabled whose trusted roles grant
// `policy`. The hub relays the statement but its identities hold no such key, so a statement it
// made up (unsigned, or signed by a hub identity) is refused. Also: it names this site's hub,
// carries the statement's policy. A valid statement that does not select this site (an edit that
// narrowed the selector) is accepted with `selected: false`: for this site it is a withdrawal.
import { allows, globalPolicyStatementText, selectorTakesSite, verifyStatement, type GlobalPolicyStatement } from '@cairn/contracts';
import { trustedUser, type TrustRoot, type UserRecords } from './operator-trust.ts';

export interface GlobalPolicySite {
  readonly site: string;
  /** The tags the hub gave this site (its bundle). */
  readonly tags: readonly string[];
  /** The id of this site's hub (its bundle's CA); undefined when the site joined no secure hub. */
  readonly hubId: string | undefined;
  readonly users: UserRecords;
  readonly root: TrustRoot | null;
}

export type GlobalPolicyVerdict =
  /** `selected: false`: signed and valid, but this site is not (or no longer) selected: its copy goes, as for a withdrawal. */
  | { readonly ok: true; readonly selected: boolean; readonly signedBy: { readonly userId: string; readonly publicKey: string } }
  /** `needed`: what was missing, as AccessDenied records it. */
  | { readonly ok: false; readonly needed: 'hub' | 'statement' | 'person-signature' | 'policy'; readonly reason: string };

export function checkGlobalPolicyStatement(statement: GlobalPolicyStatement, at: GlobalPolicySite): GlobalPolicyVerdict {
  const refuse = (needed: Exclude<GlobalPolicyVerdict, { ok: true }>['needed'], reason: string): GlobalPolicyVerdict => ({ ok: false, needed, reason });
  const what = `global policy ${statement.policyId} version ${statement.version}`;
  if (!at.hubId) return refuse('hub', `${what}: site ${at.site} joined no secure hub (no hub bundle), so it takes no global policy`);
  if (statement.hubId !== at.hubId) return refuse('hub', `${what} is from hub ${statement.hubId}, not from this site's hub ${at.hubId}`);
  if (statement.policy.policyId !== statement.policyId) return refuse('statement', `${what} carries policy ${statement.policy.policyId}, not ${statement.policyId}`);
  if (!statement.signatures.length) return refuse('person-signature', `${what} is signed by nobody: a global policy needs a person's signature (cairn policy create --global --sign-with <operator key>)`);
  const text = globalPolicyStatementText(statement);
  const why: string[] = [];
  for (const sig of statement.signatures) {
    if (!verifyStatement(text, sig)) { why.push(`${sig.userId}: the signature does not verify`); continue; }
    const user = trustedUser(sig.userId, at.users, at.root);
    if (!user) { why.push(`${sig.userId}: no such user at site ${at.site}`); continue; }
    if (!user.keys.has(sig.publicKey)) { why.push(`${sig.userId}: key ${sig.publicKey} is not a current endorsed key at site ${at.site}`); continue; }
    if (user.disabled) { why.push(`${sig.userId}: disabled at site ${at.site}`); continue; }
    if (!allows(user.roles, 'policy')) { why.push(`${sig.userId}: roles ${user.roles.join(', ') || '(none)'} at site ${at.site} do not grant permission policy`); continue; }
    return { ok: true, selected: selectorTakesSite(statement.selector, at.site, at.tags), signedBy: { userId: sig.userId, publicKey: sig.publicKey } };
  }
  const roleOnly = why.length > 0 && why.every((w) => w.includes('do not grant'));
  return refuse(roleOnly ? 'policy' : 'person-signature', `${what}: no signature by a person this site trusts (${why.join('; ')})`);
}
