// The gateway's users, tokens and four-eyes approvals, event-sourced in the site's log
// (streams `user-<id>`, `token-<id>`, `approval-<id>`) and projected here. Tokens are kept as
// SHA-256 only; a token's id is the first 24 hex digits of its hash, so a presented token is
// found without a scan. What decides (authentication, approving) reads the stream itself when
// the projection does not know it yet, so a fresh gateway never refuses a valid token, and an
// event written by this gateway is applied before its request is answered: a revoked token
// stops working at once. Other gateways learn it from their subscription.
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import {
  newEvent, ROLES,
  type Actor, type ApprovalAction, type CairnEvent, type EventDataMap, type EventType, type KnownEvent, type Role,
} from '@cairn/contracts';
import type { EventLog, EventSubscription, Recorded } from '@cairn/eventlog';

export interface UserRecord {
  readonly userId: string;
  roles: Role[];
  disabled: boolean;
  /** Current operator keys (public): what may sign this user's commands over NATS. */
  keys: string[];
  readonly displayName?: string;
  readonly createdAt: string;
  readonly createdBy: string;
}

export interface TokenRecord {
  readonly tokenId: string;
  readonly userId: string;
  readonly name: string;
  readonly sha256: string;
  readonly expiresAt: string | null;
  readonly issuedAt: string;
  readonly issuedBy: string;
  revoked: boolean;
  revokedAt?: string;
  revokedBy?: string;
}

export type ApprovalStatus = 'pending' | 'approved' | 'rejected' | 'done' | 'failed';

export interface ApprovalRecord {
  readonly approvalId: string;
  readonly action: ApprovalAction;
  readonly requestedBy: string;
  readonly requestedAt: string;
  readonly reason?: string;
  status: ApprovalStatus;
  approvedBy?: string;
  rejectedBy?: string;
  decidedAt?: string;
  detail?: string;
  /** Revision of the approval stream's last event (for optimistic appends). */
  revision: bigint;
}

/** Who a request is from, once its credential checked out. */
export interface Principal {
  readonly actor: { kind: 'user'; id: string };
  readonly roles: readonly Role[];
  readonly method: 'token' | 'oidc';
  readonly tokenId?: string;
  readonly issuer?: string;
}

export type AuthFailure = 'unknown' | 'revoked' | 'expired' | 'user-disabled' | 'no-user';

export class IdentityConflictError extends Error {
  override readonly name = 'IdentityConflictError';
}
/** Refused: the change would leave the site without an enabled administrator. */
export class LastAdministratorError extends Error {
  override readonly name = 'LastAdministratorError';
}
export class IdentityNotFoundError extends Error {
  override readonly name = 'IdentityNotFoundError';
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
/** A token's id: the first 24 hex digits of its SHA-256. */
export const tokenIdOf = (token: string) => sha256(token).slice(0, 24);
/** A new API token: `cairn_` and 256 random bits. */
export const newToken = () => `cairn_${randomBytes(32).toString('base64url')}`;

const CATEGORIES = ['user', 'token', 'approval'] as const;

export interface IdentityStoreOptions {
  readonly log: EventLog;
  readonly site: string;
  /** The actor of what the gateway records on its own (bootstrap). */
  readonly serviceActor: Actor;
  readonly onError?: (e: unknown) => void;
}

export class IdentityStore {
  private readonly users = new Map<string, UserRecord>();
  private readonly tokens = new Map<string, TokenRecord>();
  private readonly approvals = new Map<string, ApprovalRecord>();
  private readonly revisions = new Map<string, bigint>();
  /** Token ids looked up in the log and not found: not read again until their TokenIssued arrives. */
  private readonly unknownTokens = new Set<string>();
  private readonly subscriptions: EventSubscription[] = [];

  constructor(private readonly o: IdentityStoreOptions) {}

  /** Follows the user, token and approval streams of the log (history first). */
  start(): void {
    for (const category of CATEGORIES) {
      const sub = this.o.log.subscribe({ from: 'start', category });
      this.subscriptions.push(sub);
      void (async () => {
        try {
          for await (const r of sub) this.apply(r);
        } catch (e) {
          this.o.onError?.(e);
        }
      })();
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.subscriptions.map((s) => s.stop().catch(() => undefined)));
  }

  // ---- projection ------------------------------------------------------------------------

  /** Applies one recorded event once (by stream revision); other events are ignored. */
  apply(r: Recorded): void {
    const e = r.event as KnownEvent;
    if (e.site !== this.o.site) return;
    const seen = this.revisions.get(e.streamId);
    if (r.revision >= 0n && seen !== undefined && r.revision <= seen) return;
    if (r.revision >= 0n) this.revisions.set(e.streamId, r.revision);
    const by = e.actor.id;
    switch (e.type) {
      case 'UserCreated':
        this.users.set(e.data.userId, {
          userId: e.data.userId, roles: [...e.data.roles], disabled: false, keys: [], createdAt: e.time, createdBy: by,
          ...(e.data.displayName ? { displayName: e.data.displayName } : {}),
        });
        break;
      case 'UserRolesChanged': {
        const u = this.users.get(e.data.userId);
        if (u) u.roles = [...e.data.roles];
        break;
      }
      case 'UserDisabled': {
        const u = this.users.get(e.data.userId);
        if (u) u.disabled = true;
        break;
      }
      case 'UserKeyAdded': {
        const u = this.users.get(e.data.userId);
        if (u && !u.keys.includes(e.data.publicKey)) u.keys.push(e.data.publicKey);
        break;
      }
      case 'UserKeyRevoked': {
        const u = this.users.get(e.data.userId);
        if (u) u.keys = u.keys.filter((k) => k !== e.data.publicKey);
        break;
      }
      case 'TokenIssued':
        this.unknownTokens.delete(e.data.tokenId);
        this.tokens.set(e.data.tokenId, {
          tokenId: e.data.tokenId, userId: e.data.userId, name: e.data.name, sha256: e.data.tokenSha256,
          expiresAt: e.data.expiresAt, issuedAt: e.time, issuedBy: by, revoked: false,
        });
        break;
      case 'TokenRevoked': {
        const t = this.tokens.get(e.data.tokenId);
        if (t) Object.assign(t, { revoked: true, revokedAt: e.time, revokedBy: by });
        break;
      }
      case 'ApprovalRequested':
        this.approvals.set(e.data.approvalId, {
          approvalId: e.data.approvalId, action: e.data.action, requestedBy: e.data.requestedBy, requestedAt: e.time,
          ...(e.data.reason ? { reason: e.data.reason } : {}), status: 'pending', revision: r.revision,
        });
        break;
      case 'ApprovalGranted':
      case 'ApprovalRejected':
      case 'ApprovalExecuted': {
        const a = this.approvals.get(e.data.approvalId);
        if (!a) break;
        a.revision = r.revision;
        if (e.type === 'ApprovalGranted') Object.assign(a, { status: 'approved', approvedBy: e.data.approvedBy, decidedAt: e.time });
        else if (e.type === 'ApprovalRejected') Object.assign(a, { status: 'rejected', rejectedBy: e.data.rejectedBy, decidedAt: e.time, ...(e.data.reason ? { detail: e.data.reason } : {}) });
        else Object.assign(a, { status: e.data.outcome, ...(e.data.detail ? { detail: e.data.detail } : {}) });
        break;
      }
      default:
        break;
    }
  }

  /** Reads a stream into the projection (what the subscription may not have delivered yet). */
  private async load(streamId: string): Promise<void> {
    for await (const r of this.o.log.readStream(streamId)) this.apply(r);
  }

  private async append<K extends EventType>(streamId: string, type: K, data: EventDataMap[K], actor: Actor, expectedRevision: bigint | 'no_stream' | 'any', extra: { causationId?: string; traceparent?: string } = {}): Promise<CairnEvent> {
    const event = newEvent(type, data, {
      site: this.o.site, actor, streamId,
      ...(extra.causationId ? { causationId: extra.causationId } : {}),
      ...(extra.traceparent ? { trace: { traceparent: extra.traceparent } } : {}),
    });
    let result;
    try {
      result = await this.o.log.append(streamId, [event], { expectedRevision });
    } catch (e) {
      if ((e as Error).name === 'WrongExpectedRevisionError') throw new IdentityConflictError(`${streamId} changed meanwhile; retry`);
      throw e;
    }
    this.apply({ event: event as KnownEvent, position: result.position, revision: result.nextRevision } as Recorded);
    return event;
  }

  // ---- users and tokens ------------------------------------------------------------------

  async user(userId: string): Promise<UserRecord | undefined> {
    if (!this.users.has(userId)) await this.load(`user-${userId}`);
    return this.users.get(userId);
  }

  listUsers(): UserRecord[] {
    return [...this.users.values()].sort((a, b) => a.userId.localeCompare(b.userId));
  }

  listTokens(userId?: string): TokenRecord[] {
    return [...this.tokens.values()].filter((t) => !userId || t.userId === userId).sort((a, b) => a.issuedAt.localeCompare(b.issuedAt));
  }

  async createUser(userId: string, roles: readonly Role[], actor: Actor, displayName?: string): Promise<UserRecord> {
    if (await this.user(userId)) throw new IdentityConflictError(`user ${userId} exists`);
    await this.append(`user-${userId}`, 'UserCreated', { userId, roles: [...new Set(roles)], ...(displayName ? { displayName } : {}) }, actor, 'no_stream');
    return this.users.get(userId)!;
  }

  async setRoles(userId: string, roles: readonly Role[], actor: Actor): Promise<UserRecord> {
    return this.serially(async () => {
      const u = await this.user(userId);
      if (!u) throw new IdentityNotFoundError(`no user ${userId}`);
      if (!roles.includes('administrator')) this.keepAnAdministrator(u, 'lose the administrator role');
      await this.append(`user-${userId}`, 'UserRolesChanged', { userId, roles: [...new Set(roles)] }, actor, 'any');
      return u;
    });
  }

  async disableUser(userId: string, actor: Actor, reason?: string): Promise<UserRecord> {
    return this.serially(async () => {
      const u = await this.user(userId);
      if (!u) throw new IdentityNotFoundError(`no user ${userId}`);
      this.keepAnAdministrator(u, 'be disabled');
      if (!u.disabled) await this.append(`user-${userId}`, 'UserDisabled', { userId, ...(reason ? { reason } : {}) }, actor, 'any');
      return u;
    });
  }

  /** Changes to roles and enabled state, one at a time (the last-administrator rule reads them all). */
  private chain: Promise<unknown> = Promise.resolve();
  private serially<T>(f: () => Promise<T>): Promise<T> {
    const run = this.chain.then(f, f);
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** A site keeps at least one enabled administrator: else nobody could manage it any more. */
  private keepAnAdministrator(u: UserRecord, what: string): void {
    if (u.disabled || !u.roles.includes('administrator')) return;
    const others = [...this.users.values()].filter((x) => x.userId !== u.userId && !x.disabled && x.roles.includes('administrator'));
    if (others.length === 0) {
      throw new LastAdministratorError(`${u.userId} is the last enabled administrator and cannot ${what}: make another user an administrator first (docs/security.md, Accounts)`);
    }
  }

  /** Records an operator key (its public half only) for a user (UserKeyAdded). */
  async addKey(userId: string, publicKey: string, actor: Actor, name?: string): Promise<UserRecord> {
    const u = await this.user(userId);
    if (!u) throw new IdentityNotFoundError(`no user ${userId}`);
    if (u.disabled) throw new IdentityConflictError(`user ${userId} is disabled`);
    if (u.keys.includes(publicKey)) throw new IdentityConflictError(`user ${userId} has key ${publicKey} already`);
    await this.append(`user-${userId}`, 'UserKeyAdded', { userId, publicKey, ...(name ? { name } : {}) }, actor, 'any');
    return u;
  }

  /** Revokes an operator key (UserKeyRevoked): commands it signs are refused from then on. */
  async revokeKey(userId: string, publicKey: string, actor: Actor, reason?: string): Promise<UserRecord> {
    const u = await this.user(userId);
    if (!u) throw new IdentityNotFoundError(`no user ${userId}`);
    if (!u.keys.includes(publicKey)) throw new IdentityNotFoundError(`user ${userId} has no current key ${publicKey}`);
    await this.append(`user-${userId}`, 'UserKeyRevoked', { userId, publicKey, ...(reason ? { reason } : {}) }, actor, 'any');
    return u;
  }

  /** Issues a token (returned once; only its hash is recorded). */
  async issueToken(userId: string, name: string, actor: Actor, options: { expiresAt?: Date; token?: string } = {}): Promise<{ token: string; record: TokenRecord }> {
    const u = await this.user(userId);
    if (!u) throw new IdentityNotFoundError(`no user ${userId}`);
    if (u.disabled) throw new IdentityConflictError(`user ${userId} is disabled`);
    const token = options.token ?? newToken();
    const tokenId = tokenIdOf(token);
    await this.append(`token-${tokenId}`, 'TokenIssued', {
      tokenId, userId, name, tokenSha256: sha256(token), expiresAt: options.expiresAt ? options.expiresAt.toISOString() : null,
    }, actor, 'no_stream');
    return { token, record: this.tokens.get(tokenId)! };
  }

  async token(tokenId: string): Promise<TokenRecord | undefined> {
    if (!this.tokens.has(tokenId) && !this.unknownTokens.has(tokenId)) {
      await this.load(`token-${tokenId}`);
      if (!this.tokens.has(tokenId)) {
        // Guessing tokens costs the guesser a request and the log nothing after the first miss.
        if (this.unknownTokens.size >= 10_000) this.unknownTokens.clear();
        this.unknownTokens.add(tokenId);
      }
    }
    return this.tokens.get(tokenId);
  }

  async revokeToken(tokenId: string, actor: Actor, reason?: string): Promise<TokenRecord> {
    const t = await this.token(tokenId);
    if (!t) throw new IdentityNotFoundError(`no token ${tokenId}`);
    if (!t.revoked) await this.append(`token-${tokenId}`, 'TokenRevoked', { tokenId, userId: t.userId, ...(reason ? { reason } : {}) }, actor, 'any');
    return t;
  }

  /** Checks a presented API token: the principal, or why not. */
  /** Whose token this is, when it is one this site issued (revoked or expired included). */
  async tokenOwner(token: string): Promise<string | undefined> {
    const t = await this.token(tokenIdOf(token));
    return t && timingSafeEqual(Buffer.from(sha256(token), 'hex'), Buffer.from(t.sha256, 'hex')) ? t.userId : undefined;
  }

  async authenticate(token: string, now = new Date()): Promise<Principal | AuthFailure> {
    const tokenId = tokenIdOf(token);
    const t = await this.token(tokenId);
    if (!t) return 'unknown';
    if (!timingSafeEqual(Buffer.from(sha256(token), 'hex'), Buffer.from(t.sha256, 'hex'))) return 'unknown';
    if (t.revoked) return 'revoked';
    if (t.expiresAt && Date.parse(t.expiresAt) <= now.getTime()) return 'expired';
    const u = await this.user(t.userId);
    if (!u) return 'no-user';
    if (u.disabled) return 'user-disabled';
    return { actor: { kind: 'user', id: u.userId }, roles: u.roles.filter((r) => ROLES.includes(r)), method: 'token', tokenId };
  }

  /**
   * `cairn up`'s administrator: the user (administrator) and its token, recorded once. A token
   * revoked since is left revoked; a user that exists keeps its roles.
   */
  async ensureBootstrap(userId: string, token: string): Promise<'created' | 'present' | 'revoked'> {
    let created = false;
    if (!(await this.user(userId))) {
      try {
        await this.createUser(userId, ['administrator'], this.o.serviceActor, 'bootstrap administrator');
        created = true;
      } catch (e) {
        if (!(e instanceof IdentityConflictError)) throw e;
      }
    }
    const t = await this.token(tokenIdOf(token));
    if (!t) {
      try {
        await this.issueToken(userId, 'bootstrap', this.o.serviceActor, { token });
        return 'created';
      } catch (e) {
        if (!(e instanceof IdentityConflictError)) throw e;
      }
    }
    return t?.revoked ? 'revoked' : created ? 'created' : 'present';
  }

  // ---- four-eyes approvals ---------------------------------------------------------------

  async approval(approvalId: string, fresh = false): Promise<ApprovalRecord | undefined> {
    if (fresh || !this.approvals.has(approvalId)) await this.load(`approval-${approvalId}`);
    return this.approvals.get(approvalId);
  }

  listApprovals(status?: ApprovalStatus): ApprovalRecord[] {
    return [...this.approvals.values()].filter((a) => !status || a.status === status).sort((a, b) => b.requestedAt.localeCompare(a.requestedAt));
  }

  async requestApproval(action: ApprovalAction, actor: Actor, reason?: string, traceparent?: string): Promise<ApprovalRecord> {
    const approvalId = randomUUID();
    await this.append(`approval-${approvalId}`, 'ApprovalRequested', { approvalId, action, requestedBy: actor.id, ...(reason ? { reason } : {}) }, actor, 'no_stream', traceparent ? { traceparent } : {});
    return this.approvals.get(approvalId)!;
  }

  /** Records the grant; the caller checked that `actor` is not the requester and carries the act out. */
  async grant(a: ApprovalRecord, actor: Actor, traceparent?: string): Promise<void> {
    await this.append(`approval-${a.approvalId}`, 'ApprovalGranted', { approvalId: a.approvalId, approvedBy: actor.id }, actor, a.revision, traceparent ? { traceparent } : {});
  }

  async reject(a: ApprovalRecord, actor: Actor, reason?: string, traceparent?: string): Promise<void> {
    await this.append(`approval-${a.approvalId}`, 'ApprovalRejected', { approvalId: a.approvalId, rejectedBy: actor.id, ...(reason ? { reason } : {}) }, actor, a.revision, traceparent ? { traceparent } : {});
  }

  async executed(a: ApprovalRecord, outcome: 'done' | 'failed', actor: Actor, detail?: string): Promise<void> {
    await this.append(`approval-${a.approvalId}`, 'ApprovalExecuted', { approvalId: a.approvalId, outcome, ...(detail ? { detail: detail.slice(0, 4096) } : {}) }, actor, 'any');
  }

  // ---- security events -------------------------------------------------------------------

  /** SignedIn / AccessDenied / AuthFailed / AccessRecovered, in the day's `access-<date>` stream. */
  async recordAccess<K extends 'SignedIn' | 'AccessDenied' | 'AuthFailed' | 'AccessRecovered'>(type: K, data: EventDataMap[K], actor: Actor, traceparent?: string): Promise<void> {
    const day = new Date().toISOString().slice(0, 10);
    await this.append(`access-${day}`, type, data, actor, 'any', traceparent ? { traceparent } : {});
  }
}
