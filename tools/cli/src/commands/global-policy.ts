// `cairn policy create|edit|list --global` at the hub (docs/sites.md, "Global policies"): a
// policy for a set of sites as a statement signed by the person with their operator key(s),
// recorded in the hub's log (GlobalPolicyPublished, stream `globalpolicy-<policyId>`, appended
// at the revision read); the hub offers it to each site it selects, which checks the signature.
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  GLOBAL_POLICIES_SUBJECT, describeSelector, globalPolicyStatementText, newEvent,
  type CommandPayloadMap, type GlobalPolicySelector, type GlobalPolicyStatement, type Policy,
} from '@cairn/contracts';
import type { PolicyView } from '@cairn/catalogue-client';
import { CliError, EXIT } from '../cli-error.ts';
import { output, table, type Session } from '../session.ts';
import { loadOperatorKey, type OperatorKey } from '../operator-key.ts';
import { editedPolicy } from './policy-options.ts';
import { askHub } from './hub-report.ts';
import type { GlobalPolicyStatus } from '../stack/global-policies.ts';

type Opts = Record<string, unknown>;

/** --to-sites / --to-tag (default: every site). */
export function selectorOption(o: Opts): GlobalPolicySelector {
  const sites = o['toSites'] as string[] | undefined;
  const tags = o['toTag'] as string[] | undefined;
  if (sites?.length && tags?.length) throw new CliError('give --to-sites or --to-tag, not both', EXIT.usage);
  if (sites?.length) return { sites: [...new Set(sites.flatMap((x) => x.split(',')).map((x) => x.trim()).filter(Boolean))] };
  if (tags?.length) return { tags: [...new Set(tags)] };
  return { all: true };
}

/** The statement signed by each key (one per site whose users differ: a person's key is per site). */
export function signGlobalPolicy(unsigned: Omit<GlobalPolicyStatement, 'signatures'>, keys: readonly OperatorKey[]): GlobalPolicyStatement {
  const text = new TextEncoder().encode(globalPolicyStatementText(unsigned));
  const signatures = keys.map((k) => ({ userId: k.userId, publicKey: k.publicKey, signature: Buffer.from(k.signer.sign(text)).toString('base64url') }));
  return { ...unsigned, signatures };
}

async function signingKeys(s: Session, o: Opts): Promise<OperatorKey[]> {
  const files = (o['signWith'] as string[] | undefined) ?? [];
  const keys = [...(s.operatorKey ? [s.operatorKey] : [])];
  for (const f of files) {
    try { keys.push(await loadOperatorKey(f)); } catch (e) { throw new CliError((e as Error).message, EXIT.usage); }
  }
  const unique = [...new Map(keys.map((k) => [k.publicKey, k])).values()];
  if (!unique.length) {
    throw new CliError('a global policy is signed by a person: give your operator key at the sites (--sign-with <key file>..., or --operator-key)', EXIT.usage,
      'each site accepts it only with a signature by a key of one of its users with the policy permission');
  }
  return unique;
}

async function hubId(s: Session): Promise<string> {
  if (s.site !== 'hub') throw new CliError(`global policies are made at the hub (cairn --data <hub data> policy … --global), not at site ${s.site}`, EXIT.usage);
  if (!s.securityDir) throw new CliError('global policies need a secure hub (its CA names it in every statement); this hub runs --insecure', EXIT.usage);
  const { hubIdOf } = await import('@cairn/nats-security');
  return hubIdOf(await readFile(join(s.securityDir, 'ca.pem'), 'utf8'));
}

/** Every global policy's newest statement and its stream revision, from the hub's log. */
async function statements(s: Session): Promise<Map<string, { statement: GlobalPolicyStatement; revision: bigint }>> {
  const log = await s.eventLog();
  const out = new Map<string, { statement: GlobalPolicyStatement; revision: bigint }>();
  for await (const r of log.readAll({ category: 'globalpolicy' })) {
    if (r.event.type !== 'GlobalPolicyPublished') continue;
    const statement = r.event.data as GlobalPolicyStatement;
    const known = out.get(statement.policyId);
    if (!known || known.statement.version < statement.version) out.set(statement.policyId, { statement, revision: r.revision });
  }
  return out;
}

async function publish(s: Session, statement: GlobalPolicyStatement, expected: bigint | 'no_stream'): Promise<void> {
  const log = await s.eventLog();
  const streamId = `globalpolicy-${statement.policyId}`;
  const event = newEvent('GlobalPolicyPublished', statement, { site: 'hub', actor: s.actor, streamId });
  try {
    await log.append(streamId, [event], { expectedRevision: expected });
  } catch (e) {
    throw new CliError(`global policy ${statement.policy.name} not recorded: ${(e as Error).message}`, EXIT.conflict, 'someone changed it meanwhile: look again (cairn policy list --global) and retry');
  }
}

const summary = (st: GlobalPolicyStatement) => ({ policyId: st.policyId, name: st.policy.name, version: st.version, selector: st.selector, signedBy: st.signatures.map((x) => x.userId) });

export async function createGlobalPolicy(s: Session, payload: CommandPayloadMap['CreatePolicy'], o: Opts): Promise<void> {
  const id = await hubId(s);
  const selector = selectorOption(o);
  const keys = await signingKeys(s, o);
  const known = await statements(s);
  const same = [...known.values()].find((x) => x.statement.policy.name === payload.name && !x.statement.withdrawn);
  if (same) throw new CliError(`a global policy named ${JSON.stringify(payload.name)} exists already (${same.statement.policyId}); nothing was created`, EXIT.conflict, `change it with \`cairn policy edit ${payload.name} --global\``);
  const policyId = randomUUID();
  const policy: Policy = { ...payload, policyId };
  const statement = signGlobalPolicy({ policyId, version: 1, hubId: id, selector, policy, issuedAt: new Date().toISOString() }, keys);
  await publish(s, statement, 'no_stream');
  output(s, summary(statement), () => `global policy ${policyId} (${payload.name}) version 1 for ${describeSelector(selector)}, signed by ${keys.map((k) => k.userId).join(', ')}; the hub offers it to each site (cairn policy list --global)`);
}

export async function editGlobalPolicy(s: Session, ref: string, o: Opts): Promise<void> {
  const id = await hubId(s);
  const known = await statements(s);
  const found = await findGlobal(known, ref);
  const keys = await signingKeys(s, o);
  const old = found.statement;
  const view = { ...old.policy, version: old.version, createdAt: old.issuedAt, updatedAt: old.issuedAt, deletedAt: null } as PolicyView;
  const policy: Policy = editedPolicy(view, o);
  const selector = o['toSites'] || o['toTag'] ? selectorOption(o) : old.selector;
  const statement = signGlobalPolicy({ policyId: old.policyId, version: old.version + 1, hubId: id, selector, policy, issuedAt: new Date().toISOString() }, keys);
  await publish(s, statement, found.revision);
  output(s, summary(statement), () => `global policy ${old.policyId} (${policy.name}) version ${statement.version} for ${describeSelector(selector)}; the hub offers it to each site`);
}

async function findGlobal(known: Awaited<ReturnType<typeof statements>>, ref: string): Promise<{ statement: GlobalPolicyStatement; revision: bigint }> {
  const live = [...known.values()].filter((x) => !x.statement.withdrawn);
  const found = live.find((x) => x.statement.policyId === ref || x.statement.policy.name === ref);
  if (!found) throw new CliError(`unknown global policy ${JSON.stringify(ref)} (or withdrawn)`, EXIT.notFound, `known: ${live.map((x) => x.statement.policy.name).join(', ') || 'none'}`);
  return found;
}

/** Withdraws a global policy: one more version, `withdrawn`, signed like the others; each site deletes its copy (its restore points are kept). */
export async function withdrawGlobalPolicy(s: Session, ref: string, o: Opts): Promise<void> {
  const id = await hubId(s);
  const found = await findGlobal(await statements(s), ref);
  const keys = await signingKeys(s, o);
  const old = found.statement;
  const statement = signGlobalPolicy({ policyId: old.policyId, version: old.version + 1, hubId: id, selector: old.selector, policy: old.policy, issuedAt: new Date().toISOString(), withdrawn: true }, keys);
  await publish(s, statement, found.revision);
  output(s, { ...summary(statement), withdrawn: true }, () => `global policy ${old.policyId} (${old.policy.name}) withdrawn (version ${statement.version}): each site deletes its copy; restore points are kept`);
}

export async function listGlobalPolicies(s: Session): Promise<void> {
  const policies = await askHub<'policies', GlobalPolicyStatus[]>(s, GLOBAL_POLICIES_SUBJECT, 'policies', 'global policies', 'policy list --global');
  output(s, policies, () => table(policies.flatMap((p) => (p.sites.length ? p.sites : [undefined]).map((x) => ({
    name: p.name, version: p.withdrawn ? `${p.version} (withdrawn)` : p.version, selects: p.selects, site: x?.site ?? '-',
    applied: x ? x.appliedVersion ?? 'none' : '-',
    state: x ? `${x.state === 'current' ? 'current' : `${x.state.toUpperCase()}${x.lastError ? ` (${x.lastError.slice(0, 120)})` : ''}`}${x.selected ? '' : ' (withdrawn: not selected)'}` : 'no site selected',
  }))), ['name', 'version', 'selects', 'site', 'applied', 'state']));
}
