// GET /metrics: the Prometheus scrape endpoint. Public like /health (it shows counts and sizes,
// no names, ids or secrets), so a scraper needs no token.
import { Controller, Header, Inject } from '@nestjs/common';
import { Type } from '@sinclair/typebox';
import { Route } from './route.decorator.ts';
import { MetricsService } from './metrics.service.ts';
import { EXPOSITION_CONTENT_TYPE, renderExposition } from './metrics.exposition.ts';

@Controller()
export class MetricsController {
  constructor(@Inject(MetricsService) private readonly metrics: MetricsService) {}

  @Route({
    method: 'GET', path: '/metrics', operationId: 'metrics', tag: 'system', public: true,
    contentType: EXPOSITION_CONTENT_TYPE,
    summary: 'Prometheus metrics (text exposition format 0.0.4), computed at scrape time',
    response: Type.String(),
  })
  @Header('Content-Type', EXPOSITION_CONTENT_TYPE)
  @Header('Cache-Control', 'no-store')
  async scrape(): Promise<string> {
    return renderExposition(await this.metrics.collect());
  }
}
