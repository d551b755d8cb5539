// The audit timeline: every event of the site's log, filtered.
import { Controller, Inject } from '@nestjs/common';
import { AuditEntry, type QueryRequest } from '@cairn/catalogue-client';
import { GatewayService } from './gateway.service.ts';
import { Input, Route } from './route.decorator.ts';
import { AuditQuery, Items } from './gateway.schemas.ts';

@Controller()
export class AuditController {
  constructor(@Inject(GatewayService) private readonly gateway: GatewayService) {}

  @Route({
    method: 'GET', path: '/v1/audit', operationId: 'auditTimeline', tag: 'audit',
    summary: 'Events in log order, by job (correlationId), actor, type, stream or time', query: AuditQuery, response: Items(AuditEntry),
  })
  timeline(@Input('query') q: QueryRequest<'audit.timeline'>) {
    return this.gateway.query('audit.timeline', q);
  }
}
