// Entry: the query cache, the live feed's invalidations, and the app.
import { render } from 'preact';
import { QueryClient, QueryClientProvider } from '@tanstack/preact-query';
import { App } from './app.tsx';
import { feed } from './live.ts';
import './styles.css';

const queries = new QueryClient({ defaultOptions: { queries: { staleTime: 5_000, retry: 1, refetchOnWindowFocus: true } } });

// What a log event makes stale. The catalogue projects the same log a moment later than the
// feed delivers it, so the affected queries are fetched again now and once more shortly after.
const STALE_BY_CATEGORY: Record<string, string[]> = {
  job: ['jobs', 'job', 'vms', 'vm', 'restore-points', 'stats'],
  vm: ['vms', 'vm'],
  restorepoint: ['restore-points', 'vms', 'vm', 'stats'],
  policy: ['policies', 'policy'],
  approval: ['approvals'],
  replicacheck: ['replicas'],
  restore: ['restore-job', 'jobs', 'job'],
  instant: ['instant'],
  testrestore: ['restore-points', 'vm'],
  verify: ['restore-points', 'vm'],
};
const pending = new Set<string>();
let flush: ReturnType<typeof setTimeout> | undefined;
function invalidateSoon(keys: readonly string[]): void {
  for (const k of keys) pending.add(k);
  pending.add('audit');
  if (flush) return;
  flush = setTimeout(() => {
    const keys = [...pending];
    pending.clear();
    flush = undefined;
    const run = () => { for (const k of keys) void queries.invalidateQueries({ queryKey: [k] }); };
    run();
    setTimeout(run, 1500);
  }, 200);
}
feed.onEvent((e) => invalidateSoon(STALE_BY_CATEGORY[e.streamId.split('-')[0] ?? ''] ?? []));

render(
  <QueryClientProvider client={queries}>
    <App />
  </QueryClientProvider>,
  document.getElementById('app')!,
);
