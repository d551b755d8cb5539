// A restore point's own stream (`restorepoint-<id>`) as a decider: retention expiry is a
// decision on it, not a raw append. A point already expired or deleted is not expired again;
// a locked one is not expired before its lock ends (the next retention run considers it again).
// A lock is recorded when it holds longer than the longest one recorded (locks only extend).
// A verify that finds damage records it here too (once per verify, not on a point gone).
// A four-eyes deletion is recorded once (the data mover, after it checked the approval).
// Pure: the time comes in with the command.
import type { EventDataMap, KnownEvent } from '@cairn/contracts';
import type { Decider, Draft } from './decider.ts';

export interface RestorePointState {
  readonly gone: boolean;
  /** The approval whose deletion is recorded, once one is. */
  readonly deletedBy?: string;
  /** The verify that last found it damaged. */
  readonly damagedBy?: string;
  /** End of the longest lock recorded (ms since the epoch; 0 when never locked). */
  readonly lockedUntil: number;
}

export type RestorePointCommand =
  | { readonly kind: 'expire'; readonly data: EventDataMap['RestorePointExpired']; readonly now: Date }
  | { readonly kind: 'recordLock'; readonly data: EventDataMap['RestorePointLocked'] }
  /** A verify found damaged objects it uses (not recorded for a point gone, nor twice by one verify). */
  | { readonly kind: 'damaged'; readonly data: EventDataMap['RestorePointDamaged'] }
  /** A four-eyes deletion carried out (recorded once, also for a point retention expired before). */
  | { readonly kind: 'delete'; readonly data: EventDataMap['RestorePointDeleted'] };

export const restorePointDecider: Decider<RestorePointCommand, KnownEvent, RestorePointState> = {
  initialState: () => ({ gone: false, lockedUntil: 0 }),
  evolve(state, event) {
    switch (event.type) {
      case 'RestorePointExpired':
        return { ...state, gone: true };
      case 'RestorePointDeleted':
        return { ...state, gone: true, deletedBy: event.data.approvalId };
      case 'RestorePointDamaged':
        return { ...state, damagedBy: event.data.verifyId };
      case 'RestorePointLocked':
        return { ...state, lockedUntil: Math.max(state.lockedUntil, Date.parse(event.data.retainUntil)) };
      default:
        return state;
    }
  },
  decide(command, state): readonly Draft[] {
    if (command.kind === 'delete') {
      return state.deletedBy === undefined ? [{ type: 'RestorePointDeleted', data: command.data }] : [];
    }
    if (command.kind === 'damaged') {
      if (state.gone || state.damagedBy === command.data.verifyId) return [];
      return [{ type: 'RestorePointDamaged', data: command.data }];
    }
    if (command.kind === 'recordLock') {
      return Date.parse(command.data.retainUntil) > state.lockedUntil ? [{ type: 'RestorePointLocked', data: command.data }] : [];
    }
    if (state.gone || state.lockedUntil > command.now.getTime()) return [];
    return [{ type: 'RestorePointExpired', data: command.data }];
  },
};
