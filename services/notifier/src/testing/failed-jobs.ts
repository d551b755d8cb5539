// Test data for the notifier: failed backup jobs appended to a real log with the scheduler's
// identity (JobRequested naming the VM, then JobFailed), and routes added as the CLI adds them.
import { newEvent, type CairnEvent, type NotificationRoute } from '@cairn/contracts';
import { handleCommand, type EventAppender, type EventStreamReader } from '@cairn/eventlog';
import { routeDecider, routeStreamId } from '@cairn/notifications';

export function failedJob(site: string, jobId: string, vmId: string): CairnEvent[] {
  const meta = { site, streamId: `job-${jobId}`, actor: { kind: 'service' as const, id: `scheduler@${site}` }, correlationId: jobId };
  return [
    newEvent('JobRequested', { jobId, vmId, policyId: null, mode: 'auto', trigger: 'manual' }, meta),
    newEvent('JobFailed', { jobId, phase: 'snapshot', reason: `no view of ${vmId}: the hypervisor did not answer`, retryable: true }, meta),
  ];
}

export async function appendFailedJob(log: EventAppender, site: string, jobId: string, vmId: string): Promise<void> {
  const events = failedJob(site, jobId, vmId);
  await log.append(`job-${jobId}`, events, { expectedRevision: 'no_stream' });
}

export async function addRoute(log: EventAppender & EventStreamReader, site: string, route: NotificationRoute): Promise<void> {
  await handleCommand(log, routeStreamId(route.routeId), routeDecider, { type: 'AddRoute', route }, { meta: { site, actor: { kind: 'user', id: 'ops@example.com' } } });
}

/** The source event ids of the notices in a webhook body of format json. */
export function noticeIds(body: string): string[] {
  return (JSON.parse(body) as { notices: Array<{ id: string }> }).notices.map((n) => n.id);
}
