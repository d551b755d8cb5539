// Protection policies: read from the catalogue, created through the scheduler.
import { Controller, Inject, Res } from '@nestjs/common';
import { PolicyView, type QueryRequest } from '@cairn/catalogue-client';
import type { CommandPayloadMap } from '@cairn/contracts';
import { GatewayService } from './gateway.service.ts';
import { CallerOf, Input, Route, type Caller } from './route.decorator.ts';
import { CreatePolicyBody, Items, ListPoliciesQuery, PolicyCreated, PolicyParams } from './gateway.schemas.ts';
import type { HttpResponse } from './http.types.ts';

@Controller()
export class PoliciesController {
  constructor(@Inject(GatewayService) private readonly gateway: GatewayService) {}

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
}
