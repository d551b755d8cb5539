// Test data: the events of backup jobs, appended to a real log. Job B fails with a reason
// full of the characters CEF and syslog structured data must escape.
import { newEvent, type CairnEvent } from '@cairn/contracts';
import type { EventAppender } from '@cairn/eventlog';

export const NASTY_REASON = 'disk "sda" | pipe \\ backslash = equals ] bracket\nsecond line';

export function jobEvents(site: string, jobId: string, outcome: 'completed' | 'failed'): CairnEvent[] {
  const streamId = `job-${jobId}`;
  const user = { site, streamId, actor: { kind: 'user' as const, id: 'alice@example.com' }, correlationId: jobId };
  const svc = { site, streamId, actor: { kind: 'service' as const, id: `scheduler@${site}` }, correlationId: jobId };
  const snapshotId = `snap-${jobId}`;
  const events: CairnEvent[] = [
    newEvent('JobRequested', { jobId, vmId: 'vm-1', policyId: null, mode: 'auto', trigger: 'manual' }, user),
    newEvent('JobStarted', { jobId, attempt: 1 }, svc),
    newEvent('SnapshotRequested', { jobId, vmId: 'vm-1', snapshotId }, svc),
  ];
  if (outcome === 'failed') {
    events.push(
      newEvent('SnapshotFailed', { jobId, snapshotId, reason: NASTY_REASON }, svc),
      newEvent('JobFailed', { jobId, phase: 'snapshot', reason: NASTY_REASON, retryable: true }, svc),
    );
  } else {
    events.push(
      newEvent('SnapshotReleased', { jobId, snapshotId, cause: 'job_ended' }, svc),
      newEvent('JobCompleted', { jobId, restorePointId: `rp-${jobId}`, bytesRead: 1024, bytesStored: 512, durationMs: 42 }, svc),
    );
  }
  return events;
}

/** Appends the events of one job, one event per append (as the scheduler does). */
export async function appendJob(log: EventAppender, events: readonly CairnEvent[]): Promise<bigint> {
  let position = 0n;
  for (const e of events) position = (await log.append(e.streamId, [e], { expectedRevision: 'any' })).position;
  return position;
}
