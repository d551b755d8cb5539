// Users, API tokens and four-eyes approvals. Creating users and tokens, revoking, and asking
// for or deciding on a destructive act need the admin permission (administrators); reading
// them needs read (every role). A destructive act (deleting a restore point, ...) is never
// done by one request: it becomes an approval request that a second administrator approves,
// and only then is it carried out, with both acts in the log.
import { Controller, Inject, Res } from '@nestjs/common';
import type { ApprovalAction, Role } from '@cairn/contracts';
import { pageOf } from '@cairn/catalogue-client';
import { GatewayService } from './gateway.service.ts';
import { CallerOf, Input, Route, type Caller } from './route.decorator.ts';
import {
  AddUserKeyBody, UserKeyParams, ApprovalParams, ApprovalView, CreateApprovalBody, CreateTokenBody, CreateUserBody, DEFAULT_PAGE, Items, ListApprovalsQuery, ListTokensQuery, ListUsersQuery,
  ReasonBody, RepositoryParams, RestorePointParams, SetRolesBody, TokenCreated, TokenParams, TokenView, UserParams, UserView, WhoAmI,
} from './gateway.schemas.ts';
import { GATEWAY_AUTH } from './gateway.tokens.ts';
import type { HttpResponse } from './http.types.ts';
import { IdentityConflictError, IdentityNotFoundError, LastAdministratorError, type ApprovalRecord, type ApprovalStatus, type TokenRecord, type UserRecord } from './identity.store.ts';
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
  throw e;
}

/** Acts a four-eyes approval can be for, and which of them Cairn can carry out today. */
const EXECUTABLE: ReadonlySet<ApprovalAction['kind']> = new Set(['delete-restore-point', 'shorten-retention', 'disable-immutability', 'delete-repository']);

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
    return { actor: caller.actor, roles: [...caller.roles], permissions: PERMISSIONS.filter((p) => allows(caller.roles, p)) };
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
    summary: 'Create an API user with roles (UserCreated)', body: CreateUserBody, response: UserView, problems: [403, 409],
  })
  async createUser(@Input('body') body: { userId: string; roles: Role[]; displayName?: string }, @CallerOf() caller: Caller) {
    return userView(await this.store.createUser(body.userId, body.roles, caller.actor, body.displayName).catch(mapIdentityError));
  }

  @Route({
    method: 'POST', path: '/v1/users/:userId/roles', operationId: 'setUserRoles', tag: 'access', permission: 'admin',
    summary: 'Replace a user\'s roles (UserRolesChanged); the last enabled administrator keeps the role (409)', params: UserParams, body: SetRolesBody, response: UserView, problems: [403, 404, 409],
  })
  async setRoles(@Input('params') p: { userId: string }, @Input('body') body: { roles: Role[] }, @CallerOf() caller: Caller) {
    return userView(await this.store.setRoles(p.userId, body.roles, caller.actor).catch(mapIdentityError));
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
    summary: 'Record an operator key (public half) the user signs NATS commands with (UserKeyAdded)', params: UserParams, body: AddUserKeyBody, response: UserView, problems: [403, 404, 409],
  })
  async addKey(@Input('params') p: { userId: string }, @Input('body') body: { publicKey: string; name?: string }, @CallerOf() caller: Caller) {
    return userView(await this.store.addKey(p.userId, body.publicKey, caller.actor, body.name).catch(mapIdentityError));
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
  async requestApproval(@Input('body') body: { action: ApprovalAction; reason?: string }, @CallerOf() caller: Caller, @Res({ passthrough: true }) res: HttpResponse) {
    return this.request(body.action, body.reason, caller, res);
  }

  @Route({
    method: 'POST', path: '/v1/restore-points/:restorePointId/deletion', operationId: 'requestRestorePointDeletion', tag: 'restore-points', status: 202, permission: 'admin',
    summary: 'Ask for a restore point to be deleted: it is, once a second administrator approves (four-eyes)',
    params: RestorePointParams, body: ReasonBody, response: ApprovalView, problems: [403, 404],
  })
  async requestDeletion(@Input('params') p: { restorePointId: string }, @Input('body') body: { reason?: string }, @CallerOf() caller: Caller, @Res({ passthrough: true }) res: HttpResponse) {
    return this.request({ kind: 'delete-restore-point', restorePointId: p.restorePointId }, body.reason, caller, res);
  }

  @Route({
    method: 'POST', path: '/v1/repositories/:repository/deletion', operationId: 'requestRepositoryDeletion', tag: 'approvals', status: 202, permission: 'admin',
    summary: 'Ask for a whole repository to be deleted: it is, once a second administrator approves (four-eyes) and no lock is live',
    description: 'The data mover checks the approval in the log, refuses while any restore point is locked (409, code locked, naming the latest lock end), then deletes restore points, chunks, index, key journal and keys and records RepositoryDeleted with both administrators.',
    params: RepositoryParams, body: ReasonBody, response: ApprovalView, problems: [403, 404],
  })
  async requestRepositoryDeletion(@Input('params') p: { repository: string }, @Input('body') body: { reason?: string }, @CallerOf() caller: Caller, @Res({ passthrough: true }) res: HttpResponse) {
    return this.request({ kind: 'delete-repository', repository: p.repository }, body.reason, caller, res);
  }

  private async request(action: ApprovalAction, reason: string | undefined, caller: Caller, res: HttpResponse) {
    if (!EXECUTABLE.has(action.kind)) {
      throw new ProblemError(422, 'unsupported-action', `${action.kind}: Cairn has no operation for this yet, so there is nothing to approve (see docs/security.md)`);
    }
    if (action.kind === 'delete-restore-point') await this.gateway.query('restorePoint.get', { restorePointId: action.restorePointId });
    // A repository no data mover ever held: 404 now, not an approval that can only fail later
    // (one deleted meanwhile goes on to say so when approved).
    if (action.kind === 'delete-repository') await this.gateway.command('DescribeRepository', { repository: action.repository }, caller);
    if (action.kind === 'shorten-retention' || action.kind === 'disable-immutability') {
      throw new ProblemError(422, 'unsupported-action', `${action.kind}: change the policy with POST /v1/policies/<policyId> (the new policy): it asks for the approval itself`);
    }
    const a = await this.store.requestApproval(action, caller.actor, reason, caller.traceparent);
    res.setHeader('Location', `/v1/approvals/${a.approvalId}`);
    return approvalView(a);
  }

  @Route({
    method: 'POST', path: '/v1/approvals/:approvalId/approve', operationId: 'approve', tag: 'approvals', permission: 'admin',
    summary: 'Approve another administrator\'s request and carry the act out (ApprovalGranted, then ApprovalExecuted)',
    description: 'The requester cannot approve their own request (403, code four_eyes). A locked restore point is not deleted (409, code locked).',
    params: ApprovalParams, response: ApprovalView, problems: [403, 404, 409, 503, 504],
  })
  async approve(@Input('params') p: { approvalId: string }, @CallerOf() caller: Caller) {
    const a = await this.pending(p.approvalId);
    if (a.requestedBy === caller.actor.id) {
      throw await this.auth.denied({ actor: caller.actor, roles: caller.roles, method: 'token' }, 'approve', 'four-eyes', {
        method: 'POST', path: `/v1/approvals/${a.approvalId}/approve`, traceparent: caller.traceparent,
      });
    }
    await this.store.grant(a, caller.actor, caller.traceparent).catch(mapIdentityError);
    try {
      if (a.action.kind === 'delete-restore-point') {
        await this.gateway.command('DeleteRestorePoint', { restorePointId: a.action.restorePointId, approvalId: a.approvalId }, caller);
      } else if (a.action.kind === 'delete-repository') {
        await this.gateway.command('DeleteRepository', { repository: a.action.repository, approvalId: a.approvalId }, caller);
      } else if ((a.action.kind === 'shorten-retention' || a.action.kind === 'disable-immutability') && a.action.policy) {
        await this.gateway.command('UpdatePolicy', { policy: a.action.policy, approvalId: a.approvalId }, caller);
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
    summary: 'Reject (or, as the requester, withdraw) a pending request (ApprovalRejected)', params: ApprovalParams, body: ReasonBody, response: ApprovalView, problems: [403, 404, 409],
  })
  async reject(@Input('params') p: { approvalId: string }, @Input('body') body: { reason?: string }, @CallerOf() caller: Caller) {
    const a = await this.pending(p.approvalId);
    await this.store.reject(a, caller.actor, body.reason, caller.traceparent).catch(mapIdentityError);
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
