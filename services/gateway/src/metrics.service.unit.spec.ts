import { describe, expect, it } from 'vitest';
import type { CatalogueQueries } from './gateway.service.ts';
import { MetricsService } from './metrics.service.ts';
import { renderExposition } from './metrics.exposition.ts';

const job = (jobId: string, state: string) => ({ jobId, state });
const rp = (bytesRead: number, bytesStored: number, expiredAt: string | null) => ({ bytesRead, bytesStored, expiredAt });

function fakeCatalogue(answer: (name: string, req: Record<string, unknown>) => unknown): CatalogueQueries {
  return { query: async (name, req) => answer(name, req as Record<string, unknown>) as never };
}

describe('MetricsService', () => {
  it('derives counts, sums, ratio and running phases from the catalogue answers', async () => {
    const catalogue = fakeCatalogue((name, req) => {
      switch (name) {
        case 'catalogue.status': return { position: 7, head: 9, lag: 2 };
        case 'job.list': return { items: req['state'] === 'running' ? [job('a', 'running'), job('b', 'running')] : req['state'] === 'failed' ? [job('c', 'failed')] : [] };
        case 'job.get': return { phases: req['jobId'] === 'a'
          ? [{ phase: 'snapshot', state: 'done' }, { phase: 'transfer', state: 'running' }]
          : [{ phase: 'snapshot', state: 'running' }] };
        case 'restorePoint.list': return { items: [rp(300, 100, null), rp(100, 100, '2026-01-01T00:00:00Z')] };
        default: throw new Error(name);
      }
    });
    const text = renderExposition(await new MetricsService(catalogue, { pending: async () => 4 }).collect());
    expect(text).toContain('cairn_catalogue_up 1\n');
    expect(text).toContain('cairn_jobs{state="running"} 2\n');
    expect(text).toContain('cairn_jobs{state="failed"} 1\n');
    expect(text).toContain('cairn_job_phase_running{phase="transfer"} 1\n');
    expect(text).toContain('cairn_job_phase_running{phase="snapshot"} 1\n');
    expect(text).toContain('cairn_job_phase_running{phase="commit"} 0\n');
    expect(text).toContain('cairn_backup_bytes_read_total 400\n');
    expect(text).toContain('cairn_backup_bytes_stored_total 200\n');
    expect(text).toContain('cairn_dedup_ratio 2\n');
    expect(text).toContain('cairn_restore_points 1\n');
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
