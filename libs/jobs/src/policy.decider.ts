// Protection policies (stream `policy-<policyId>`): validation of what an operator asks for,
// and the decider the scheduler runs. Pure; which repositories exist comes in as context.
import { Cron } from 'croner';
import type { KnownEvent, Policy } from '@cairn/contracts';
import type { Decider, Draft } from './decider.ts';

export interface PolicyState {
  readonly policy: Policy | null;
  readonly deleted: boolean;
}

export type PolicyCommand =
  | { readonly kind: 'create'; readonly policy: Policy; readonly knownRepositories: readonly string[] }
  | { readonly kind: 'update'; readonly policy: Policy; readonly knownRepositories: readonly string[] }
  | { readonly kind: 'delete'; readonly policyId: string };

export class PolicyInvalidError extends Error {
  override readonly name = 'PolicyInvalidError';
  constructor(readonly problems: readonly string[], readonly code: 'invalid' | 'conflict' | 'not_found' = 'invalid') {
    super(problems.join('; '));
  }
}

/** Problems with a policy an operator wrote (empty when it is fine). */
export function policyProblems(policy: Policy, knownRepositories: readonly string[]): string[] {
  const problems: string[] = [];
  try {
    new Intl.DateTimeFormat('en', { timeZone: policy.schedule.timezone });
  } catch {
    problems.push(`schedule.timezone ${JSON.stringify(policy.schedule.timezone)} is not an IANA time zone (e.g. Europe/Paris)`);
  }
  try {
    new Cron(policy.schedule.cron, { paused: true });
  } catch (e) {
    problems.push(`schedule.cron ${JSON.stringify(policy.schedule.cron)} is invalid: ${(e as Error).message}`);
  }
  const sel = policy.selector;
  if (!sel.names?.length && !sel.tags?.length && !sel.hypervisor) {
    problems.push('selector is empty: name VMs, tags or a hypervisor');
  }
  const r = policy.retention;
  if (r.last + r.daily + r.weekly + r.monthly + r.yearly === 0) {
    problems.push('retention keeps nothing: set at least one of last, daily, weekly, monthly, yearly');
  }
  if (policy.immutable && r.daily + r.weekly + r.monthly + r.yearly === 0) {
    problems.push('immutable needs a retention by time (daily, weekly, monthly or yearly): `last` alone gives no lock period');
  }
  if (!knownRepositories.includes(policy.repository)) {
    problems.push(`repository ${JSON.stringify(policy.repository)} does not exist (known: ${knownRepositories.join(', ') || 'none'})`);
  }
  return problems;
}

export function evolvePolicy(state: PolicyState, event: KnownEvent): PolicyState {
  switch (event.type) {
    case 'PolicyCreated':
    case 'PolicyUpdated':
      return { policy: event.data, deleted: false };
    case 'PolicyDeleted':
      return { ...state, deleted: true };
    default:
      return state;
  }
}

export function decidePolicy(command: PolicyCommand, state: PolicyState): readonly Draft[] {
  switch (command.kind) {
    case 'create': {
      if (state.policy && !state.deleted) {
        if (JSON.stringify(state.policy) === JSON.stringify(command.policy)) return [];
        throw new PolicyInvalidError([`policy ${command.policy.policyId} exists`], 'conflict');
      }
      const problems = policyProblems(command.policy, command.knownRepositories);
      if (problems.length) throw new PolicyInvalidError(problems);
      return [{ type: 'PolicyCreated', data: command.policy }];
    }
    case 'update': {
      if (!state.policy || state.deleted) throw new PolicyInvalidError([`policy ${command.policy.policyId} does not exist`], 'not_found');
      const problems = policyProblems(command.policy, command.knownRepositories);
      if (problems.length) throw new PolicyInvalidError(problems);
      return [{ type: 'PolicyUpdated', data: command.policy }];
    }
    case 'delete':
      if (!state.policy || state.deleted) return [];
      return [{ type: 'PolicyDeleted', data: { policyId: command.policyId } }];
  }
}

export const policyDecider: Decider<PolicyCommand, KnownEvent, PolicyState> = {
  decide: decidePolicy,
  evolve: evolvePolicy,
  initialState: () => ({ policy: null, deleted: false }),
};

/** Schedule slots of a policy due in (after, upTo]: each becomes exactly one job per VM. */
export function dueSlots(policy: Policy, after: Date, upTo: Date, max = 100): Date[] {
  const cron = new Cron(policy.schedule.cron, { timezone: policy.schedule.timezone, paused: true });
  const slots: Date[] = [];
  let cursor = after;
  while (slots.length < max) {
    const next = cron.nextRun(cursor);
    if (!next || next.getTime() > upTo.getTime()) break;
    slots.push(next);
    cursor = next;
  }
  return slots;
}

/** Is `now` inside the policy's backup window (always, without one)? Windows may wrap midnight. */
export function inBackupWindow(schedule: Policy['schedule'], now: Date): boolean {
  const w = schedule.window;
  if (!w || w.start === w.end) return true;
  const hm = new Intl.DateTimeFormat('en-GB', { timeZone: schedule.timezone, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).format(now);
  return w.start < w.end ? hm >= w.start && hm < w.end : hm >= w.start || hm < w.end;
}

/** Does a VM fall under a policy's selector? */
export function selects(policy: Policy, vm: { name: string; tags: readonly string[]; hypervisor: string }): boolean {
  const s = policy.selector;
  if (s.hypervisor && s.hypervisor !== vm.hypervisor) return false;
  if (s.names?.length && !s.names.includes(vm.name)) return false;
  if (s.tags?.length && !s.tags.every((t) => vm.tags.includes(t))) return false;
  return Boolean(s.names?.length || s.tags?.length || s.hypervisor);
}
