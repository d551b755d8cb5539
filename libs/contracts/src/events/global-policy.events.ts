// Global policies (issue 24; docs/sites.md, "Global policies"): a protection policy defined at
// the hub for a set of sites, as a person-signed, versioned statement. The hub keeps each
// statement in its own log (stream `globalpolicy-<policyId>`, GlobalPolicyPublished) and offers
// the newest to each site it selects or that held an earlier version (the scheduler's
// ApplyGlobalPolicy; a site no longer selected deletes its copy); the site checks the
// person's signature, key and roles itself, so the hub's own identities cannot make one.
import { Type, type Static } from '@sinclair/typebox';
import { lazySchema } from '../lazy-schema.ts';
import { Id, Name } from './common.ts';
import { PolicyFields } from './policy.events.ts';

const Site = Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$', description: 'A site name.' });

/** Which sites: every site of the hub, the sites named, or the sites carrying all these tags (`cairn hub add-site --tag`). */
export const GlobalPolicySelector = lazySchema(() => Type.Union([
  Type.Object({ all: Type.Literal(true) }, { additionalProperties: false }),
  Type.Object({ sites: Type.Array(Site, { minItems: 1, maxItems: 1000 }) }, { additionalProperties: false }),
  Type.Object({ tags: Type.Array(Name, { minItems: 1, maxItems: 32 }) }, { additionalProperties: false }),
]));
export type GlobalPolicySelector = Static<typeof GlobalPolicySelector>;

/** One person's signature over the statement (`globalPolicyStatementText`): their user id at the sites that know that key. */
export const GlobalPolicySignature = lazySchema(() => Type.Object({
  userId: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' }),
  publicKey: Type.String({ minLength: 1, maxLength: 128 }),
  signature: Type.String({ minLength: 1, maxLength: 512 }),
}, { additionalProperties: false }));
export type GlobalPolicySignature = Static<typeof GlobalPolicySignature>;

export const GlobalPolicyStatement = lazySchema(() => Type.Object({
  policyId: Id,
  /** 1 for the first statement of the policy, one more for each change. */
  version: Type.Integer({ minimum: 1 }),
  /** The hub it comes from: the SHA-256 of its CA certificate (hex, first 32), as the sites' bundles hold it. */
  hubId: Type.String({ minLength: 1, maxLength: 128 }),
  selector: GlobalPolicySelector,
  /** The policy each selected site runs (its `policyId` is the statement's). */
  policy: Type.Object(PolicyFields, { additionalProperties: false }),
  issuedAt: Type.String({ format: 'date-time' }),
  /** Withdrawn at the hub (`policy delete --global`): each site deletes its copy (restore points kept). */
  withdrawn: Type.Optional(Type.Literal(true)),
  /**
   * One signature per key it is signed with (a person's key is per site, so a statement for
   * several sites may carry several); a site needs one by a key it trusts. None: refused.
   */
  signatures: Type.Array(GlobalPolicySignature, { maxItems: 64 }),
}, { additionalProperties: false }));
export type GlobalPolicyStatement = Static<typeof GlobalPolicyStatement>;

/** A global policy statement recorded at the hub (stream `globalpolicy-<policyId>`, one per version). */
export const GlobalPolicyPublishedV1 = GlobalPolicyStatement;
