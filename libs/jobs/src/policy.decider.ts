// Protection policies (stream `policy-<policyId>`): validation of what an operator asks for,
// and the decider the scheduler runs. Pure; which repositories exist comes in as context.
import { Cron } from 'croner';
import type { KnownEvent, Policy } from '@cairn/contracts';
import type { Decider, Draft } from './decider.ts';

export interface PolicyState {
  readonly policy: Policy | null;
  readonly deleted: boolean;
  /** Paused: schedules no new backups until resumed (restore points and retention stay). */
  readonly paused?: boolean;
}

export type PolicyCommand =
  | { readonly kind: 'create'; readonly policy: Policy; readonly knownRepositories: readonly string[]; readonly minIntervalMs?: number }
  | { readonly kind: 'update'; readonly policy: Policy; readonly knownRepositories: readonly string[]; readonly minIntervalMs?: number }
  /** A global policy statement the site accepted (libs/jobs global-policy.ts): the hub's version of the policy. */
  | { readonly kind: 'apply-global'; readonly policy: Policy; readonly globalPolicyId: string; readonly version: number; readonly withdrawn?: boolean; readonly knownRepositories: readonly string[]; readonly minIntervalMs?: number }
  | { readonly kind: 'delete'; readonly policyId: string }
  | { readonly kind: 'pause'; readonly policyId: string }
  | { readonly kind: 'resume'; readonly policyId: string };

export class PolicyInvalidError extends Error {
  override readonly name = 'PolicyInvalidError';
  constructor(readonly problems: readonly string[], readonly code: 'invalid' | 'conflict' | 'not_found' = 'invalid') {
    super(problems.join('; '));
  }
}

/** The shortest time between two backups of a policy unless the site configures another (docs/security.md, Input). */
export const DEFAULT_MIN_SCHEDULE_INTERVAL_MS = 5 * 60_000;

/**
 * Problems with a cron expression as documented: 5 fields (minute hour day month weekday) or 6
 * (seconds first), nothing else (croner also takes a 7th, year, field), and no two runs closer
 * than `minIntervalMs` (checked over the runs of a year's sample weeks, DST changes included).
 */
export function cronProblems(cron: string, timezone: string, minIntervalMs = DEFAULT_MIN_SCHEDULE_INTERVAL_MS): string[] {
  // A pure function of its arguments that walks ~800 runs (~15 ms): 10,000 policies sharing a
  // schedule are checked once (a bounded memo, oldest dropped first).
  const key = `${cron}\n${timezone}\n${minIntervalMs}`;
  const memo = cronProblemsMemo.get(key);
  if (memo) return [...memo];
  const problems = checkCron(cron, timezone, minIntervalMs);
  if (cronProblemsMemo.size >= 1024) cronProblemsMemo.delete(cronProblemsMemo.keys().next().value!);
  cronProblemsMemo.set(key, problems);
  return [...problems];
}

const cronProblemsMemo = new Map<string, readonly string[]>();

function checkCron(cron: string, timezone: string, minIntervalMs: number): string[] {
  const fields = cron.trim().split(/\s+/);
  if (fields.length !== 5 && fields.length !== 6) {
    return [`schedule.cron ${JSON.stringify(cron)} has ${fields.length} fields: give 5 (minute hour day month weekday) or 6 (seconds first)`];
  }
  let parsed: Cron;
  try {
    parsed = new Cron(cron, { timezone, paused: true });
  } catch (e) {
    return [`schedule.cron ${JSON.stringify(cron)} is invalid: ${(e as Error).message}`];
  }
  // Runs in a few sample stretches of a year (both DST changes in the north and the south).
  let shortest = Infinity;
  for (const start of ['2027-01-01T00:00:00Z', '2027-03-25T00:00:00Z', '2027-06-01T00:00:00Z', '2027-10-25T00:00:00Z']) {
    let prev = parsed.nextRun(new Date(start));
    for (let i = 0; prev && i < 200 && shortest >= minIntervalMs; i++) {
      const next = parsed.nextRun(prev);
      if (!next) break;
      shortest = Math.min(shortest, next.getTime() - prev.getTime());
      prev = next;
    }
  }
  if (shortest < minIntervalMs) {
    return [`schedule.cron ${JSON.stringify(cron)} runs every ${formatMs(shortest)}: backups must be at least ${formatMs(minIntervalMs)} apart on this site`];
  }
  return [];
}

function formatMs(ms: number): string {
  return ms % 60_000 === 0 ? `${ms / 60_000} min` : `${ms / 1000} s`;
}

/** Problems with a policy an operator wrote (empty when it is fine). */
export function policyProblems(policy: Policy, knownRepositories: readonly string[], minIntervalMs = DEFAULT_MIN_SCHEDULE_INTERVAL_MS): string[] {
  const problems: string[] = [];
  try {
    new Intl.DateTimeFormat('en', { timeZone: policy.schedule.timezone });
  } catch {
    problems.push(`schedule.timezone ${JSON.stringify(policy.schedule.timezone)} is not an IANA time zone (e.g. Europe/Paris)`);
  }
  problems.push(...cronProblems(policy.schedule.cron, problems.length ? 'UTC' : policy.schedule.timezone, minIntervalMs));
  if (policy.testRestore) {
    // A test restore boots a VM: held to the same shortest gap as backups.
    problems.push(...cronProblems(policy.testRestore.cron, problems.length ? 'UTC' : policy.schedule.timezone, minIntervalMs)
      .map((p) => p.replace('schedule.cron', 'testRestore.cron').replace('backups must be', 'test restores must be')));
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
      return { policy: event.data, deleted: false, paused: false };
    case 'PolicyUpdated':
      return { ...state, policy: event.data, deleted: false };
    case 'PolicyDeleted':
      // A withdrawn global policy keeps the version that withdrew it (older statements change nothing).
      return { ...state, deleted: true, ...(state.policy && event.data.globalVersion ? { policy: { ...state.policy, globalVersion: event.data.globalVersion } } : {}) };
    case 'PolicyPaused':
      return { ...state, paused: true };
    case 'PolicyResumed':
      return { ...state, paused: false };
    default:
      return state;
  }
}

/**
 * Why a local change (edit, pause, resume, delete) of this policy is refused: it is managed by
 * the hub (a global policy), changed only by a newer statement from the hub. Undefined: allowed.
 */
export function managedByHubProblem(state: PolicyState, change: string): string | undefined {
  const p = state.policy;
  if (!p || state.deleted || p.managedBy !== 'hub') return undefined;
  return `policy ${p.name} (${p.policyId}) is managed by the hub (global policy, version ${p.globalVersion ?? '?'}): `
    + `it cannot be ${change} at this site; change it at the hub (cairn --data <hub> policy edit ${p.name} --global …)`;
}

export function decidePolicy(command: PolicyCommand, state: PolicyState): readonly Draft[] {
  if (command.kind !== 'create' && command.kind !== 'apply-global') {
    const change = { update: 'edited', delete: 'deleted', pause: 'paused', resume: 'resumed' }[command.kind];
    const managed = managedByHubProblem(state, change);
    if (managed) throw new PolicyInvalidError([managed], 'conflict');
  }
  switch (command.kind) {
    case 'apply-global': {
      const current = state.policy && !state.deleted ? state.policy : null;
      if (current && current.managedBy !== 'hub') {
        throw new PolicyInvalidError([`policy ${current.policyId} (${current.name}) is a local policy of this site: a global policy cannot replace it`], 'conflict');
      }
      // The same version again, or an older one (a replay, or a hub behind): nothing to do — also after a withdrawal.
      if (state.policy?.managedBy === 'hub' && (state.policy.globalVersion ?? 0) >= command.version) return [];
      if (command.withdrawn) {
        return current ? [{ type: 'PolicyDeleted', data: { policyId: current.policyId, globalVersion: command.version } }] : [];
      }
      const policy: Policy = { ...command.policy, managedBy: 'hub', globalVersion: command.version, globalPolicyId: command.globalPolicyId };
      const problems = policyProblems(policy, command.knownRepositories, command.minIntervalMs);
      if (problems.length) throw new PolicyInvalidError(problems);
      return [{ type: current ? 'PolicyUpdated' : 'PolicyCreated', data: policy }];
    }
    case 'create': {
      if (state.policy && !state.deleted) {
        if (JSON.stringify(state.policy) === JSON.stringify(command.policy)) return [];
        throw new PolicyInvalidError([`policy ${command.policy.policyId} exists`], 'conflict');
      }
      const problems = policyProblems(command.policy, command.knownRepositories, command.minIntervalMs);
      if (problems.length) throw new PolicyInvalidError(problems);
      return [{ type: 'PolicyCreated', data: command.policy }];
    }
    case 'update': {
      if (!state.policy || state.deleted) throw new PolicyInvalidError([`policy ${command.policy.policyId} does not exist`], 'not_found');
      const problems = policyProblems(command.policy, command.knownRepositories, command.minIntervalMs);
      if (problems.length) throw new PolicyInvalidError(problems);
      return [{ type: 'PolicyUpdated', data: command.policy }];
    }
    case 'delete':
      if (!state.policy || state.deleted) return [];
      return [{ type: 'PolicyDeleted', data: { policyId: command.policyId } }];
    case 'pause':
    case 'resume': {
      if (!state.policy || state.deleted) throw new PolicyInvalidError([`policy ${command.policyId} does not exist`], 'not_found');
      const pause = command.kind === 'pause';
      // Pausing a paused policy (or resuming a running one) is a no-op: asking twice is safe.
      if (Boolean(state.paused) === pause) return [];
      return [{ type: pause ? 'PolicyPaused' : 'PolicyResumed', data: { policyId: command.policyId } }];
    }
  }
}

export const policyDecider: Decider<PolicyCommand, KnownEvent, PolicyState> = {
  decide: decidePolicy,
  evolve: evolvePolicy,
  initialState: () => ({ policy: null, deleted: false, paused: false }),
};

/** Schedule slots of a policy due in (after, upTo]: each becomes exactly one job per VM. */
export function dueSlots(policy: Policy, after: Date, upTo: Date, max = 100): Date[] {
  return cronSlots(policy.schedule.cron, policy.schedule.timezone, after, upTo, max);
}

/** The slots of a policy's test-restore schedule in (after, upTo], in the policy's time zone (none without one). */
export function dueTestRestoreSlots(policy: Policy, after: Date, upTo: Date, max = 100): Date[] {
  return policy.testRestore ? cronSlots(policy.testRestore.cron, policy.schedule.timezone, after, upTo, max) : [];
}

/** The runs of a cron expression in (after, upTo], at most `max`. */
function cronSlots(expression: string, timezone: string | undefined, after: Date, upTo: Date, max: number): Date[] {
  const cron = new Cron(expression, { timezone, paused: true });
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
