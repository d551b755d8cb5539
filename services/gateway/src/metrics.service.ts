// Builds the gateway's Prometheus metrics at scrape time from catalogue queries and the site's
// JetStream work queue. Nothing is kept between scrapes: every value is read fresh, so replicas
// of the gateway all export the same numbers.
import { Inject, Injectable } from '@nestjs/common';
import { JobPhase } from '@cairn/contracts';
import type { JobState, JobView, RestorePointView } from '@cairn/catalogue-client';
import { GATEWAY_CATALOGUE, GATEWAY_WORK_QUEUE } from './gateway.tokens.ts';
import type { CatalogueQueries } from './gateway.service.ts';
import type { MetricFamily } from './metrics.exposition.ts';

/** How many messages wait in the site's work stream (0 when the stream does not exist yet). */
export interface WorkQueueProbe {
  pending(): Promise<number>;
}

export const JOB_STATES: readonly JobState[] = ['requested', 'running', 'completed', 'failed', 'cancelled'];
/** The catalogue answers at most this many items per list query; counts stop there. */
export const LIST_CAP = 1000;
/** Phases of at most this many running jobs are looked up per scrape (one query each). */
export const PHASE_LOOKUP_CAP = 100;
const PHASES: readonly string[] = JobPhase.anyOf.map((s) => s.const);

const gauge = (name: string, help: string, value: number): MetricFamily => ({ name, help, type: 'gauge', samples: [{ value }] });

@Injectable()
export class MetricsService {
  constructor(
    @Inject(GATEWAY_CATALOGUE) private readonly catalogue: CatalogueQueries,
    @Inject(GATEWAY_WORK_QUEUE) private readonly workQueue: WorkQueueProbe,
  ) {}

  async collect(): Promise<MetricFamily[]> {
    const [catalogue, queue] = await Promise.all([this.catalogueFamilies(), this.queueFamilies()]);
    return [...catalogue, ...queue];
  }

  private async catalogueFamilies(): Promise<MetricFamily[]> {
    let status, jobs: JobView[][], points: RestorePointView[];
    try {
      [status, jobs, points] = await Promise.all([
        this.catalogue.query('catalogue.status', {}),
        Promise.all(JOB_STATES.map((state) => this.catalogue.query('job.list', { state, limit: LIST_CAP }).then((r) => r.items))),
        this.catalogue.query('restorePoint.list', { includeExpired: true, limit: LIST_CAP }).then((r) => r.items),
      ]);
    } catch {
      // A scrape still answers (Prometheus keeps its own `up`), saying the catalogue was not there.
      return [gauge('cairn_catalogue_up', 'Whether the catalogue answered this scrape\'s queries (1) or not (0).', 0)];
    }
    const phases = await this.runningPhases(jobs[JOB_STATES.indexOf('running')]!);
    const read = points.reduce((n, p) => n + p.bytesRead, 0);
    const stored = points.reduce((n, p) => n + p.bytesStored, 0);
    return [
      gauge('cairn_catalogue_up', 'Whether the catalogue answered this scrape\'s queries (1) or not (0).', 1),
      {
        name: 'cairn_jobs', type: 'gauge',
        help: `Backup jobs in the catalogue by state (each state counted up to ${LIST_CAP}).`,
        samples: JOB_STATES.map((state, i) => ({ labels: { state }, value: jobs[i]!.length })),
      },
      {
        name: 'cairn_job_phase_running', type: 'gauge',
        help: `Running jobs by the phase they are in (the first ${PHASE_LOOKUP_CAP} running jobs are looked at).`,
        samples: PHASES.map((phase) => ({ labels: { phase }, value: phases.get(phase) ?? 0 })),
      },
      { name: 'cairn_backup_bytes_read_total', type: 'counter', help: 'Bytes read from VM disks by completed backups (all restore points, expired included).', samples: [{ value: read }] },
      { name: 'cairn_backup_bytes_stored_total', type: 'counter', help: 'Bytes written to the repository by completed backups, after dedup and compression (all restore points, expired included).', samples: [{ value: stored }] },
      gauge('cairn_dedup_ratio', 'Bytes read over bytes stored across all restore points (NaN while nothing is stored).', stored > 0 ? read / stored : NaN),
      gauge('cairn_restore_points', 'Restore points not expired.', points.filter((p) => p.expiredAt === null).length),
      gauge('cairn_catalogue_position', 'Last event-log position projected by the catalogue replica that answered.', status.position),
      gauge('cairn_catalogue_head_position', 'Last event-log position the answering catalogue replica has seen.', status.head),
      gauge('cairn_catalogue_lag_events', 'Events in the log not yet projected by the catalogue replica that answered.', status.lag),
    ];
  }

  /** Counts running jobs by their running phase; a job whose details cannot be read is left out. */
  private async runningPhases(running: readonly JobView[]): Promise<Map<string, number>> {
    const counts = new Map<string, number>();
    const details = await Promise.all(running.slice(0, PHASE_LOOKUP_CAP).map((j) =>
      this.catalogue.query('job.get', { jobId: j.jobId }).catch(() => undefined)));
    for (const d of details) {
      const phase = d?.phases.findLast((p) => p.state === 'running')?.phase;
      if (phase) counts.set(phase, (counts.get(phase) ?? 0) + 1);
    }
    return counts;
  }

  private async queueFamilies(): Promise<MetricFamily[]> {
    const help = 'Messages waiting in the site\'s JetStream work stream for a data mover (NaN when JetStream did not answer).';
    const value = await this.workQueue.pending().catch(() => NaN);
    return [gauge('cairn_work_queue_pending', help, value)];
  }
}
