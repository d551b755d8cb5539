// A restore point's own stream (`restorepoint-<id>`) as a decider: retention expiry is a
// decision on it, not a raw append. A point already expired or deleted is not expired again;
// a locked one is not expired before its lock ends (the next retention run considers it again).
// A lock is recorded when it holds longer than the longest one recorded (locks only extend).
// Pure: the time comes in with the command.
import type { EventDataMap, KnownEvent } from '@cairn/contracts';
import type { Decider, Draft } from './decider.ts';

export interface RestorePointState {
  readonly gone: boolean;
  /** End of the longest lock recorded (ms since the epoch; 0 when never locked). */
  readonly lockedUntil: number;
}

export type RestorePointCommand =
  | { readonly kind: 'expire'; readonly data: EventDataMap['RestorePointExpired']; readonly now: Date }
  | { readonly kind: 'recordLock'; readonly data: EventDataMap['RestorePointLocked'] };

export const restorePointDecider: Decider<RestorePointCommand, KnownEvent, RestorePointState> = {
  initialState: () => ({ gone: false, lockedUntil: 0 }),
  evolve(state, event) {
    switch (event.type) {
      case 'RestorePointExpired':
      case 'RestorePointDeleted':
        return { ...state, gone: true };
      case 'RestorePointLocked':
        return { ...state, lockedUntil: Math.max(state.lockedUntil, Date.parse(event.data.retainUntil)) };
      default:
        return state;
    }
  },
  decide(command, state): readonly Draft[] {
    if (command.kind === 'recordLock') {
      return Date.parse(command.data.retainUntil) > state.lockedUntil ? [{ type: 'RestorePointLocked', data: command.data }] : [];
    }
    if (state.gone || state.lockedUntil > command.now.getTime()) return [];
    return [{ type: 'RestorePointExpired', data: command.data }];
  },
};
