import { describe, expect, it } from 'vitest';
import type { CatalogueQueries } from './gateway.service.ts';
import { MetricsService } from './metrics.service.ts';
import { renderExposition } from './metrics.exposition.ts';

function fakeCatalogue(answer: (name: string, req: Record<string, unknown>) => unknown): CatalogueQueries {
  return { query: async (name, req) => answer(name, req as Record<string, unknown>) as never };
}

const stats = {
  position: 7,
  jobsByState: { requested: 0, running: 2, completed: 1500, failed: 1, cancelled: 0 },
  runningByPhase: { schedule: 0, snapshot: 1, transfer: 1, commit: 0, release: 0 },
  restorePoints: { total: 1502, live: 1501, expired: 1 },
  bytesRead: 4_000_000_000, bytesStored: 2_000_000_000, liveBytesRead: 3_999_000_000, liveBytesStored: 1_999_000_000,
  completed: { jobs: 1500, bytesRead: 3_000_000_000, durationMs: 1_500_000 },
  vms: 12,
  testRestores: { running: 1, passed: 40, failed: 2, refused: 3 },
  restorePointsBootTested: { passed: 38, failed: 2, damaged: 0 },
};

describe('MetricsService', () => {
  it('exports the catalogue\'s exact aggregates: counts past any list limit, sums, ratio, throughput, running phases', async () => {
    const asked: string[] = [];
    const catalogue = fakeCatalogue((name) => {
      asked.push(name);
      switch (name) {
        case 'catalogue.status': return { position: 7, head: 9, lag: 2 };
        case 'catalogue.stats': return stats;
        default: throw new Error(name);
      }
    });
    const text = renderExposition(await new MetricsService(catalogue, { pending: async () => 4 }).collect());
    expect(asked.sort()).toEqual(['catalogue.stats', 'catalogue.status']);
    expect(text).toContain('cairn_catalogue_up 1\n');
    expect(text).toContain('cairn_jobs{state="running"} 2\n');
    expect(text).toContain('cairn_jobs{state="completed"} 1500\n');
    expect(text).toContain('cairn_jobs{state="failed"} 1\n');
    expect(text).toContain('cairn_job_phase_running{phase="transfer"} 1\n');
    expect(text).toContain('cairn_job_phase_running{phase="snapshot"} 1\n');
    expect(text).toContain('cairn_job_phase_running{phase="commit"} 0\n');
    expect(text).toContain('cairn_backup_bytes_read_total 4000000000\n');
    expect(text).toContain('cairn_backup_bytes_stored_total 2000000000\n');
    expect(text).toContain('cairn_dedup_ratio 2\n');
    expect(text).toContain('cairn_backup_jobs_completed_total 1500\n');
    expect(text).toContain('cairn_backup_seconds_total 1500\n');
    expect(text).toContain('cairn_backup_throughput_bytes_per_second 2000000\n');
    expect(text).toContain('cairn_restore_points 1501\n');
    expect(text).toContain('cairn_restore_points_expired 1\n');
    expect(text).toContain('cairn_vms 12\n');
    // Test restores by outcome, refused ones (scheduled, not started by a data mover) too.
    expect(text).toContain('cairn_test_restores_total{outcome="passed"} 40\n');
    expect(text).toContain('cairn_test_restores_total{outcome="failed"} 2\n');
    expect(text).toContain('cairn_test_restores_total{outcome="running"} 1\n');
    expect(text).toContain('cairn_test_restores_total{outcome="refused"} 3\n');
    expect(text).toContain('cairn_restore_points_boot_tested{outcome="passed"} 38\n');
    expect(text).toContain('cairn_catalogue_lag_events 2\n');
    expect(text).toContain('cairn_work_queue_pending 4\n');
  });

  it('still answers when the catalogue or JetStream does not, saying so', async () => {
    const down = fakeCatalogue(() => { throw Object.assign(new Error('no responders'), { code: 'unavailable' }); });
    const text = renderExposition(await new MetricsService(down, { pending: () => Promise.reject(new Error('timeout')) }).collect());
    expect(text).toContain('cairn_catalogue_up 0\n');
    expect(text).not.toContain('cairn_jobs');
    expect(text).toContain('cairn_work_queue_pending NaN\n');
  });
});
