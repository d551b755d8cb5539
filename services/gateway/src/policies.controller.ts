// Protection policies: read from the catalogue, created through the scheduler.
import { Controller, Inject, Res } from '@nestjs/common';
import { PolicyView, type QueryRequest } from '@cairn/catalogue-client';
import { policyChangeApproval, type CommandPayloadMap, type PersonSignatureValue, type Policy } from '@cairn/contracts';
import { GatewayService } from './gateway.service.ts';
import { CallerOf, Input, Route, type Caller } from './route.decorator.ts';
import { ApprovalView, CreatePolicyBody, Items, ListPoliciesQuery, PolicyCreated, PolicyParams, UpdatePolicyBody } from './gateway.schemas.ts';
import { Type } from '@sinclair/typebox';
import { GATEWAY_AUTH } from './gateway.tokens.ts';
import type { Authenticator } from './auth.guard.ts';
import { approvalView } from './identity.controller.ts';
import { IdentitySignatureError } from './identity.store.ts';
import { ProblemError } from './problem.ts';
import type { HttpResponse } from './http.types.ts';

@Controller()
export class PoliciesController {
  constructor(
    @Inject(GatewayService) private readonly gateway: GatewayService,
    @Inject(GATEWAY_AUTH) private readonly auth: Authenticator,
  ) {}

  @Route({ method: 'GET', path: '/v1/policies', operationId: 'listPolicies', tag: 'policies', summary: 'Protection policies', query: ListPoliciesQuery, response: Items(PolicyView) })
  listPolicies(@Input('query') q: QueryRequest<'policy.list'>) {
    return this.gateway.query('policy.list', q);
  }

  @Route({ method: 'GET', path: '/v1/policies/:policyId', operationId: 'getPolicy', tag: 'policies', summary: 'One policy', params: PolicyParams, response: PolicyView, problems: [404] })
  getPolicy(@Input('params') p: { policyId: string }) {
    return this.gateway.query('policy.get', p);
  }

  @Route({
    method: 'POST', path: '/v1/policies', operationId: 'createPolicy', permission: 'policy', tag: 'policies', status: 201,
    summary: 'Create a protection policy (CreatePolicy)', body: CreatePolicyBody, response: PolicyCreated, problems: [409, 422, 503, 504],
  })
  async createPolicy(@Input('body') body: CommandPayloadMap['CreatePolicy'], @CallerOf() caller: Caller, @Res({ passthrough: true }) res: HttpResponse) {
    const { policyId } = await this.gateway.command('CreatePolicy', body, caller);
    const href = `/v1/policies/${encodeURIComponent(policyId)}`;
    res.setHeader('Location', href);
    return { policyId, href };
  }

  @Route({
    method: 'POST', path: '/v1/policies/:policyId', operationId: 'updatePolicy', tag: 'policies', permission: 'policy',
    summary: 'Replace a policy (UpdatePolicy); keeping fewer restore points or locking them less needs a second administrator (202 with the approval)',
    description: 'When the new retention keeps fewer restore points of any kind, nothing changes yet: the answer is 202 with a four-eyes approval request (shorten-retention) that another administrator approves. Turning `immutable` off, or shortening the lock period it gives new restore points, is the same with a disable-immutability request; locks already made stay.',
    params: PolicyParams, body: UpdatePolicyBody, response: Type.Union([PolicyCreated, ApprovalView]), problems: [404, 409, 422, 503, 504],
  })
  async updatePolicy(
    @Input('params') p: { policyId: string }, @Input('body') input: Omit<Policy, 'policyId'> & { approval?: { approvalId: string; signature: PersonSignatureValue } },
    @CallerOf() caller: Caller, @Res({ passthrough: true }) res: HttpResponse,
  ) {
    const { approval: signed, ...body } = input;
    const current = await this.gateway.query('policy.get', p);
    const policy: Policy = { ...body, policyId: p.policyId };
    const kind = policyChangeApproval(current, policy);
    if (kind) {
      const why = kind === 'disable-immutability' ? 'immutability turned off or its lock period shortened' : 'retention shortened';
      // Signed (secure sites): the request is the signing administrator's, as for deletions.
      const owner = signed ? this.auth.identities.userByKey(signed.signature.publicKey) : undefined;
      if (signed && !owner) throw new ProblemError(403, 'bad-signature', `${signed.signature.publicKey} is not a current operator key of any user`, { code: 'bad_signature' });
      const actor = owner ? { kind: 'user' as const, id: owner.userId } : caller.actor;
      const a = await this.auth.identities.requestApproval({ kind, policyId: p.policyId, policy }, actor, why, caller.traceparent, signed)
        .catch((e: unknown) => { throw e instanceof IdentitySignatureError ? new ProblemError(403, e.code.replace(/_/g, '-'), e.message, { code: e.code }) : e; });
      res.status(202);
      res.setHeader('Location', `/v1/approvals/${a.approvalId}`);
      return approvalView(a);
    }
    await this.gateway.command('UpdatePolicy', { policy }, caller);
    return { policyId: p.policyId, href: `/v1/policies/${encodeURIComponent(p.policyId)}` };
  }

  @Route({
    method: 'POST', path: '/v1/policies/:policyId/pause', operationId: 'pausePolicy', tag: 'policies', permission: 'policy',
    summary: 'Pause a policy (PausePolicy): it schedules no new backups until resumed; running jobs and restore points stay',
    params: PolicyParams, response: PolicyCreated, problems: [404, 503, 504],
  })
  async pausePolicy(@Input('params') p: { policyId: string }, @CallerOf() caller: Caller) {
    await this.gateway.command('PausePolicy', { policyId: p.policyId }, caller);
    return { policyId: p.policyId, href: `/v1/policies/${encodeURIComponent(p.policyId)}` };
  }

  @Route({
    method: 'POST', path: '/v1/policies/:policyId/resume', operationId: 'resumePolicy', tag: 'policies', permission: 'policy',
    summary: 'Resume a paused policy (ResumePolicy): slots from now on are scheduled, those missed while paused are not',
    params: PolicyParams, response: PolicyCreated, problems: [404, 503, 504],
  })
  async resumePolicy(@Input('params') p: { policyId: string }, @CallerOf() caller: Caller) {
    await this.gateway.command('ResumePolicy', { policyId: p.policyId }, caller);
    return { policyId: p.policyId, href: `/v1/policies/${encodeURIComponent(p.policyId)}` };
  }

  @Route({
    method: 'DELETE', path: '/v1/policies/:policyId', operationId: 'deletePolicy', tag: 'policies', permission: 'policy',
    summary: 'Delete a policy (DeletePolicy): no new backups; its restore points are kept and no longer expire by its retention',
    params: PolicyParams, response: PolicyCreated, problems: [404, 503, 504],
  })
  async deletePolicy(@Input('params') p: { policyId: string }, @CallerOf() caller: Caller) {
    await this.gateway.command('DeletePolicy', { policyId: p.policyId }, caller);
    return { policyId: p.policyId, href: `/v1/policies/${encodeURIComponent(p.policyId)}` };
  }
}
