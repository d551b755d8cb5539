// Users, API tokens and four-eyes approvals. Creating users and tokens, revoking, and asking
// for or deciding on a destructive act need the admin permission (administrators); reading
// them needs read (every role). A destructive act (deleting a restore point, ...) is never
// done by one request: it becomes an approval request that a second administrator approves,
// and only then is it carried out, with both acts in the log.
import { Controller, Inject, Res } from '@nestjs/common';
import type { ApprovalAction, EndorsementValue, PersonSignatureValue, Role } from '@cairn/contracts';
import { pageOf } from '@cairn/catalogue-client';
import { GatewayService } from './gateway.service.ts';
import { CallerOf, Input, Route, type Caller } from './route.decorator.ts';
import {
  AddUserKeyBody, UserKeyParams, ApprovalParams, ApprovalView, CreateApprovalBody, CreateTokenBody, CreateUserBody, DecisionBody, DeletionBody, DEFAULT_PAGE, Items, ListApprovalsQuery, ListTokensQuery, ListUsersQuery,
  ReasonBody, RepositoryParams, RestorePointParams, SiteParams, SetRolesBody, TokenCreated, TokenParams, TokenView, UserParams, UserView, WhoAmI,
} from './gateway.schemas.ts';
import { GATEWAY_AUTH } from './gateway.tokens.ts';
import type { HttpResponse } from './http.types.ts';
import { IdentityConflictError, IdentityNotFoundError, IdentitySignatureError, LastAdministratorError, type ApprovalRecord, type ApprovalStatus, type TokenRecord, type UserRecord } from './identity.store.ts';
import type { Authenticator } from './auth.guard.ts';
import { ProblemError } from './problem.ts';
import { PERMISSIONS, allows } from './roles.ts';

const userView = (u: UserRecord) => ({
  userId: u.userId, roles: [...u.roles], disabled: u.disabled, createdAt: u.createdAt, createdBy: u.createdBy, keys: [...u.keys],
  ...(u.displayName ? { displayName: u.displayName } : {}),
});
const tokenView = (t: TokenRecord) => ({
  tokenId: t.tokenId, userId: t.userId, name: t.name, issuedAt: t.issuedAt, issuedBy: t.issuedBy, expiresAt: t.expiresAt, revoked: t.revoked,
  ...(t.revokedAt ? { revokedAt: t.revokedAt } : {}), ...(t.revokedBy ? { revokedBy: t.revokedBy } : {}),
});
export const approvalView = (a: ApprovalRecord) => ({
  approvalId: a.approvalId, action: a.action, requestedBy: a.requestedBy, requestedAt: a.requestedAt, status: a.status,
  ...(a.reason ? { reason: a.reason } : {}), ...(a.approvedBy ? { approvedBy: a.approvedBy } : {}), ...(a.rejectedBy ? { rejectedBy: a.rejectedBy } : {}),
  ...(a.decidedAt ? { decidedAt: a.decidedAt } : {}), ...(a.detail ? { detail: a.detail } : {}),
  href: `/v1/approvals/${a.approvalId}`,
});

function mapIdentityError(e: unknown): never {
  if (e instanceof IdentityNotFoundError) throw new ProblemError(404, 'not-found', e.message);
  if (e instanceof IdentityConflictError) throw new ProblemError(409, 'conflict', e.message);
  if (e instanceof LastAdministratorError) throw new ProblemError(409, 'last-administrator', e.message, { code: 'last_administrator' });
  if (e instanceof IdentitySignatureError) throw new ProblemError(403, e.code.replace(/_/g, '-'), e.message, { code: e.code });
  throw e;
}

type SignedRequest = { approvalId: string; signature: PersonSignatureValue };

/** Acts a four-eyes approval can be for, and which of them Cairn can carry out today. */
const EXECUTABLE: ReadonlySet<ApprovalAction['kind']> = new Set(['delete-restore-point', 'shorten-retention', 'disable-immutability', 'delete-repository', 'grant-administrator', 'add-operator-key', 'restore-in-place', 'declare-site-lost']);

@Controller()
export class IdentityController {
  constructor(
    @Inject(GatewayService) private readonly gateway: GatewayService,
    @Inject(GATEWAY_AUTH) private readonly auth: Authenticator,
  ) {}

  private get store() {
    return this.auth.identities;
  }

  @Route({ method: 'GET', path: '/v1/whoami', operationId: 'whoAmI', tag: 'access', summary: 'The caller: user, roles and what they allow', response: WhoAmI })
  whoAmI(@CallerOf() caller: Caller) {
    return { actor: caller.actor, roles: [...caller.roles], permissions: PERMISSIONS.filter((p) => allows(caller.roles, p)), ...(this.store.signaturesRequired ? { signaturesRequired: true } : {}) };
  }

  // ---- users -------------------------------------------------------------------------------

  // Who exists and with which roles is for administrators only (an operator's token listed everyone).
  @Route({ method: 'GET', path: '/v1/users', operationId: 'listUsers', tag: 'access', permission: 'admin', summary: 'API users and their roles (administrators), by user id', query: ListUsersQuery, response: Items(UserView) })
  listUsers(@Input('query') q: { limit?: number; after?: string }) {
    const page = pageOf(this.store.listUsers(), (u) => [u.userId], ['string'], q, DEFAULT_PAGE);
    return { items: page.items.map(userView), next: page.next };
  }

  @Route({
    method: 'POST', path: '/v1/users', operationId: 'createUser', tag: 'access', status: 201, permission: 'admin',
    summary: 'Create an API user with roles (UserCreated); the administrator role needs an administrator\'s endorsement on a secure site, and from two administrators on a four-eyes approval (202)',
    body: CreateUserBody, response: UserView, problems: [403, 409],
  })
  async createUser(@Input('body') body: { userId: string; roles: Role[]; displayName?: string; endorsement?: EndorsementValue; approval?: SignedRequest }, @CallerOf() caller: Caller, @Res({ passthrough: true }) res: HttpResponse) {
    if (body.roles.includes('administrator')) {
      const by = await this.checkEndorsement(body.endorsement, caller);
      if (await this.administratorsNeedFourEyes()) {
        if (await this.store.user(body.userId)) throw new ProblemError(409, 'conflict', `user ${body.userId} exists`);
        return this.asApproval(res, { kind: 'grant-administrator', userId: body.userId, roles: body.roles, ...(body.displayName ? { displayName: body.displayName } : {}), endorsement: body.endorsement! }, body.approval, by);
      }
    }
    return userView(await this.store.createUser(body.userId, body.roles, caller.actor, body.displayName, body.endorsement).catch(mapIdentityError));
  }

  /**
   * On a secure site a key or the administrator role needs an endorsement by a trusted
   * administrator's key (whoever's token carries it: the signature is the person's). Checked here
   * for a clear answer; readers check the chain again. Returns who endorsed.
   */
  private async checkEndorsement(endorsement: EndorsementValue | undefined, caller: Caller): Promise<Caller> {
    if (!this.store.signaturesRequired) return caller;
    if (!endorsement) {
      throw new ProblemError(403, 'endorsement-required', 'on this site an operator key or the administrator role needs an administrator\'s endorsement signed with their own operator key: use the CLI (cairn user add|roles|key add, which signs with --operator-key or the local operator key); a REST caller without a key cannot (docs/security.md, four-eyes)', { code: 'endorsement_required' });
    }
    const problem = await this.store.administratorKeyProblem(endorsement.userId, endorsement.publicKey);
    if (problem) throw new ProblemError(403, 'endorsement-required', `the endorsement does not count: ${problem}`, { code: 'endorsement_required' });
    return this.as(caller, endorsement.userId);
  }

  private as(caller: Caller, userId: string): Caller {
    if (userId === caller.actor.id) return caller;
    return { ...caller, actor: { kind: 'user', id: userId }, roles: this.store.listUsers().find((u) => u.userId === userId)?.roles ?? [] };
  }

  /**
   * Who a signed four-eyes act is by: the person whose current operator key signed it (the API
   * token only opens the API; `cairn up`'s token is the gateway's bootstrap user, the key the
   * local operator's). Unsigned: the token's user.
   */
  private person(caller: Caller, signature: PersonSignatureValue | undefined): Caller {
    if (!signature) return caller;
    const u = this.store.userByKey(signature.publicKey);
    if (!u) throw new ProblemError(403, 'bad-signature', `${signature.publicKey} is not a current operator key of any user`, { code: 'bad_signature' });
    if (u.disabled || !u.roles.includes('administrator')) {
      throw new ProblemError(403, 'bad-signature', `the key ${signature.publicKey} is ${u.userId}'s, who is ${u.disabled ? 'disabled' : 'not an administrator'}`, { code: 'bad_signature' });
    }
    return this.as(caller, u.userId);
  }

  /** From two administrators (trusted, ever) on, making another one or keying another one is four-eyes. */
  private async administratorsNeedFourEyes(): Promise<boolean> {
    return this.store.signaturesRequired && (await this.store.trustedAdministrators()).ever.length >= 2;
  }

  /** The change as a four-eyes request (202): the requester's signed request is required on a secure site. */
  private async asApproval(res: HttpResponse, action: ApprovalAction, signed: SignedRequest | undefined, caller: Caller) {
    res.status(202);
    const by = this.person(caller, signed?.signature);
    const a = await this.store.requestApproval(action, by.actor, undefined, by.traceparent, signed).catch(mapIdentityError);
    res.setHeader('Location', `/v1/approvals/${a.approvalId}`);
    return approvalView(a);
  }

  @Route({
    method: 'POST', path: '/v1/users/:userId/roles', operationId: 'setUserRoles', tag: 'access', permission: 'admin',
    summary: 'Replace a user\'s roles (UserRolesChanged); the last enabled administrator keeps the role (409)', params: UserParams, body: SetRolesBody, response: UserView, problems: [403, 404, 409],
  })
  async setRoles(@Input('params') p: { userId: string }, @Input('body') body: { roles: Role[]; endorsement?: EndorsementValue; approval?: SignedRequest }, @CallerOf() caller: Caller, @Res({ passthrough: true }) res: HttpResponse) {
    const u = await this.store.user(p.userId);
    if (u && body.roles.includes('administrator') && !u.roles.includes('administrator')) {
      const by = await this.checkEndorsement(body.endorsement, caller);
      if (await this.administratorsNeedFourEyes()) {
        return this.asApproval(res, { kind: 'grant-administrator', userId: p.userId, roles: body.roles, endorsement: body.endorsement! }, body.approval, by);
      }
    }
    return userView(await this.store.setRoles(p.userId, body.roles, caller.actor, body.endorsement).catch(mapIdentityError));
  }

  @Route({
    method: 'POST', path: '/v1/users/:userId/disable', operationId: 'disableUser', tag: 'access', permission: 'admin',
    summary: 'Disable a user: every token of theirs stops working at once (UserDisabled); never the last enabled administrator (409)', params: UserParams, body: ReasonBody, response: UserView, problems: [403, 404, 409],
  })
  async disableUser(@Input('params') p: { userId: string }, @Input('body') body: { reason?: string }, @CallerOf() caller: Caller) {
    return userView(await this.store.disableUser(p.userId, caller.actor, body.reason).catch(mapIdentityError));
  }

  @Route({
    method: 'POST', path: '/v1/users/:userId/keys', operationId: 'addUserKey', tag: 'access', status: 201, permission: 'admin',
    summary: 'Record an operator key (public half) the user signs NATS commands with (UserKeyAdded); on a secure site with an administrator\'s endorsement, and for another administrator from two on, as a four-eyes approval (202)', params: UserParams, body: AddUserKeyBody, response: UserView, problems: [403, 404, 409],
  })
  async addKey(@Input('params') p: { userId: string }, @Input('body') body: { publicKey: string; name?: string; endorsement?: EndorsementValue; approval?: SignedRequest }, @CallerOf() caller: Caller, @Res({ passthrough: true }) res: HttpResponse) {
    const by = await this.checkEndorsement(body.endorsement, caller);
    const u = await this.store.user(p.userId);
    // A key for another administrator's account: four-eyes, else one administrator could hold two votes.
    if (u && p.userId !== by.actor.id && u.roles.includes('administrator') && u.keys.length > 0 && body.endorsement && await this.administratorsNeedFourEyes()) {
      return this.asApproval(res, { kind: 'add-operator-key', userId: p.userId, publicKey: body.publicKey, ...(body.name ? { name: body.name } : {}), endorsement: body.endorsement }, body.approval, by);
    }
    return userView(await this.store.addKey(p.userId, body.publicKey, caller.actor, body.name, body.endorsement).catch(mapIdentityError));
  }

  @Route({
    method: 'POST', path: '/v1/users/:userId/keys/:publicKey/revoke', operationId: 'revokeUserKey', tag: 'access', permission: 'admin',
    summary: 'Revoke an operator key: commands it signs are refused at once (UserKeyRevoked)', params: UserKeyParams, body: ReasonBody, response: UserView, problems: [403, 404],
  })
  async revokeKey(@Input('params') p: { userId: string; publicKey: string }, @Input('body') body: { reason?: string }, @CallerOf() caller: Caller) {
    return userView(await this.store.revokeKey(p.userId, p.publicKey, caller.actor, body.reason).catch(mapIdentityError));
  }

  // ---- tokens ------------------------------------------------------------------------------

  @Route({ method: 'GET', path: '/v1/tokens', operationId: 'listTokens', tag: 'access', summary: 'API tokens (never the tokens themselves)', query: ListTokensQuery, response: Items(TokenView) })
  listTokens(@Input('query') q: { userId?: string; limit?: number; after?: string }) {
    const sorted = this.store.listTokens(q.userId).sort((a, b) => a.issuedAt.localeCompare(b.issuedAt) || (a.tokenId < b.tokenId ? -1 : a.tokenId > b.tokenId ? 1 : 0));
    const page = pageOf(sorted, (t) => [t.issuedAt, t.tokenId], ['string', 'string'], q, DEFAULT_PAGE);
    return { items: page.items.map(tokenView), next: page.next };
  }

  @Route({
    method: 'POST', path: '/v1/tokens', operationId: 'createToken', tag: 'access', status: 201, permission: 'admin',
    summary: 'Issue an API token to a user (TokenIssued); the token is in this response only', body: CreateTokenBody, response: TokenCreated, problems: [403, 404, 409],
  })
  async createToken(@Input('body') body: { userId: string; name: string; expiresInDays?: number }, @CallerOf() caller: Caller) {
    const expiresAt = body.expiresInDays ? new Date(Date.now() + body.expiresInDays * 86_400_000) : undefined;
    const { token, record } = await this.store.issueToken(body.userId, body.name, caller.actor, expiresAt ? { expiresAt } : {}).catch(mapIdentityError);
    return { tokenId: record.tokenId, userId: record.userId, expiresAt: record.expiresAt, token };
  }

  @Route({
    method: 'POST', path: '/v1/tokens/:tokenId/revoke', operationId: 'revokeToken', tag: 'access', permission: 'admin',
    summary: 'Revoke an API token: it stops working at once (TokenRevoked)', params: TokenParams, body: ReasonBody, response: TokenView, problems: [403, 404],
  })
  async revokeToken(@Input('params') p: { tokenId: string }, @Input('body') body: { reason?: string }, @CallerOf() caller: Caller) {
    return tokenView(await this.store.revokeToken(p.tokenId, caller.actor, body.reason).catch(mapIdentityError));
  }

  // ---- four-eyes approvals -----------------------------------------------------------------

  @Route({ method: 'GET', path: '/v1/approvals', operationId: 'listApprovals', tag: 'approvals', summary: 'Four-eyes requests, newest first', query: ListApprovalsQuery, response: Items(ApprovalView) })
  listApprovals(@Input('query') q: { status?: ApprovalStatus; limit?: number; after?: string }) {
    const sorted = this.store.listApprovals(q.status).sort((a, b) => b.requestedAt.localeCompare(a.requestedAt) || (a.approvalId < b.approvalId ? 1 : a.approvalId > b.approvalId ? -1 : 0));
    const page = pageOf(sorted, (a) => [a.requestedAt, a.approvalId], ['string', 'string'], q, DEFAULT_PAGE, 'desc');
    return { items: page.items.map(approvalView), next: page.next };
  }

  @Route({ method: 'GET', path: '/v1/approvals/:approvalId', operationId: 'getApproval', tag: 'approvals', summary: 'One four-eyes request', params: ApprovalParams, response: ApprovalView, problems: [404] })
  async getApproval(@Input('params') p: { approvalId: string }) {
    const a = await this.store.approval(p.approvalId);
    if (!a) throw new ProblemError(404, 'not-found', `no approval ${p.approvalId}`);
    return approvalView(a);
  }

  @Route({
    method: 'POST', path: '/v1/approvals', operationId: 'requestApproval', tag: 'approvals', status: 202, permission: 'admin',
    summary: 'Ask for a destructive act; it happens when a second administrator approves (ApprovalRequested)',
    body: CreateApprovalBody, response: ApprovalView, problems: [403, 404, 422],
  })
  async requestApproval(@Input('body') body: { action: ApprovalAction; reason?: string; approvalId?: string; signature?: PersonSignatureValue }, @CallerOf() caller: Caller, @Res({ passthrough: true }) res: HttpResponse) {
    return this.request(body.action, body, caller, res);
  }

  @Route({
    method: 'POST', path: '/v1/restore-points/:restorePointId/deletion', operationId: 'requestRestorePointDeletion', tag: 'restore-points', status: 202, permission: 'admin',
    summary: 'Ask for a restore point to be deleted: it is, once a second administrator approves (four-eyes)',
    params: RestorePointParams, body: DeletionBody, response: ApprovalView, problems: [403, 404],
  })
  async requestDeletion(@Input('params') p: { restorePointId: string }, @Input('body') body: { reason?: string; approvalId?: string; signature?: PersonSignatureValue }, @CallerOf() caller: Caller, @Res({ passthrough: true }) res: HttpResponse) {
    return this.request({ kind: 'delete-restore-point', restorePointId: p.restorePointId }, body, caller, res);
  }

  @Route({
    method: 'POST', path: '/v1/repositories/:repository/deletion', operationId: 'requestRepositoryDeletion', tag: 'approvals', status: 202, permission: 'admin',
    summary: 'Ask for a whole repository to be deleted: it is, once a second administrator approves (four-eyes) and no lock is live',
    description: 'The data mover checks the approval in the log, refuses while any restore point is locked (409, code locked, naming the latest lock end), then deletes restore points, chunks, index, key journal and keys and records RepositoryDeleted with both administrators.',
    params: RepositoryParams, body: DeletionBody, response: ApprovalView, problems: [403, 404],
  })
  async requestRepositoryDeletion(@Input('params') p: { repository: string }, @Input('body') body: { reason?: string; approvalId?: string; signature?: PersonSignatureValue }, @CallerOf() caller: Caller, @Res({ passthrough: true }) res: HttpResponse) {
    return this.request({ kind: 'delete-repository', repository: p.repository }, body, caller, res);
  }

  @Route({
    method: 'POST', path: '/v1/sites/:site/loss', operationId: 'requestSiteLoss', tag: 'approvals', status: 202, permission: 'admin',
    summary: 'Ask for another site to be declared lost (disaster recovery): it is, once a second administrator approves (four-eyes)',
    description: 'When approved, the data mover opens the repository key the lost site escrowed here (sealed for this site), checks it opens that site\'s replica, and records SiteDeclaredLost with both administrators; restores of that site\'s replicas use the key from then on. No passphrase is copied by anyone.',
    params: SiteParams, body: DeletionBody, response: ApprovalView, problems: [403, 404],
  })
  async requestSiteLoss(@Input('params') p: { site: string }, @Input('body') body: { reason?: string; approvalId?: string; signature?: PersonSignatureValue }, @CallerOf() caller: Caller, @Res({ passthrough: true }) res: HttpResponse) {
    return this.request({ kind: 'declare-site-lost', site: p.site }, body, caller, res);
  }

  private async request(action: ApprovalAction, body: { reason?: string; approvalId?: string; signature?: PersonSignatureValue }, caller: Caller, res: HttpResponse) {
    const reason = body.reason;
    if (body.signature && !body.approvalId) throw new ProblemError(400, 'validation', 'a signed request names its approvalId (the signature covers it)', { code: 'invalid_request' });
    if (!EXECUTABLE.has(action.kind)) {
      throw new ProblemError(422, 'unsupported-action', `${action.kind}: Cairn has no operation for this yet, so there is nothing to approve (see docs/security.md)`);
    }
    if (action.kind === 'delete-restore-point' || action.kind === 'restore-in-place') await this.gateway.query('restorePoint.get', { restorePointId: action.restorePointId });
    // A repository no data mover ever held: 404 now, not an approval that can only fail later
    // (one deleted meanwhile goes on to say so when approved).
    if (action.kind === 'delete-repository') await this.gateway.command('DescribeRepository', { repository: action.repository }, caller);
    if (action.kind === 'shorten-retention' || action.kind === 'disable-immutability') {
      throw new ProblemError(422, 'unsupported-action', `${action.kind}: change the policy with POST /v1/policies/<policyId> (the new policy): it asks for the approval itself`);
    }
    if (action.kind === 'grant-administrator' || action.kind === 'add-operator-key') {
      throw new ProblemError(422, 'unsupported-action', `${action.kind}: use POST /v1/users (or /v1/users/<id>/roles, /v1/users/<id>/keys): it asks for the approval itself when one is needed`);
    }
    const signed = body.signature && body.approvalId ? { approvalId: body.approvalId, signature: body.signature } : undefined;
    const by = this.person(caller, signed?.signature);
    const a = await this.store.requestApproval(action, by.actor, reason, caller.traceparent, signed).catch(mapIdentityError);
    res.setHeader('Location', `/v1/approvals/${a.approvalId}`);
    return approvalView(a);
  }

  @Route({
    method: 'POST', path: '/v1/approvals/:approvalId/approve', operationId: 'approve', tag: 'approvals', permission: 'admin',
    summary: 'Approve another administrator\'s request and carry the act out (ApprovalGranted, then ApprovalExecuted)',
    description: 'The requester cannot approve their own request (403, code four_eyes). A locked restore point is not deleted (409, code locked).',
    params: ApprovalParams, body: DecisionBody, response: ApprovalView, problems: [403, 404, 409, 503, 504],
  })
  async approve(@Input('params') p: { approvalId: string }, @Input('body') body: { signature?: PersonSignatureValue }, @CallerOf() token: Caller) {
    const a = await this.pending(p.approvalId);
    const caller = this.person(token, body.signature);
    if (a.requestedBy === caller.actor.id) {
      throw await this.auth.denied({ actor: caller.actor, roles: caller.roles, method: 'token' }, 'approve', 'four-eyes', {
        method: 'POST', path: `/v1/approvals/${a.approvalId}/approve`, traceparent: caller.traceparent,
      });
    }
    await this.store.grant(a, caller.actor, caller.traceparent, body.signature).catch(async (e: unknown) => {
      // A refused signature is an access refusal like a missing role: recorded (AccessDenied, needed = why).
      if (e instanceof IdentitySignatureError) {
        await this.auth.denied({ actor: caller.actor, roles: caller.roles, method: 'token' }, 'approve', e.code, { method: 'POST', path: `/v1/approvals/${a.approvalId}/approve`, traceparent: caller.traceparent });
      }
      return mapIdentityError(e);
    });
    try {
      if (a.action.kind === 'delete-restore-point') {
        await this.gateway.command('DeleteRestorePoint', { restorePointId: a.action.restorePointId, approvalId: a.approvalId }, caller);
      } else if (a.action.kind === 'delete-repository') {
        await this.gateway.command('DeleteRepository', { repository: a.action.repository, approvalId: a.approvalId }, caller);
      } else if (a.action.kind === 'declare-site-lost') {
        await this.gateway.command('DeclareSiteLost', { site: a.action.site, approvalId: a.approvalId }, caller);
      } else if (a.action.kind === 'restore-in-place') {
        // The act is the in-place restore job (safety backup first); the data mover checks this approval when it accepts it.
        const vmName = a.action.vm;
        const vm = (await this.gateway.query('vm.list', {})).items.find((v) => v.name === vmName);
        if (!vm || vm.hypervisor.kind !== 'libvirt') throw new ProblemError(422, 'unsupported-action', `restore-in-place: ${vmName} is not a libvirt domain Cairn knows now`);
        await this.gateway.command('RequestRestore', {
          restorePointId: a.action.restorePointId,
          target: { kind: 'vm', vmName, host: vm.hypervisor.host, inPlace: true, safetyBackup: true, approvalId: a.approvalId, format: 'raw', start: false, keepIdentity: true },
        }, caller);
      } else if ((a.action.kind === 'shorten-retention' || a.action.kind === 'disable-immutability') && a.action.policy) {
        await this.gateway.command('UpdatePolicy', { policy: a.action.policy, approvalId: a.approvalId }, caller);
      } else if (a.action.kind === 'grant-administrator') {
        const act = a.action;
        if (await this.store.user(act.userId)) await this.store.setRoles(act.userId, act.roles, caller.actor, act.endorsement).catch(mapIdentityError);
        else await this.store.createUser(act.userId, act.roles, caller.actor, act.displayName, act.endorsement).catch(mapIdentityError);
      } else if (a.action.kind === 'add-operator-key') {
        await this.store.addKey(a.action.userId, a.action.publicKey, caller.actor, a.action.name, a.action.endorsement).catch(mapIdentityError);
      } else {
        throw new ProblemError(422, 'unsupported-action', `${a.action.kind}: nothing to carry out`);
      }
      await this.store.executed(a, 'done', caller.actor);
    } catch (e) {
      await this.store.executed(a, 'failed', caller.actor, (e as Error).message);
      throw e;
    }
    return approvalView((await this.store.approval(a.approvalId)) ?? a);
  }

  @Route({
    method: 'POST', path: '/v1/approvals/:approvalId/reject', operationId: 'reject', tag: 'approvals', permission: 'admin',
    summary: 'Reject (or, as the requester, withdraw) a pending request (ApprovalRejected)', params: ApprovalParams, body: DecisionBody, response: ApprovalView, problems: [403, 404, 409],
  })
  async reject(@Input('params') p: { approvalId: string }, @Input('body') body: { reason?: string; signature?: PersonSignatureValue }, @CallerOf() token: Caller) {
    const a = await this.pending(p.approvalId);
    const caller = this.person(token, body.signature);
    await this.store.reject(a, caller.actor, body.reason, caller.traceparent, body.signature).catch(mapIdentityError);
    return approvalView((await this.store.approval(a.approvalId)) ?? a);
  }

  private async pending(approvalId: string): Promise<ApprovalRecord> {
    const a = await this.store.approval(approvalId, true);
    if (!a) throw new ProblemError(404, 'not-found', `no approval ${approvalId}`);
    if (a.status !== 'pending') throw new ProblemError(409, 'conflict', `approval ${approvalId} is ${a.status}, not pending`);
    // A copy: its revision is the one this request read, so a concurrent decision makes our append fail (409).
    return { ...a };
  }
}
