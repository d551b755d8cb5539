// The console's reads, one hook each, keyed so the live feed can mark them stale (main.tsx).
import { useQuery } from '@tanstack/preact-query';
import { api, qs, type Approval, type GlobalPolicies, type Health, type Instant, type Items, type Job, type JobDetail, type Policy, type Replica, type RestoreJob, type RestorePoint, type SitesHealth, type Vm } from './api.ts';

export const useVms = () => useQuery({ queryKey: ['vms'], queryFn: () => api<Items<Vm>>('/v1/vms') });
export const useVm = (vmId: string) => useQuery({ queryKey: ['vm', vmId], queryFn: () => api<Vm>(`/v1/vms/${encodeURIComponent(vmId)}`) });
export const useJobs = (filter: { state?: string; vmId?: string; kind?: string; limit?: number } = {}) =>
  useQuery({ queryKey: ['jobs', filter], queryFn: () => api<Items<Job>>(`/v1/jobs${qs({ limit: 200, ...filter })}`) });
export const useJob = (jobId: string) => useQuery({ queryKey: ['job', jobId], queryFn: () => api<JobDetail>(`/v1/jobs/${encodeURIComponent(jobId)}`) });
export const useRestorePoints = (filter: { vmId?: string } = {}) =>
  useQuery({ queryKey: ['restore-points', filter], queryFn: () => api<Items<RestorePoint>>(`/v1/restore-points${qs({ limit: 500, ...filter })}`) });
export const usePolicies = () => useQuery({ queryKey: ['policies'], queryFn: () => api<Items<Policy>>('/v1/policies') });
export const useApprovals = (status?: string) => useQuery({ queryKey: ['approvals', status ?? 'all'], queryFn: () => api<Items<Approval>>(`/v1/approvals${qs({ status })}`) });
export const useReplicas = () => useQuery({ queryKey: ['replicas'], queryFn: () => api<Items<Replica>>('/v1/replicas?limit=500') });
/** Every site's health, asked only at the hub's gateway (`enabled`); read again every 30 s (silence is no event at the hub's gateway feed). */
export const useSitesHealth = (enabled: boolean) => useQuery({
  queryKey: ['sites-health'], enabled, refetchInterval: 30_000,
  queryFn: () => api<SitesHealth>('/v1/sites/health'),
});
/** The hub's global policies and each site's applied version, asked only at the hub's gateway (`enabled`); read again every 30 s. */
export const useGlobalPolicies = (enabled: boolean) => useQuery({
  queryKey: ['global-policies'], enabled, refetchInterval: 30_000,
  queryFn: () => api<GlobalPolicies>('/v1/global-policies'),
});
export const useHealth = () => useQuery({
  queryKey: ['health'], refetchInterval: 30_000,
  queryFn: async () => {
    const res = await fetch('/health', { headers: { Accept: 'application/json' } });
    return (await res.json()) as Health;
  },
});
export const useRestoreJob = (restoreId: string | undefined) => useQuery({
  queryKey: ['restore-job', restoreId], enabled: Boolean(restoreId),
  queryFn: () => api<RestoreJob>(`/v1/restore-jobs/${encodeURIComponent(restoreId!)}`),
});
/** Instant recovery sessions, ended ones too. Their states come with the feed; overlay sizes grow without an event, so while one is live the list is read again every 5 s. */
export const useInstants = () => useQuery({
  queryKey: ['instant'],
  queryFn: () => api<Items<Instant>>('/v1/instant-recoveries?all=true&limit=500'),
  refetchInterval: (q) => ((q.state.data?.items ?? []).some((i) => ['starting', 'serving', 'mirroring'].includes(i.state)) ? 5_000 : false),
});
