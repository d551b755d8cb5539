// Digests, pure: notices for one route collect into a group that is sent as one message once
// the storm has been quiet for `groupWait` (or has gone on for `maxGroupWait`), and never
// sooner than `interval` after the route's previous message. 1,000 failed jobs in a minute
// are one message, not 1,000. Times are milliseconds on a clock the caller passes in.
import type { DigestSettings } from '@cairn/contracts';
import type { Notice } from './notice.ts';

/** Most notices a message lists; the others are counted. */
export const LISTED_NOTICES = 50;

export interface DigestTimes {
  readonly groupWaitMs: number;
  readonly maxGroupWaitMs: number;
  readonly intervalMs: number;
}

export function digestTimes(s: DigestSettings | undefined): DigestTimes {
  const groupWaitMs = (s?.groupWaitSeconds ?? 30) * 1000;
  return {
    groupWaitMs,
    maxGroupWaitMs: Math.max(groupWaitMs, (s?.maxGroupWaitSeconds ?? 300) * 1000),
    intervalMs: (s?.intervalMinutes ?? 60) * 60_000,
  };
}

export interface Group {
  /** The first notices, in log order (at most LISTED_NOTICES). */
  readonly listed: readonly Notice[];
  readonly count: number;
  /** Counts per kind. */
  readonly kinds: Readonly<Record<string, number>>;
  readonly firstPosition: bigint;
  readonly lastPosition: bigint;
  readonly firstAt: number;
  readonly lastAt: number;
}

export function addToGroup(group: Group | undefined, notice: Notice, now: number): Group {
  const position = BigInt(notice.position);
  if (!group) return { listed: [notice], count: 1, kinds: { [notice.kind]: 1 }, firstPosition: position, lastPosition: position, firstAt: now, lastAt: now };
  return {
    listed: group.listed.length < LISTED_NOTICES ? [...group.listed, notice] : group.listed,
    count: group.count + 1,
    kinds: { ...group.kinds, [notice.kind]: (group.kinds[notice.kind] ?? 0) + 1 },
    firstPosition: group.firstPosition,
    lastPosition: position,
    firstAt: group.firstAt,
    lastAt: now,
  };
}

/** When the group is to be sent; a test notice goes at once. */
export function dueAt(group: Group, lastSentAt: number | undefined, t: DigestTimes): number {
  if (group.listed.every((n) => n.kind === 'test')) return group.firstAt;
  const quiet = Math.min(group.lastAt + t.groupWaitMs, group.firstAt + t.maxGroupWaitMs);
  return lastSentAt === undefined ? quiet : Math.max(quiet, lastSentAt + t.intervalMs);
}
