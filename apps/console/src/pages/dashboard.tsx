// Dashboard: one tile per concern, each linking to its page, all kept current by the live feed.
import { useEffect, useState } from 'preact/hooks';
import { useFeed } from '../live.ts';
import { useApprovals, useHealth, useJobs, usePolicies, useReplicas, useRestorePoints, useSitesHealth, useVms } from '../queries.ts';
import { HUB_SITE, summarizeSite } from '../site-health.ts';
import { minutesInWords, rpoOfVms } from '../rpo.ts';
import { useSession } from '../session.tsx';
import { Page, Progress, StateBadge, bytes, shortId, when } from '../ui.tsx';
import type { Job, JobState } from '../api.ts';

const DAY_MS = 24 * 3600_000;

/** A duration in the largest whole unit (`45 s`, `12 min`, `3 h`, `2 d`). */
function ago(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 60 ? `${s} s` : s < 3600 ? `${Math.floor(s / 60)} min` : s < 86_400 ? `${Math.floor(s / 3600)} h` : `${Math.floor(s / 86_400)} d`;
}

export function Dashboard() {
  const live = useFeed();
  const session = useSession();
  const vms = useVms();
  const jobs = useJobs({ kind: 'backup', limit: 500 }); // the backups tile: restores are listed on the jobs page
  const points = useRestorePoints();
  const approvals = useApprovals('pending');
  const health = useHealth();
  const replicas = useReplicas();
  const policies = usePolicies();
  // RPOs age with the clock, not only with events: look again every 30 s.
  const [, setTick] = useState(0);
  useEffect(() => { const t = setInterval(() => setTick((n) => n + 1), 30_000); return () => clearInterval(t); }, []);
  const now = Date.now();

  const vmList = vms.data?.items ?? [];
  const rpo = rpoOfVms(vmList, policies.data?.items ?? [], new Date(now));
  const covered = rpo.filter((r) => r.within !== null);
  const missed = covered.filter((r) => !r.within);
  const uncovered = rpo.length - covered.length;
  const recent = (jobs.data?.items ?? []).filter((j) => now - Date.parse(j.requestedAt) < DAY_MS);
  // The feed is ahead of the catalogue: a job's state from its latest live event wins.
  const stateOf = (j: Job): JobState => live.jobStates.get(j.jobId) ?? j.state;
  const liveOnly = [...live.jobStates.entries()].filter(([id]) => !recent.some((j) => j.jobId === id));
  const counts = { completed: 0, failed: 0, running: 0 };
  for (const j of recent) {
    const s = stateOf(j);
    if (s === 'completed') counts.completed++;
    else if (s === 'failed') counts.failed++;
    else if (s === 'running' || s === 'requested') counts.running++;
  }
  for (const [, s] of liveOnly) {
    if (s === 'failed') counts.failed++;
    else if (s === 'running' || s === 'requested') counts.running++;
    else if (s === 'completed') counts.completed++;
  }
  const running = recent.filter((j) => ['running', 'requested'].includes(stateOf(j)));
  const live_points = (points.data?.items ?? []).filter((p) => !p.expiredAt);
  const read = live_points.reduce((n, p) => n + p.bytesRead, 0);
  const stored = live_points.reduce((n, p) => n + p.bytesStored, 0);
  const pending = approvals.data?.items.length ?? 0;
  // Replication lag per site holding copies: how old its newest copy is (the Sites page has the detail).
  const copies = new Map<string, string>();
  for (const r of replicas.data?.items ?? []) if (r.committedAt > (copies.get(r.site) ?? '')) copies.set(r.site, r.committedAt);
  const isHub = health.data?.site === HUB_SITE;
  // At the hub: every site's health (leaf link, contact, event lag, failures, RPO misses, replication lag per pair).
  const sitesHealth = useSitesHealth(isHub);
  const siteSummaries = (sitesHealth.data?.items ?? []).map((s) => summarizeSite(s, now));
  const sitesBad = siteSummaries.some((s) => s.verdict === 'bad');
  const sitesWarn = siteSummaries.some((s) => s.verdict === 'warn');

  return (
    <Page title="Dashboard">
      <div class="tiles">
        <a class={`tile ${missed.length > 0 ? 'bad' : covered.length > 0 ? 'good' : ''}`} href="/vms" data-tile="vms" data-rpo-missed={missed.length} data-rpo-within={covered.length - missed.length}>
          <h2>Protected VMs</h2>
          <p class="big">{vmList.length}</p>
          <p>{covered.length - missed.length} of {covered.length} within their RPO{uncovered ? ` · ${uncovered} under no active policy` : ''}</p>
          <ul class="mini">{rpo.slice(0, 5).map((r) => (
            <li key={r.vmId} data-vm={r.name} data-rpo={r.within === null ? 'none' : r.within ? 'within' : 'missed'}>
              {r.name}{r.rpoMinutes === null ? <span class="muted"> · no policy</span> : r.within ? <span class="muted"> · RPO {minutesInWords(r.rpoMinutes)}</span> : <strong> · RPO {minutesInWords(r.rpoMinutes)} missed</strong>}
            </li>
          ))}</ul>
        </a>
        <a class={`tile ${counts.failed > 0 ? 'bad' : 'good'}`} href={counts.failed > 0 ? '/jobs?state=failed' : '/jobs'} data-tile="jobs" data-status={counts.failed > 0 ? 'failed' : 'ok'}>
          <h2>Jobs, last 24 h</h2>
          <p class="big">{counts.completed} ok · {counts.failed} failed · {counts.running} running</p>
          {running.slice(0, 3).map((j) => (
            <div key={j.jobId} class="tile-job"><span>{shortId(j.jobId)}</span><Progress percent={live.percentOf(j.jobId, stateOf(j))} label={`job ${j.jobId} progress`} /></div>
          ))}
        </a>
        <a class="tile" href="/vms" data-tile="storage">
          <h2>Storage</h2>
          <p class="big">{bytes(stored)}</p>
          <p>{bytes(read)} read from disks · deduplication and compression {stored > 0 ? `${(read / stored).toFixed(1)}×` : '—'}</p>
          <p>{live_points.length} restore points</p>
        </a>
        <a class={`tile ${sitesBad ? 'bad' : sitesWarn ? 'warn' : ''}`} href="/sites" data-tile="sites">
          <h2>Sites</h2>
          <p class="big">{health.data ? health.data.site : '—'} <StateBadge state={health.data?.status ?? 'unknown'} /></p>
          <p>catalogue lag {health.data?.catalogue.lag ?? '—'} events</p>
          {copies.size ? (
            <ul class="mini">{[...copies].slice(0, 4).map(([site, latest]) => (
              <li key={site} data-site={site}>copies at {site}: newest {ago(now - Date.parse(latest))} ago</li>
            ))}</ul>
          ) : <p class="muted" data-replication="none">no copies at other sites</p>}
          {isHub ? (
            sitesHealth.error ? <p class="muted" data-hub="error">site health: {(sitesHealth.error as Error).message}</p>
              : siteSummaries.length ? (
                <ul class="mini" data-hub="sites">{siteSummaries.map((s) => (
                  <li key={s.site} data-site-health={s.site} data-verdict={s.verdict}>{s.verdict === 'ok' ? s.line : <strong>{s.line}</strong>}</li>
                ))}</ul>
              ) : <p class="muted" data-hub="none">{sitesHealth.isLoading ? 'asking the hub for every site…' : 'no site is linked to the hub yet (cairn hub add-site)'}</p>
          ) : null}
          {health.data && !isHub ? <p class="muted" data-hub="no">This gateway's site only: every site's health is seen at the hub (<code>cairn site list</code> there).</p> : null}
        </a>
        <a class={`tile ${pending > 0 ? 'warn' : ''}`} href="/approvals" data-tile="approvals">
          <h2>Approvals waiting</h2>
          <p class="big">{pending}</p>
          <p>{session.can('admin') ? 'four-eyes requests for a second administrator' : 'administrators decide these'}</p>
        </a>
      </div>
      <section class="activity" aria-labelledby="activity-title">
        <h2 id="activity-title">Live activity</h2>
        {live.events.length === 0 ? <p class="muted">Events appear here as they happen.</p> : (
          <ol class="events" aria-live="polite" aria-relevant="additions">
            {live.events.slice(0, 50).map((e) => (
              <li key={e.position} data-position={e.position} data-event-id={e.id}>
                <span class="muted">{when(e.time)}</span> <strong>{e.type}</strong> <span class="muted">{e.streamId} · {e.actor.id}</span>
              </li>
            ))}
          </ol>
        )}
      </section>
    </Page>
  );
}
