// Unauthenticated system routes: health for probes and the OpenAPI document for tools.
import { Controller, Inject, Res } from '@nestjs/common';
import { Type } from '@sinclair/typebox';
import { GATEWAY_HEALTH } from './gateway.tokens.ts';
import { Health } from './gateway.schemas.ts';
import { Route } from './route.decorator.ts';
import type { HttpResponse } from './http.types.ts';

export interface HealthProbe {
  health(): Promise<{ status: 'ok' | 'degraded' } & Record<string, unknown>>;
  openApi(): unknown;
}

@Controller()
export class SystemController {
  constructor(@Inject(GATEWAY_HEALTH) private readonly probe: HealthProbe) {}

  @Route({
    method: 'GET', path: '/health', operationId: 'health', tag: 'system', public: true, problems: [503],
    summary: 'Gateway health: NATS connection and catalogue reachability (503 when degraded)', response: Health,
  })
  async health(@Res({ passthrough: true }) res: HttpResponse) {
    const h = await this.probe.health();
    if (h.status !== 'ok') res.status(503);
    return h;
  }

  @Route({
    method: 'GET', path: '/openapi.json', operationId: 'openApi', tag: 'system', public: true,
    summary: 'This API\'s OpenAPI 3.1 document', response: Type.Object({}, { additionalProperties: true }),
  })
  openApi() {
    return this.probe.openApi();
  }
}
