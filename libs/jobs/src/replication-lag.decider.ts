// Replication lag watch: one stream per policy and target (`repllag-<policyId>-<target>`) as a
// decider. Each check carries the restore points in the policy's scope that are not at the
// target yet, the allowed lag and the time; when the oldest of them is older than the allowed
// lag it raises ReplicationBehind once, and ReplicationCaughtUp once when it no longer is.
// Pure: the time and what is at the target come in with the command.
import type { KnownEvent, ReplicationPolicy } from '@cairn/contracts';
import type { Decider, Draft } from './decider.ts';

export interface ReplicationLagState {
  readonly behind: boolean;
}

export interface UnreplicatedPoint {
  readonly restorePointId: string;
  readonly vmId: string;
  readonly committedAt: string;
}

export interface ReplicationLagCheck {
  readonly kind: 'check';
  readonly policyId: string;
  readonly sourceSite: string;
  readonly targetSite: string;
  readonly maxLagMinutes: number;
  /** Restore points in scope not (known to be) at the target. */
  readonly unreplicated: readonly UnreplicatedPoint[];
  readonly now: Date;
}

export const replicationLagStreamId = (policyId: string, target: string) => `repllag-${policyId}-${target}`;

/** A policy's allowed lag, or its default: after-backup delay + 60 min; schedule 2 × interval + 60 min; cron 26 h. */
export function replicationMaxLagMinutes(p: Pick<ReplicationPolicy, 'maxLagMinutes' | 'trigger' | 'delayMs'>): number {
  if (p.maxLagMinutes) return p.maxLagMinutes;
  switch (p.trigger.kind) {
    case 'after-backup': return Math.ceil(p.delayMs / 60_000) + 60;
    case 'schedule': return Math.ceil((2 * p.trigger.everyMs) / 60_000) + 60;
    case 'cron': return 26 * 60;
  }
}

export const replicationLagDecider: Decider<ReplicationLagCheck, KnownEvent, ReplicationLagState> = {
  initialState: () => ({ behind: false }),
  evolve(state, event) {
    if (event.type === 'ReplicationBehind') return { behind: true };
    if (event.type === 'ReplicationCaughtUp') return { behind: false };
    return state;
  },
  decide(c, state): readonly Draft[] {
    const sorted = [...c.unreplicated].sort((a, b) => Date.parse(a.committedAt) - Date.parse(b.committedAt));
    const oldest = sorted[0];
    const newest = sorted[sorted.length - 1];
    const lagMs = oldest ? c.now.getTime() - Date.parse(oldest.committedAt) : 0;
    const over = lagMs > c.maxLagMinutes * 60_000;
    const ids = { policyId: c.policyId, sourceSite: c.sourceSite, targetSite: c.targetSite };
    if (over && !state.behind && oldest && newest) {
      return [{ type: 'ReplicationBehind', data: {
        ...ids, maxLagMinutes: c.maxLagMinutes, lagMinutes: Math.floor(lagMs / 60_000), unreplicated: sorted.length, oldestUnreplicated: oldest, newestUnreplicated: newest,
      } }];
    }
    if (!over && state.behind) return [{ type: 'ReplicationCaughtUp', data: { ...ids, unreplicated: sorted.length } }];
    return [];
  },
};
