// Jobs: follow them (catalogue) and start them (commands to the scheduler).
import { Controller, Inject, Res } from '@nestjs/common';
import { JobDetail, JobView, type QueryRequest } from '@cairn/catalogue-client';
import type { CommandPayloadMap } from '@cairn/contracts';
import { GatewayService } from './gateway.service.ts';
import { CallerOf, Input, Route, type Caller } from './route.decorator.ts';
import { BackupBody, Items, JobAccepted, JobParams, ListJobsQuery, RestoreBody, RestoreResult } from './gateway.schemas.ts';
import type { HttpResponse } from './http.types.ts';

@Controller()
export class JobsController {
  constructor(@Inject(GatewayService) private readonly gateway: GatewayService) {}

  @Route({ method: 'GET', path: '/v1/jobs', operationId: 'listJobs', tag: 'jobs', summary: 'Backup and restore jobs, newest first (kind backup or restore)', query: ListJobsQuery, response: Items(JobView) })
  listJobs(@Input('query') q: QueryRequest<'job.list'>) {
    return this.gateway.query('job.list', q);
  }

  @Route({
    method: 'GET', path: '/v1/jobs/:jobId', operationId: 'getJob', tag: 'jobs', summary: 'One job with its phases and events',
    params: JobParams, response: JobDetail, problems: [404],
  })
  getJob(@Input('params') p: { jobId: string }) {
    return this.gateway.query('job.get', p);
  }

  @Route({
    method: 'POST', path: '/v1/backups', operationId: 'requestBackup', permission: 'backup', tag: 'jobs', status: 202,
    summary: 'Back up one VM now (RequestBackup)', description: 'Accepted means a job exists; follow it at `href`. Send an `Idempotency-Key` header to retry safely.',
    body: BackupBody, response: JobAccepted, problems: [404, 409, 503, 504],
  })
  async requestBackup(@Input('body') body: { vmId: string; policyId?: string; mode?: 'auto' | 'full' }, @CallerOf() caller: Caller, @Res({ passthrough: true }) res: HttpResponse) {
    const payload: CommandPayloadMap['RequestBackup'] = { vmId: body.vmId, mode: body.mode ?? 'auto', ...(body.policyId ? { policyId: body.policyId } : {}) };
    return accepted(res, await this.gateway.command('RequestBackup', payload, caller));
  }

  @Route({
    method: 'POST', path: '/v1/restores', operationId: 'restoreDisk', permission: 'restore', tag: 'jobs',
    summary: 'Restore one disk of a restore point (RestoreDisk)',
    description: 'Answers when the data mover has written the disk (the request may take as long as the restore).',
    body: RestoreBody, response: RestoreResult, problems: [404, 409, 503, 504],
  })
  restoreDisk(@Input('body') body: CommandPayloadMap['RestoreDisk'], @CallerOf() caller: Caller) {
    return this.gateway.command('RestoreDisk', body, caller, { long: true });
  }
}

function accepted(res: HttpResponse, result: { jobId: string }) {
  const href = `/v1/jobs/${encodeURIComponent(result.jobId)}`;
  res.setHeader('Location', href);
  return { jobId: result.jobId, href };
}
