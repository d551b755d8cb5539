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
  type Actor, type ApprovalAction, type CairnEvent, type Decider, type EndorsementValue, type EventDataMap, type EventType, type KnownEvent,
  type PersonSignatureValue, type Role,
} from '@cairn/contracts';
import { handleCommand, WrongExpectedRevisionError, type EventLog, type EventSubscription, type Recorded } from '@cairn/eventlog';
import {
  ApprovalRefused, approvalDecider, loadUserRecords, readTrustRoot, tokenDecider, trustedAdministratorKey, trustedUser, userDecider, UserRefused,
  type SignatureCheck, type TrustRoot, type UserRecords,
} from '@cairn/jobs';

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
  /** The key that signed the request (secure sites). */
  readonly requestKey?: string;
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
/** Refused for want of the person's own signature or an administrator's endorsement, or for four-eyes (403). */
export class IdentitySignatureError extends Error {
  override readonly name = 'IdentitySignatureError';
  constructor(readonly code: 'four_eyes' | 'signature_required' | 'bad_signature' | 'endorsement_required', message: string) {
    super(message);
  }
}

/** The store's errors for the deciders' refusals and a lost race. */
function identityError(e: unknown, streamId: string): unknown {
  if (e instanceof WrongExpectedRevisionError) return new IdentityConflictError(`${streamId} changed meanwhile; retry`);
  if (e instanceof UserRefused || e instanceof ApprovalRefused) {
    switch (e.code) {
      case 'not_found': return new IdentityNotFoundError(e.message);
      case 'conflict': return new IdentityConflictError(e.message);
      case 'last_administrator': return new LastAdministratorError(e.message);
      default: return new IdentitySignatureError(e.code, e.message);
    }
  }
  return e;
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
  /** A secure site: approvals need the people's own signatures, keys and administrators endorsements. */
  readonly signatures?: boolean;
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
      const sub = this.o.log.subscribe({ from: 'start', category, fewStreams: true });
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
          ...(e.data.reason ? { reason: e.data.reason } : {}), ...(e.data.signature ? { requestKey: e.data.signature.publicKey } : {}), status: 'pending', revision: r.revision,
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

  /**
   * Decides a command on a stream through its decider and appends what it drafts expecting the
   * revision it decided on (re-reading and deciding again on a conflict, unless `known` is given:
   * then a conflict is the caller's, "changed meanwhile"). The events are applied before returning.
   */
  private async run<C, E extends KnownEvent, S>(
    streamId: string, decider: Decider<C, E, S>, command: C, actor: Actor,
    extra: { causationId?: string; traceparent?: string } = {}, known?: { state: S; revision: bigint },
  ): Promise<readonly CairnEvent[]> {
    let result;
    try {
      result = await handleCommand(this.o.log, streamId, decider, command, {
        meta: { site: this.o.site, actor, ...(extra.causationId ? { causationId: extra.causationId } : {}), ...(extra.traceparent ? { trace: { traceparent: extra.traceparent } } : {}) },
        ...(known ? { known, maxRetries: 0 } : {}),
      });
    } catch (e) {
      throw identityError(e, streamId);
    }
    result.events.forEach((event, i) => {
      this.apply({ event: event as KnownEvent, position: result.position ?? 0n, revision: result.revision - BigInt(result.events.length - 1 - i) } as Recorded);
    });
    return result.events;
  }

  /** Appends a record that no rule governs (security records in `access-<date>`). */
  private async record<K extends EventType>(streamId: string, type: K, data: EventDataMap[K], actor: Actor, traceparent?: string): Promise<void> {
    const event = newEvent(type, data, { site: this.o.site, actor, streamId, ...(traceparent ? { trace: { traceparent } } : {}) });
    await this.o.log.append(streamId, [event], { expectedRevision: 'any' });
  }

  /** What the gateway requires on this site: people's own signatures and endorsements (secure). */
  get signaturesRequired(): boolean {
    return this.o.signatures === true;
  }

  /** Other enabled administrators than `userId`, as recorded (the last-administrator rule). */
  private otherAdministrators(userId: string): number {
    return [...this.users.values()].filter((x) => x.userId !== userId && !x.disabled && x.roles.includes('administrator')).length;
  }

  private context(userId: string, endorsementRequired = this.signaturesRequired) {
    return { endorsementRequired, otherEnabledAdministrators: this.otherAdministrators(userId) };
  }

  /** The trust readers give users and keys: the root and the endorsement chains in the log. */
  async trust(userIds: Iterable<string>): Promise<{ users: UserRecords; root: TrustRoot | null }> {
    return { users: await loadUserRecords(this.o.log, userIds), root: await readTrustRoot(this.o.log) };
  }

  /**
   * Administrators who can sign four-eyes acts (an endorsed role and key), now or before
   * (disabled or demoted since): from two of them on, making another administrator or keying
   * another one is a four-eyes act, so one administrator cannot drop the other and make a new
   * one alone. (An administrator's first key, before they could vote, is not.)
   */
  async trustedAdministrators(): Promise<{ ever: string[]; enabled: string[] }> {
    const candidates = [...this.users.keys()];
    const t = await this.trust(candidates);
    const all = candidates.map((id) => trustedUser(id, t.users, t.root)).filter((u) => u?.everVoter === true);
    return { ever: all.map((u) => u!.userId), enabled: all.filter((u) => u!.administrator && !u!.disabled).map((u) => u!.userId) };
  }

  /** Why `publicKey` is not a trusted key of `userId`, an enabled trusted administrator (undefined: it is). */
  async administratorKeyProblem(userId: string, publicKey: string): Promise<string | undefined> {
    const t = await this.trust([userId]);
    return trustedAdministratorKey(userId, publicKey, t.users, t.root);
  }

  // ---- users and tokens ------------------------------------------------------------------

  async user(userId: string): Promise<UserRecord | undefined> {
    if (!this.users.has(userId)) await this.load(`user-${userId}`);
    return this.users.get(userId);
  }

  /** The user a current operator key belongs to (undefined: none, or more than one). */
  userByKey(publicKey: string): UserRecord | undefined {
    const owners = [...this.users.values()].filter((u) => u.keys.includes(publicKey));
    return owners.length === 1 ? owners[0] : undefined;
  }

  listUsers(): UserRecord[] {
    return [...this.users.values()].sort((a, b) => a.userId.localeCompare(b.userId));
  }

  listTokens(userId?: string): TokenRecord[] {
    return [...this.tokens.values()].filter((t) => !userId || t.userId === userId).sort((a, b) => a.issuedAt.localeCompare(b.issuedAt));
  }

  async createUser(userId: string, roles: readonly Role[], actor: Actor, displayName?: string, endorsement?: EndorsementValue, bootstrap = false): Promise<UserRecord> {
    if (await this.user(userId)) throw new IdentityConflictError(`user ${userId} exists`);
    await this.run(`user-${userId}`, userDecider, {
      kind: 'create', userId, roles, ...(displayName ? { displayName } : {}), ...(endorsement ? { endorsement } : {}), context: this.context(userId, !bootstrap && this.signaturesRequired),
    }, actor);
    return this.users.get(userId)!;
  }

  async setRoles(userId: string, roles: readonly Role[], actor: Actor, endorsement?: EndorsementValue): Promise<UserRecord> {
    return this.serially(async () => {
      const u = await this.user(userId);
      if (!u) throw new IdentityNotFoundError(`no user ${userId}`);
      await this.run(`user-${userId}`, userDecider, { kind: 'setRoles', roles, ...(endorsement ? { endorsement } : {}), context: this.context(userId) }, actor);
      return u;
    });
  }

  async disableUser(userId: string, actor: Actor, reason?: string): Promise<UserRecord> {
    return this.serially(async () => {
      const u = await this.user(userId);
      if (!u) throw new IdentityNotFoundError(`no user ${userId}`);
      await this.run(`user-${userId}`, userDecider, { kind: 'disable', ...(reason ? { reason } : {}), context: this.context(userId) }, actor);
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

  /** Records an operator key (its public half only) for a user (UserKeyAdded). */
  async addKey(userId: string, publicKey: string, actor: Actor, name?: string, endorsement?: EndorsementValue): Promise<UserRecord> {
    const u = await this.user(userId);
    if (!u) throw new IdentityNotFoundError(`no user ${userId}`);
    await this.run(`user-${userId}`, userDecider, { kind: 'addKey', publicKey, ...(name ? { name } : {}), ...(endorsement ? { endorsement } : {}), context: this.context(userId) }, actor);
    return u;
  }

  /** Revokes an operator key (UserKeyRevoked): commands it signs are refused from then on. */
  async revokeKey(userId: string, publicKey: string, actor: Actor, reason?: string): Promise<UserRecord> {
    const u = await this.user(userId);
    if (!u) throw new IdentityNotFoundError(`no user ${userId}`);
    await this.run(`user-${userId}`, userDecider, { kind: 'revokeKey', publicKey, ...(reason ? { reason } : {}) }, actor);
    return u;
  }

  /** Issues a token (returned once; only its hash is recorded). */
  async issueToken(userId: string, name: string, actor: Actor, options: { expiresAt?: Date; token?: string } = {}): Promise<{ token: string; record: TokenRecord }> {
    const u = await this.user(userId);
    if (!u) throw new IdentityNotFoundError(`no user ${userId}`);
    if (u.disabled) throw new IdentityConflictError(`user ${userId} is disabled`);
    const token = options.token ?? newToken();
    const tokenId = tokenIdOf(token);
    await this.run(`token-${tokenId}`, tokenDecider, {
      kind: 'issue', tokenId, userId, name, tokenSha256: sha256(token), expiresAt: options.expiresAt ? options.expiresAt.toISOString() : null,
      user: { exists: true, userId, roles: u.roles, disabled: u.disabled, keys: u.keys },
    }, actor);
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
    await this.run(`token-${tokenId}`, tokenDecider, { kind: 'revoke', ...(reason ? { reason } : {}) }, actor);
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
        await this.createUser(userId, ['administrator'], this.o.serviceActor, 'bootstrap administrator', undefined, true);
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

  async requestApproval(action: ApprovalAction, actor: Actor, reason?: string, traceparent?: string, signed?: { approvalId: string; signature: PersonSignatureValue }): Promise<ApprovalRecord> {
    const approvalId = signed?.approvalId ?? randomUUID();
    const check = await this.signatureCheck(actor.id, signed?.signature);
    await this.run(`approval-${approvalId}`, approvalDecider, {
      kind: 'request', approvalId, action, requestedBy: actor.id, ...(reason ? { reason } : {}), ...(signed ? { signature: signed.signature } : {}), check,
    }, actor, traceparent ? { traceparent } : {});
    return this.approvals.get(approvalId)!;
  }

  private async signatureCheck(userId: string, signature: PersonSignatureValue | undefined): Promise<SignatureCheck> {
    const keyProblem = signature && this.signaturesRequired ? await this.administratorKeyProblem(userId, signature.publicKey) : undefined;
    return { required: this.signaturesRequired, now: new Date(), ...(keyProblem ? { keyProblem } : {}) };
  }

  /** The decider's state of an approval as this request read it (its revision: a concurrent decision makes ours fail). */
  private known(a: ApprovalRecord) {
    return {
      state: { status: a.status === 'pending' ? 'pending' as const : a.status, approvalId: a.approvalId, action: a.action, requestedBy: a.requestedBy, ...(a.requestKey ? { requestKey: a.requestKey } : {}) },
      revision: a.revision,
    };
  }

  /** Records the grant; the caller carries the act out. Four-eyes and signatures are the decider's. */
  async grant(a: ApprovalRecord, actor: Actor, traceparent?: string, signature?: PersonSignatureValue): Promise<void> {
    const check = await this.signatureCheck(actor.id, signature);
    await this.run(`approval-${a.approvalId}`, approvalDecider, { kind: 'grant', approvedBy: actor.id, ...(signature ? { signature } : {}), check }, actor, traceparent ? { traceparent } : {}, this.known(a));
  }

  async reject(a: ApprovalRecord, actor: Actor, reason?: string, traceparent?: string, signature?: PersonSignatureValue): Promise<void> {
    const check = await this.signatureCheck(actor.id, signature);
    await this.run(`approval-${a.approvalId}`, approvalDecider, { kind: 'reject', rejectedBy: actor.id, ...(reason ? { reason } : {}), ...(signature ? { signature } : {}), check }, actor, traceparent ? { traceparent } : {}, this.known(a));
  }

  async executed(a: ApprovalRecord, outcome: 'done' | 'failed', actor: Actor, detail?: string): Promise<void> {
    await this.run(`approval-${a.approvalId}`, approvalDecider, { kind: 'executed', outcome, ...(detail ? { detail } : {}) }, actor);
  }

  // ---- security events -------------------------------------------------------------------

  /** SignedIn / AccessDenied / AuthFailed / AccessRecovered, in the day's `access-<date>` stream. */
  async recordAccess<K extends 'SignedIn' | 'AccessDenied' | 'AuthFailed' | 'AccessRecovered'>(type: K, data: EventDataMap[K], actor: Actor, traceparent?: string): Promise<void> {
    const day = new Date().toISOString().slice(0, 10);
    await this.record(`access-${day}`, type, data, actor, traceparent);
  }
}
