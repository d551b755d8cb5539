// What deserves a notification: a pure mapping from a log event to a notice (kind, severity,
// site, VM, a title and a text a person reads), or nothing. The notifier keeps, per job, the
// VM it backs up (from JobRequested), so a JobFailed can be routed by VM.
import type { NotificationKind, NotificationMatch, NotificationSeverity } from '@cairn/contracts';

export interface Notice {
  /** The source event's id: the idempotency key of the notice. */
  readonly id: string;
  /** The source event's position in the log. */
  readonly position: string;
  readonly kind: NotificationKind;
  readonly severity: NotificationSeverity;
  readonly site: string;
  readonly vmId?: string;
  readonly title: string;
  readonly text: string;
  readonly time: string;
}

const SEVERITY_RANK: Record<NotificationSeverity, number> = { info: 0, warning: 1, error: 2, critical: 3 };

/** The kinds a route without `kinds` gets: what an operator must act on. */
export const DEFAULT_KINDS: readonly NotificationKind[] = ['job-failed', 'test-restore-failed', 'damage-found', 'rpo-missed', 'approval-waiting', 'dead-letter', 'credential-expiring', 'replication-behind'];

export function matches(match: NotificationMatch, notice: Notice): boolean {
  if (notice.kind === 'test') return true;
  if (!(match.kinds ?? DEFAULT_KINDS).includes(notice.kind)) return false;
  if (SEVERITY_RANK[notice.severity] < SEVERITY_RANK[match.minSeverity ?? (match.kinds ? 'info' : 'warning')]) return false;
  if (match.sites && !match.sites.includes(notice.site)) return false;
  if (match.vmIds && (!notice.vmId || !match.vmIds.includes(notice.vmId))) return false;
  return true;
}

/** The VMs of jobs seen so far (bounded: the oldest are forgotten first). */
export class JobVms {
  private readonly vms = new Map<string, string>();
  constructor(private readonly max = 100_000) {}
  note(event: { type: string; data: unknown }): void {
    if (event.type !== 'JobRequested') return;
    const d = event.data as { jobId: string; vmId: string };
    this.vms.set(d.jobId, d.vmId);
    if (this.vms.size > this.max) this.vms.delete(this.vms.keys().next().value!);
  }
  vmOf(jobId: string): string | undefined {
    return this.vms.get(jobId);
  }
}

interface SourceEvent {
  readonly id: string;
  readonly type: string;
  readonly time: string;
  readonly site: string;
  readonly data: unknown;
}

/** The notice an event gives, or undefined. */
export function noticeOf(event: SourceEvent, position: bigint, jobs: { vmOf(jobId: string): string | undefined }): Notice | undefined {
  const base = { id: event.id, position: position.toString(), site: event.site, time: event.time };
  const d = event.data as Record<string, unknown>;
  switch (event.type) {
    case 'JobFailed': {
      const vmId = jobs.vmOf(String(d['jobId']));
      return {
        ...base, kind: 'job-failed', severity: 'error', ...(vmId ? { vmId } : {}),
        title: `Backup job ${String(d['jobId'])} failed${vmId ? ` (VM ${vmId})` : ''}`,
        text: `Phase ${String(d['phase'])}: ${String(d['reason'])}${d['retryable'] ? ' (retryable)' : ''}`,
      };
    }
    case 'ReplicaVerified':
      if (d['ok']) return undefined;
      return {
        ...base, kind: 'damage-found', severity: 'critical',
        title: `Damage found in the copy of site ${String(d['sourceSite'])}'s repository`,
        text: `${String(d['damagedCount'])} damaged object(s) of ${String(d['objectsChecked'])} checked`,
      };
    case 'ReplicationBehind': {
      const newest = d['newestUnreplicated'] as { restorePointId: string; vmId: string; committedAt: string };
      return {
        ...base, kind: 'replication-behind', severity: 'warning',
        title: `Replication from ${String(d['sourceSite'])} to ${String(d['targetSite'])} is ${String(d['lagMinutes'])} min behind (allowed ${String(d['maxLagMinutes'])})`,
        text: `${String(d['unreplicated'])} restore point(s) not at ${String(d['targetSite'])}; the newest: ${newest.restorePointId} of VM ${newest.vmId}, committed ${newest.committedAt} (policy ${String(d['policyId'])})`,
      };
    }
    case 'ReplicationCaughtUp':
      return {
        ...base, kind: 'replication-caught-up', severity: 'info',
        title: `Replication from ${String(d['sourceSite'])} to ${String(d['targetSite'])} caught up`,
        text: `${String(d['unreplicated'])} restore point(s) still on their way, within the allowed lag (policy ${String(d['policyId'])})`,
      };
    case 'CredentialExpiring':
      if (d['credential'] === 'certificate') return {
        ...base, kind: 'credential-expiring', severity: 'warning',
        title: `Certificate ${String(d['name'])} (${String(d['owner'])}) expires ${String(d['expiresAt'])}`,
        text: `${String(d['daysLeft'])} day(s) left: issue a new one from the site CA and restart the services that use it, before TLS connections are refused`,
      };
      return {
        ...base, kind: 'credential-expiring', severity: 'warning',
        title: `API token ${String(d['name'])} of ${String(d['owner'])} expires ${String(d['expiresAt'])}`,
        text: `${String(d['daysLeft'])} day(s) left: issue a new one (cairn token create) before it stops working`,
      };
    case 'RestorePointDamaged':
      return {
        ...base, kind: 'damage-found', severity: 'critical', vmId: String(d['vmId']),
        title: `Restore point ${String(d['restorePointId'])} of VM ${String(d['vmId'])} is damaged`,
        text: `Verify ${String(d['verifyId'])} found ${String(d['damagedCount'])} damaged object(s) it uses; the VM's next backup reads it whole and sends them again`,
      };
    case 'TestRestoreRefused':
      return {
        ...base, kind: 'test-restore-failed', severity: 'error', vmId: String(d['vmId']),
        title: `Scheduled test restore of ${String(d['restorePointId'])} (VM ${String(d['vmId'])}) did not run`,
        text: `${String(d['reason'])} (policy ${String(d['policyId'])})`,
      };
    case 'TestRestoreFailed':
      return {
        ...base, kind: 'test-restore-failed', severity: 'error', vmId: String(d['vmId']),
        title: `Test restore of ${String(d['restorePointId'])} (VM ${String(d['vmId'])}) failed: ${String(d['check'])}`,
        text: `${String(d['reason'])}\nConsole tail: ${String(d['consoleTail']).slice(-500)}`,
      };
    case 'RpoMissed':
      return {
        ...base, kind: 'rpo-missed', severity: 'error', vmId: String(d['vmId']),
        title: `VM ${String(d['vmId'])} is out of its RPO of ${String(d['rpoMinutes'])} min`,
        text: `Policy ${String(d['policyId'])}; newest restore point: ${d['lastRestorePointAt'] ? String(d['lastRestorePointAt']) : 'none'}; missed since ${String(d['missedSince'])}`,
      };
    case 'RpoRestored':
      return {
        ...base, kind: 'rpo-restored', severity: 'info', vmId: String(d['vmId']),
        title: `VM ${String(d['vmId'])} is within its RPO again`,
        text: `Restore point ${String(d['restorePointId'])} at ${String(d['restorePointAt'])} (policy ${String(d['policyId'])})`,
      };
    case 'ApprovalRequested': {
      const action = d['action'] as { kind: string };
      return {
        ...base, kind: 'approval-waiting', severity: 'warning',
        title: `Approval waiting: ${action.kind} asked by ${String(d['requestedBy'])}`,
        text: `Approval ${String(d['approvalId'])} needs a second administrator${d['reason'] ? `: ${String(d['reason'])}` : ''}`,
      };
    }
    case 'MessageDeadLettered':
      return {
        ...base, kind: 'dead-letter', severity: 'warning',
        title: `A message was given up on by ${String(d['consumer'])}`,
        text: `${String(d['subject'])} after ${String(d['deliveries'])} deliveries: ${String(d['reason'])}`,
      };
    default:
      return undefined;
  }
}
