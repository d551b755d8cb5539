// Instant recovery over REST: start a session (a restore point run as a new VM straight from the
// repository), list the sessions, finish one (mirror to local storage and pivot) or discard it.
// Each is a command to a data mover on the VM's host; the session's events are in `instant-<id>`.
import { Controller, Inject, Res } from '@nestjs/common';
import { Type } from '@sinclair/typebox';
import { FinishInstantV1, InstantView, StartInstantV1, type CommandPayloadMap } from '@cairn/contracts';
import { GatewayService } from './gateway.service.ts';
import { pageOf } from '@cairn/catalogue-client';
import { DEFAULT_PAGE, Items, Paging } from './gateway.schemas.ts';
import { ProblemError } from './problem.ts';
import { CallerOf, Input, Route, type Caller } from './route.decorator.ts';
import type { HttpResponse } from './http.types.ts';

const InstantParams = Type.Object({ instantId: Type.String({ minLength: 1, maxLength: 200, pattern: '^[A-Za-z0-9_-]+$' }) });
const InstantList = Type.Object({ all: Type.Optional(Type.Union([Type.Literal('true'), Type.Literal('false')], { description: 'also finished, discarded and failed sessions' })), ...Paging }, { additionalProperties: false });
export const InstantStartBody = Type.Composite([StartInstantV1], { $id: 'InstantRecoveryRequest', additionalProperties: false });
const { instantId: _id, ...finishFields } = FinishInstantV1.properties;
export const InstantFinishBody = Type.Object(finishFields, { $id: 'InstantFinishRequest', additionalProperties: false });

@Controller()
export class InstantController {
  constructor(@Inject(GatewayService) private readonly gateway: GatewayService) {}

  @Route({
    method: 'POST', path: '/v1/instant-recoveries', operationId: 'startInstantRecovery', permission: 'restore', tag: 'restores', status: 201,
    summary: 'Run a restore point as a new VM now, straight from the repository (StartInstant)',
    description: 'Answers once the disks are served (read-only NBD export, local qcow2 overlays) and, with `start`, the VM runs. Give `instantId` to retry safely. Then finish or discard it.',
    body: InstantStartBody, response: InstantView, problems: [404, 409, 503, 504],
  })
  async start(@Input('body') body: CommandPayloadMap['StartInstant'], @CallerOf() caller: Caller, @Res({ passthrough: true }) res: HttpResponse) {
    const { instantId, view } = await this.gateway.command('StartInstant', body, caller, { long: true });
    res.setHeader('Location', `/v1/instant-recoveries/${encodeURIComponent(instantId)}`);
    return view;
  }

  @Route({
    method: 'GET', path: '/v1/instant-recoveries', operationId: 'listInstantRecoveries', tag: 'restores',
    summary: 'Instant recovery sessions, by start time: state, overlay size (the guest\'s writes so far), mirror progress', query: InstantList, response: Items(InstantView), problems: [503, 504],
  })
  async list(@Input('query') q: { all?: 'true' | 'false'; limit?: number; after?: string }, @CallerOf() caller: Caller) {
    const { items } = await this.gateway.command('ListInstant', { all: q.all === 'true' }, caller);
    // Few sessions live at a time: the data mover answers them all, paged here by start time and id.
    const sorted = [...items].sort((a, b) => (a.startedAt ?? '').localeCompare(b.startedAt ?? '') || a.instantId.localeCompare(b.instantId));
    return pageOf(sorted, (v) => [v.startedAt ?? '', v.instantId], ['string', 'string'], q, DEFAULT_PAGE);
  }

  @Route({
    method: 'GET', path: '/v1/instant-recoveries/:instantId', operationId: 'getInstantRecovery', tag: 'restores',
    summary: 'One instant recovery session', params: InstantParams, response: InstantView, problems: [404, 503, 504],
  })
  async get(@Input('params') p: { instantId: string }, @CallerOf() caller: Caller) {
    const { items } = await this.gateway.command('ListInstant', { all: true }, caller);
    const view = items.find((v) => v.instantId === p.instantId);
    if (!view) throw new ProblemError(404, 'not-found', `no instant recovery ${p.instantId}`);
    return view;
  }

  @Route({
    method: 'POST', path: '/v1/instant-recoveries/:instantId/finish', operationId: 'finishInstantRecovery', permission: 'restore', tag: 'restores', status: 202,
    summary: 'Mirror the VM\'s disks to local storage while it runs, pivot, close the export (FinishInstant)',
    description: 'Accepted once the mirror started; the session shows its progress and turns `finished` after the pivot (or records the failure, the VM still running on its overlays).',
    params: InstantParams, body: InstantFinishBody, response: InstantView, problems: [404, 409, 503, 504],
  })
  async finish(@Input('params') p: { instantId: string }, @Input('body') body: Omit<CommandPayloadMap['FinishInstant'], 'instantId'>, @CallerOf() caller: Caller) {
    return (await this.gateway.command('FinishInstant', { ...body, instantId: p.instantId }, caller, { long: true })).view;
  }

  @Route({
    method: 'POST', path: '/v1/instant-recoveries/:instantId/discard', operationId: 'discardInstantRecovery', permission: 'restore', tag: 'restores',
    summary: 'Stop the VM and remove its exporter, overlays and sockets (DiscardInstant)', params: InstantParams, response: InstantView, problems: [404, 409, 503, 504],
  })
  async discard(@Input('params') p: { instantId: string }, @CallerOf() caller: Caller) {
    return (await this.gateway.command('DiscardInstant', { instantId: p.instantId }, caller, { long: true })).view;
  }
}
