// Expiry watch: a credential's own stream `expiry-<kind>-<id>` as a decider. Each check carries
// the credential's expiry, how long before it to warn, and the time; within the warning time it
// raises CredentialExpiring once per expiry time (renewed with a later one, it warns again).
// Pure: the time comes in with the command.
import type { KnownEvent } from '@cairn/contracts';
import type { Decider, Draft } from './decider.ts';

export interface ExpiryState {
  /** The expiry times already warned of. */
  readonly warned: ReadonlySet<string>;
}

export interface ExpiryCheck {
  readonly kind: 'check';
  readonly credential: 'api-token' | 'certificate';
  readonly id: string;
  readonly owner: string;
  readonly name: string;
  readonly expiresAt: string;
  readonly warnDays: number;
  readonly now: Date;
}

export const expiryStreamId = (credential: string, id: string) => `expiry-${credential}-${id}`;

export const expiryDecider: Decider<ExpiryCheck, KnownEvent, ExpiryState> = {
  initialState: () => ({ warned: new Set() }),
  evolve(state, event) {
    return event.type === 'CredentialExpiring' ? { warned: new Set([...state.warned, event.data.expiresAt]) } : state;
  },
  decide(c, state): readonly Draft[] {
    const left = Date.parse(c.expiresAt) - c.now.getTime();
    if (left > c.warnDays * 86_400_000 || state.warned.has(c.expiresAt)) return [];
    return [{ type: 'CredentialExpiring', data: {
      credential: c.credential, id: c.id, owner: c.owner, name: c.name, expiresAt: c.expiresAt, daysLeft: Math.max(0, Math.floor(left / 86_400_000)),
    } }];
  },
};
