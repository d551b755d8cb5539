// Builds the gateway's Prometheus metrics at scrape time from catalogue queries and the site's
// JetStream work queue. Nothing is kept between scrapes: every value is read fresh, so replicas
// of the gateway all export the same numbers.
import { Inject, Injectable } from '@nestjs/common';
import { JobPhase } from '@cairn/contracts';
import type { CatalogueStats, JobState } from '@cairn/catalogue-client';
import { GATEWAY_CATALOGUE, GATEWAY_WORK_QUEUE } from './gateway.tokens.ts';
import type { CatalogueQueries } from './gateway.service.ts';
import type { MetricFamily } from './metrics.exposition.ts';

/** How many messages wait in the site's work stream (0 when the stream does not exist yet). */
export interface WorkQueueProbe {
  pending(): Promise<number>;
}

export const JOB_STATES: readonly JobState[] = ['requested', 'running', 'completed', 'failed', 'cancelled'];
const PHASES: readonly string[] = JobPhase.anyOf.map((s) => s.const);

const gauge = (name: string, help: string, value: number): MetricFamily => ({ name, help, type: 'gauge', samples: [{ value }] });
const counter = (name: string, help: string, value: number): MetricFamily => ({ name, help, type: 'counter', samples: [{ value }] });

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
    let status, stats: CatalogueStats;
    try {
      // Exact aggregates computed by the catalogue in SQL (no list paging, no cap).
      [status, stats] = await Promise.all([
        this.catalogue.query('catalogue.status', {}),
        this.catalogue.query('catalogue.stats', {}),
      ]);
    } catch {
      // A scrape still answers (Prometheus keeps its own `up`), saying the catalogue was not there.
      return [gauge('cairn_catalogue_up', 'Whether the catalogue answered this scrape\'s queries (1) or not (0).', 0)];
    }
    const { bytesRead: read, bytesStored: stored, completed } = stats;
    const seconds = completed.durationMs / 1000;
    return [
      gauge('cairn_catalogue_up', 'Whether the catalogue answered this scrape\'s queries (1) or not (0).', 1),
      {
        name: 'cairn_jobs', type: 'gauge',
        help: 'Backup jobs in the catalogue by state.',
        samples: JOB_STATES.map((state) => ({ labels: { state }, value: stats.jobsByState[state] ?? 0 })),
      },
      {
        name: 'cairn_job_phase_running', type: 'gauge',
        help: 'Running jobs by the phase they are in.',
        samples: PHASES.map((phase) => ({ labels: { phase }, value: stats.runningByPhase[phase] ?? 0 })),
      },
      counter('cairn_backup_bytes_read_total', 'Bytes read from VM disks by completed backups (all restore points, expired included).', read),
      counter('cairn_backup_bytes_stored_total', 'Bytes written to the repository by completed backups, after dedup and compression (all restore points, expired included).', stored),
      gauge('cairn_dedup_ratio', 'Bytes read over bytes stored across all restore points (NaN while nothing is stored).', stored > 0 ? read / stored : NaN),
      counter('cairn_backup_jobs_completed_total', 'Backup jobs completed.', completed.jobs),
      counter('cairn_backup_seconds_total', 'Time completed backup jobs took, request to completion, summed.', seconds),
      gauge('cairn_backup_throughput_bytes_per_second', 'Bytes read by completed backups over the time they took (NaN before the first).', seconds > 0 ? completed.bytesRead / seconds : NaN),
      gauge('cairn_restore_points', 'Restore points not expired.', stats.restorePoints.live),
      gauge('cairn_restore_points_expired', 'Restore points expired by retention (their chunks go at the next garbage collection).', stats.restorePoints.expired),
      gauge('cairn_vms', 'Virtual machines in the inventory.', stats.vms),
      {
        name: 'cairn_test_restores_total', type: 'counter',
        help: 'Test restores (restore points booted in isolation and judged) by outcome; running ones are under way, refused ones (scheduled, not started by a data mover) did not run.',
        samples: ['passed', 'failed', 'running', 'refused'].map((outcome) => ({ labels: { outcome }, value: stats.testRestores?.[outcome] ?? 0 })),
      },
      {
        name: 'cairn_restore_points_boot_tested', type: 'gauge',
        help: 'Restore points not expired by the outcome of their newest test restore (never tested ones are not counted).',
        samples: (['passed', 'failed'] as const).map((outcome) => ({ labels: { outcome }, value: stats.restorePointsBootTested?.[outcome] ?? 0 })),
      },
      gauge('cairn_restore_points_damaged', 'Restore points not expired that a verify found using damaged objects, not yet checked clean again.', stats.restorePointsBootTested?.damaged ?? 0),
      gauge('cairn_catalogue_position', 'Last event-log position projected by the catalogue replica that answered.', status.position),
      gauge('cairn_catalogue_head_position', 'Last event-log position the answering catalogue replica has seen.', status.head),
      gauge('cairn_catalogue_lag_events', 'Events in the log not yet projected by the catalogue replica that answered.', status.lag),
    ];
  }

  private async queueFamilies(): Promise<MetricFamily[]> {
    const help = 'Messages waiting in the site\'s JetStream work stream for a data mover (NaN when JetStream did not answer).';
    const value = await this.workQueue.pending().catch(() => NaN);
    return [gauge('cairn_work_queue_pending', help, value)];
  }
}
