// What a person signs for a global policy, and which sites a statement selects. Pure; the hub's
// CLI signs, each site verifies (libs/jobs global-policy.ts).
import { canonicalJson } from './command.ts';
import type { GlobalPolicySelector, GlobalPolicyStatement } from './events/global-policy.events.ts';

/** The signed text: a tag line, then the canonical JSON of everything but the signatures. */
export function globalPolicyStatementText(statement: Omit<GlobalPolicyStatement, 'signatures'> | GlobalPolicyStatement): string {
  const { signatures: _s, ...unsigned } = statement as GlobalPolicyStatement;
  return ['cairn-global-policy-v1', canonicalJson(unsigned)].join('\n');
}

/** Whether a selector takes a site (its name and the tags the hub gave it). */
export function selectorTakesSite(selector: GlobalPolicySelector, site: string, tags: readonly string[]): boolean {
  if ('all' in selector) return true;
  if ('sites' in selector) return selector.sites.includes(site);
  return selector.tags.every((t) => tags.includes(t));
}

/** The selector in words (`all sites`, `sites a, b`, `sites tagged eu`). */
export function describeSelector(selector: GlobalPolicySelector): string {
  if ('all' in selector) return 'all sites';
  if ('sites' in selector) return `sites ${selector.sites.join(', ')}`;
  return `sites tagged ${selector.tags.join(' and ')}`;
}

/**
 * The id of a global policy's copy at a site: its own, because the hub's catalogue keeps every
 * site's policies in one table keyed by id.
 */
export function sitePolicyId(globalPolicyId: string, site: string): string {
  return `${globalPolicyId}-at-${site}`;
}

/** The subject at the hub that answers the global policies and each site's applied version (`cairn policy list --global`). */
export const GLOBAL_POLICIES_SUBJECT = 'cairn.hub.query.globalpolicies';
