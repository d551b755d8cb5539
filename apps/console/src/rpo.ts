// Recovery point objectives on the dashboard: each VM against the policies that select it, by
// the same rules as the scheduler's RPO watch (libs/jobs rpo.decider.ts, policy.decider.ts
// `selects` and `policyRpoMinutes`): a policy's own `rpoMinutes`, else the longest gap between
// two of its next 60 slots plus 2 h; a VM is within when its newest backup is younger than the
// shortest RPO of its policies (never backed up: counted from the policy's creation).
import { Cron } from 'croner';
import type { Policy, Vm } from './api.ts';

export function selects(policy: Policy, vm: Pick<Vm, 'name' | 'tags' | 'hypervisor'>): boolean {
  const s = policy.selector;
  if (s.hypervisor && s.hypervisor !== vm.hypervisor.host) return false;
  if (s.names?.length && !s.names.includes(vm.name)) return false;
  if (s.tags?.length && !s.tags.every((t) => vm.tags.includes(t))) return false;
  return Boolean(s.names?.length || s.tags?.length || s.hypervisor);
}

export function rpoMinutesOf(policy: Policy, now: Date): number {
  if (policy.rpoMinutes) return policy.rpoMinutes;
  let gap = 24 * 60;
  try {
    const cron = new Cron(policy.schedule.cron, { timezone: policy.schedule.timezone, paused: true });
    const upTo = now.getTime() + 400 * 86_400_000;
    const slots: number[] = [];
    let cursor = now;
    while (slots.length < 60) {
      const next = cron.nextRun(cursor);
      if (!next || next.getTime() > upTo) break;
      slots.push(next.getTime());
      cursor = next;
    }
    if (slots.length >= 2) {
      gap = 0;
      for (let i = 1; i < slots.length; i++) gap = Math.max(gap, (slots[i]! - slots[i - 1]!) / 60_000);
    }
  } catch { /* an unreadable schedule: the default gap */ }
  return Math.ceil(gap) + 120;
}

export interface VmRpo { vmId: string; name: string; rpoMinutes: number | null; within: boolean | null; policy: string | null; since: string | null }

/** Each VM's RPO and whether it is met now (`null` for a VM that no active policy selects). */
export function rpoOfVms(vms: readonly Vm[], policies: readonly Policy[], now: Date): VmRpo[] {
  const active = policies.filter((p) => !p.deletedAt && !p.pausedAt);
  return vms.map((vm) => {
    let best: { policy: Policy; minutes: number } | undefined;
    for (const p of active) {
      if (!selects(p, vm)) continue;
      const minutes = rpoMinutesOf(p, now);
      if (!best || minutes < best.minutes) best = { policy: p, minutes };
    }
    if (!best) return { vmId: vm.vmId, name: vm.name, rpoMinutes: null, within: null, policy: null, since: vm.lastBackupAt };
    const since = vm.lastBackupAt ?? best.policy.createdAt ?? null;
    const within = since !== null && now.getTime() - Date.parse(since) <= best.minutes * 60_000;
    return { vmId: vm.vmId, name: vm.name, rpoMinutes: best.minutes, within, policy: best.policy.name, since: vm.lastBackupAt };
  });
}

/** "90 min", "6 h", "2 d". */
export function minutesInWords(m: number): string {
  if (m < 120) return `${m} min`;
  if (m < 48 * 60) return `${Math.round(m / 6) / 10} h`.replace('.0 h', ' h');
  return `${Math.round(m / 144) / 10} d`.replace('.0 d', ' d');
}
