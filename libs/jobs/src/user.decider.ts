// Users and their operator keys (stream `user-<id>`) and API tokens (stream `token-<id>`): the
// deciders the gateway runs. Rules: a user id is taken once; roles and keys change only for a
// user that exists (keys: an enabled one); the last enabled administrator keeps the role and
// stays enabled (how many others there are comes in as context); on a secure site a key, and
// the administrator role, are given only with an administrator's endorsement
// (docs/security.md, "Four-eyes that no single identity completes").
import type { EndorsementValue, KnownEvent, Role } from '@cairn/contracts';
import type { Decider, Draft } from './decider.ts';

type UserEvent = Extract<KnownEvent, { type: 'UserCreated' | 'UserRolesChanged' | 'UserDisabled' | 'UserKeyAdded' | 'UserKeyRevoked' }>;
type TokenEvent = Extract<KnownEvent, { type: 'TokenIssued' | 'TokenRevoked' }>;

export interface UserState {
  readonly exists: boolean;
  readonly userId?: string;
  readonly roles: readonly Role[];
  readonly disabled: boolean;
  readonly keys: readonly string[];
}

export class UserRefused extends Error {
  override readonly name = 'UserRefused';
  constructor(readonly code: 'not_found' | 'conflict' | 'last_administrator' | 'endorsement_required', message: string) {
    super(message);
  }
}

/** Context of a change: whether endorsements are required, and how many other enabled administrators there are. */
export interface UserContext {
  readonly endorsementRequired: boolean;
  readonly otherEnabledAdministrators: number;
}

export type UserCommand =
  | { readonly kind: 'create'; readonly userId: string; readonly roles: readonly Role[]; readonly displayName?: string; readonly endorsement?: EndorsementValue; readonly context: UserContext }
  | { readonly kind: 'setRoles'; readonly roles: readonly Role[]; readonly endorsement?: EndorsementValue; readonly context: UserContext }
  | { readonly kind: 'disable'; readonly reason?: string; readonly context: UserContext }
  | { readonly kind: 'addKey'; readonly publicKey: string; readonly name?: string; readonly endorsement?: EndorsementValue; readonly context: UserContext }
  | { readonly kind: 'revokeKey'; readonly publicKey: string; readonly reason?: string };

const HINT = 'sign it with your operator key through the CLI (cairn user add|roles|key add --operator-key <file>); REST callers without a key cannot (docs/security.md, four-eyes)';

export const userDecider: Decider<UserCommand, UserEvent, UserState> = {
  initialState: () => ({ exists: false, roles: [], disabled: false, keys: [] }),
  evolve(s, e) {
    switch (e.type) {
      case 'UserCreated': return s.exists ? s : { exists: true, userId: e.data.userId, roles: [...e.data.roles], disabled: false, keys: [] };
      case 'UserRolesChanged': return { ...s, roles: [...e.data.roles] };
      case 'UserDisabled': return { ...s, disabled: true };
      case 'UserKeyAdded': return s.keys.includes(e.data.publicKey) ? s : { ...s, keys: [...s.keys, e.data.publicKey] };
      case 'UserKeyRevoked': return { ...s, keys: s.keys.filter((k) => k !== e.data.publicKey) };
      default: return s;
    }
  },
  decide(c, s): Draft<UserEvent>[] {
    if (c.kind === 'create') {
      if (s.exists) throw new UserRefused('conflict', `user ${c.userId} exists`);
      const roles = [...new Set(c.roles)];
      if (roles.includes('administrator') && c.context.endorsementRequired && !c.endorsement) {
        throw new UserRefused('endorsement_required', `making ${c.userId} an administrator needs an administrator's endorsement: ${HINT}`);
      }
      return [{ type: 'UserCreated', data: { userId: c.userId, roles, ...(c.displayName ? { displayName: c.displayName } : {}), ...(c.endorsement ? { endorsement: c.endorsement } : {}) } }];
    }
    if (!s.exists || !s.userId) throw new UserRefused('not_found', 'no such user');
    const userId = s.userId;
    const enabledAdministrator = !s.disabled && s.roles.includes('administrator');
    const last = (what: string) => new UserRefused('last_administrator', `${userId} is the last enabled administrator and cannot ${what}: make another user an administrator first (docs/security.md, Accounts)`);
    switch (c.kind) {
      case 'setRoles': {
        const roles = [...new Set(c.roles)];
        if (!roles.includes('administrator') && enabledAdministrator && c.context.otherEnabledAdministrators === 0) throw last('lose the administrator role');
        if (roles.includes('administrator') && !s.roles.includes('administrator') && c.context.endorsementRequired && !c.endorsement) {
          throw new UserRefused('endorsement_required', `making ${userId} an administrator needs an administrator's endorsement: ${HINT}`);
        }
        return [{ type: 'UserRolesChanged', data: { userId, roles, ...(c.endorsement ? { endorsement: c.endorsement } : {}) } }];
      }
      case 'disable':
        if (enabledAdministrator && c.context.otherEnabledAdministrators === 0) throw last('be disabled');
        return s.disabled ? [] : [{ type: 'UserDisabled', data: { userId, ...(c.reason ? { reason: c.reason } : {}) } }];
      case 'addKey':
        if (s.disabled) throw new UserRefused('conflict', `user ${userId} is disabled`);
        if (s.keys.includes(c.publicKey)) throw new UserRefused('conflict', `user ${userId} has key ${c.publicKey} already`);
        if (c.context.endorsementRequired && !c.endorsement) throw new UserRefused('endorsement_required', `adding an operator key needs an administrator's endorsement: ${HINT}`);
        return [{ type: 'UserKeyAdded', data: { userId, publicKey: c.publicKey, ...(c.name ? { name: c.name } : {}), ...(c.endorsement ? { endorsement: c.endorsement } : {}) } }];
      case 'revokeKey':
        if (!s.keys.includes(c.publicKey)) throw new UserRefused('not_found', `user ${userId} has no current key ${c.publicKey}`);
        return [{ type: 'UserKeyRevoked', data: { userId, publicKey: c.publicKey, ...(c.reason ? { reason: c.reason } : {}) } }];
    }
  },
};

export interface TokenState {
  readonly issued: boolean;
  readonly tokenId?: string;
  readonly userId?: string;
  readonly revoked: boolean;
}

export type TokenCommand =
  | { readonly kind: 'issue'; readonly tokenId: string; readonly userId: string; readonly name: string; readonly tokenSha256: string; readonly expiresAt: string | null; readonly user: UserState }
  | { readonly kind: 'revoke'; readonly reason?: string };

export const tokenDecider: Decider<TokenCommand, TokenEvent, TokenState> = {
  initialState: () => ({ issued: false, revoked: false }),
  evolve(s, e) {
    if (e.type === 'TokenIssued') return s.issued ? s : { issued: true, tokenId: e.data.tokenId, userId: e.data.userId, revoked: false };
    if (e.type === 'TokenRevoked') return { ...s, revoked: true };
    return s;
  },
  decide(c, s): Draft<TokenEvent>[] {
    if (c.kind === 'issue') {
      if (!c.user.exists) throw new UserRefused('not_found', `no user ${c.userId}`);
      if (c.user.disabled) throw new UserRefused('conflict', `user ${c.userId} is disabled`);
      if (s.issued) throw new UserRefused('conflict', `token ${c.tokenId} exists`);
      return [{ type: 'TokenIssued', data: { tokenId: c.tokenId, userId: c.userId, name: c.name, tokenSha256: c.tokenSha256, expiresAt: c.expiresAt } }];
    }
    if (!s.issued || !s.tokenId || !s.userId) throw new UserRefused('not_found', 'no such token');
    return s.revoked ? [] : [{ type: 'TokenRevoked', data: { tokenId: s.tokenId, userId: s.userId, ...(c.reason ? { reason: c.reason } : {}) } }];
  },
};
