// Restore jobs over REST: start one (RequestRestore to any data mover) and follow it (its
// stream `restore-<id>` folded by the restore decider; live progress is on the console feed).
import { Controller, Inject, Optional, Res } from '@nestjs/common';
import { Type } from '@sinclair/typebox';
import { RequestRestoreV1, RestoreJobView } from '@cairn/contracts';
import { GatewayService } from './gateway.service.ts';
import { GATEWAY_RESTORE_JOBS } from './gateway.tokens.ts';
import { ProblemError } from './problem.ts';
import { CallerOf, Input, Route, type Caller } from './route.decorator.ts';
import type { HttpResponse } from './http.types.ts';

/** Reads one restore job from the log. */
export interface RestoreJobReader {
  get(restoreId: string): Promise<RestoreJobView | undefined>;
}

const RestoreJobParams = Type.Object({ restoreId: Type.String({ minLength: 1, maxLength: 200, pattern: '^[A-Za-z0-9_-]+$' }) });
export const RestoreJobBody = Type.Composite([RequestRestoreV1], { $id: 'RestoreJobRequest', additionalProperties: false });
const RestoreJobAccepted = Type.Object({ restoreId: Type.String(), href: Type.String() }, { $id: 'RestoreJobAccepted' });

@Controller()
export class RestoreJobsController {
  constructor(
    @Inject(GatewayService) private readonly gateway: GatewayService,
    @Optional() @Inject(GATEWAY_RESTORE_JOBS) private readonly jobs?: RestoreJobReader,
  ) {}

  @Route({
    method: 'POST', path: '/v1/restore-jobs', operationId: 'requestRestore', permission: 'restore', tag: 'jobs', status: 202,
    summary: 'Start a restore job (RequestRestore)',
    description: 'Accepted means the job is recorded and queued; any data mover takes it. Follow it at `href`. Give `restoreId` to retry safely.',
    body: RestoreJobBody, response: RestoreJobAccepted, problems: [409, 503, 504],
  })
  async request(@Input('body') body: RequestRestoreV1, @CallerOf() caller: Caller, @Res({ passthrough: true }) res: HttpResponse) {
    const { restoreId } = await this.gateway.command('RequestRestore', body, caller);
    const href = `/v1/restore-jobs/${encodeURIComponent(restoreId)}`;
    res.setHeader('Location', href);
    return { restoreId, href };
  }

  @Route({
    method: 'GET', path: '/v1/restore-jobs/:restoreId', operationId: 'getRestoreJob', tag: 'jobs',
    summary: 'One restore job: state, plan, attempts, progress, outcome', params: RestoreJobParams, response: RestoreJobView, problems: [404, 503],
  })
  async get(@Input('params') p: { restoreId: string }) {
    if (!this.jobs) throw new ProblemError(503, 'unavailable', 'this gateway reads no event log');
    const view = await this.jobs.get(p.restoreId);
    if (!view) throw new ProblemError(404, 'not-found', `no restore job ${p.restoreId}`);
    return view;
  }
}
