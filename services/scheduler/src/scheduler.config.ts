// The scheduler's configuration, validated once at start-up into one typed object.
import type { Actor } from '@cairn/contracts';
import { DEFAULT_MIN_SCHEDULE_INTERVAL_MS, DEFAULT_TIMEOUTS, type JobTimeouts } from '@cairn/jobs';

export interface SchedulerConfig {
  readonly site: string;
  readonly actor: Actor;
  /** Repositories policies may name (a policy naming another one is refused). */
  readonly repositories: readonly string[];
  readonly timeouts: JobTimeouts;
  /** Jobs running at once on one hypervisor host. */
  readonly maxJobsPerHost: number;
  /** Jobs writing to one repository at once (absent: no limit of its own). */
  readonly maxJobsPerRepository?: number;
  /** Leadership lease: how long a dead leader holds it. */
  readonly leaseTtlMs: number;
  /** How often every open job and schedule is looked at (besides reacting to events). */
  readonly tickMs: number;
  /** Delay before an action that failed for a transient reason is tried again (doubles, capped). */
  readonly retryBaseMs: number;
  readonly snapshotCommandTimeoutMs: number;
  /** The shortest time a policy's schedule may leave between two backups (default 5 min). */
  readonly minScheduleIntervalMs: number;
  /** Four-eyes approvals need both people's signatures (a secure site; docs/security.md). */
  readonly signedApprovals?: boolean;
  /** How many days before an API token expires CredentialExpiring is raised (default 14). */
  readonly expiryWarnDays?: number;
  /**
   * The site's security directory (`cairn up --secure`, `cairn run --security-dir`): its TLS
   * certificates get CredentialExpiring like API tokens (looked at every 10 minutes at most).
   */
  readonly certificateDir?: string;
  /**
   * The secure hub this site joined (its bundle, `cairn up --hub-credentials`): its id and the
   * tags it gave the site. Global policy statements must name this hub and select this site.
   */
  readonly hub?: { readonly id: string; readonly tags: readonly string[] };
}

export function schedulerConfig(input: Partial<SchedulerConfig> & { site: string }): SchedulerConfig {
  const c: SchedulerConfig = {
    actor: { kind: 'service', id: `scheduler@${input.site}` },
    repositories: ['default'],
    timeouts: DEFAULT_TIMEOUTS,
    maxJobsPerHost: 2,
    leaseTtlMs: 10_000,
    tickMs: 1_000,
    retryBaseMs: 500,
    snapshotCommandTimeoutMs: 120_000,
    // CAIRN_MIN_SCHEDULE_INTERVAL_MS: a site (or a test) that wants backups more often than every 5 min.
    minScheduleIntervalMs: Number(process.env['CAIRN_MIN_SCHEDULE_INTERVAL_MS'] ?? DEFAULT_MIN_SCHEDULE_INTERVAL_MS),
    ...input,
  };
  const problems: string[] = [];
  if (c.maxJobsPerHost < 1) problems.push('maxJobsPerHost must be at least 1');
  if (c.maxJobsPerRepository !== undefined && !(Number.isInteger(c.maxJobsPerRepository) && c.maxJobsPerRepository >= 1)) problems.push('maxJobsPerRepository must be a whole number of at least 1');
  if (c.leaseTtlMs < 1000) problems.push('leaseTtlMs must be at least 1000');
  if (c.tickMs < 50) problems.push('tickMs must be at least 50');
  if (!(c.minScheduleIntervalMs >= 1000)) problems.push('minScheduleIntervalMs must be at least 1000');
  if (c.repositories.length === 0) problems.push('at least one repository must be configured');
  if (problems.length) throw new Error(`invalid scheduler configuration: ${problems.join('; ')}`);
  return c;
}
