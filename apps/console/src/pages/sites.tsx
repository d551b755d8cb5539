// Sites: this gateway's site and its health; at the hub (site "hub"), every site that holds
// or sends copies, with each site's latest copy as a measure of replication lag; and at the hub,
// every site's health as the hub sees it (GET /v1/sites/health, the same as `cairn site list` there)
// and the global policies, read-only (GET /v1/global-policies, as `cairn policy list --global`).
import { useGlobalPolicies, useHealth, useReplicas, useSitesHealth } from '../queries.ts';
import { HUB_SITE, durationInWords, summarizeSite } from '../site-health.ts';
import { Empty, ErrorBox, Page, StateBadge, Time, bytes } from '../ui.tsx';

/** At the hub: one row per site with its leaf link, last contact, silence, event lag, failures, RPO misses and replication lag per pair. */
function HubSitesHealth() {
  const q = useSitesHealth(true);
  const now = Date.now();
  const rows = (q.data?.items ?? []).map((s) => ({ s, sum: summarizeSite(s, now) }));
  return (
    <section aria-labelledby="hub-sites-title" data-hub="sites">
      <h2 id="hub-sites-title">Every site, as the hub sees it</h2>
      <ErrorBox error={q.error} />
      <div class="table-wrap">
        <table>
          <thead><tr>
            <th scope="col">Site</th><th scope="col">Leaf link</th><th scope="col">Last contact</th><th scope="col">Allowed gap</th><th scope="col">Silent</th><th scope="col">Event lag</th>
            <th scope="col">Failed jobs 24 h</th><th scope="col">RPO misses 24 h</th><th scope="col">Restore points</th><th scope="col">Replication lag per pair</th>
          </tr></thead>
          <tbody>
            {rows.map(({ s, sum }) => (
              <tr key={s.site} data-site-health={s.site} data-verdict={sum.verdict}>
                <th scope="row">{s.site}</th>
                <td data-col="link"><span class={`badge state-${s.leafLink === 'up' ? 'ok' : 'failed'}`}>{s.leafLink}</span></td>
                <td data-col="contact">{s.lastContactAt ? <><Time iso={s.lastContactAt} /> <span class="muted">({sum.lastContact})</span></> : 'never'}</td>
                <td data-col="gap">{durationInWords(s.allowedGapMs)}</td>
                <td data-col="silent">{s.silent ? <strong>silent (allowed gap {Math.round(s.allowedGapMs / 1000)} s)</strong> : 'no'}</td>
                <td data-col="event-lag">{sum.eventLag} <span class="muted">({s.eventsCopied} copied)</span></td>
                <td data-col="failed">{s.failedJobs24h}</td>
                <td data-col="rpo">{s.rpoMisses24h}</td>
                <td data-col="points">{s.restorePoints} <span class="muted">({bytes(s.repositoryBytes)})</span></td>
                <td data-col="replication">{sum.replication.length ? sum.replication.join('; ') : <span class="muted">none</span>}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {q.data && rows.length === 0 ? <Empty>No site is linked to the hub yet: <code>cairn hub add-site</code> (docs/sites.md).</Empty> : null}
    </section>
  );
}

/** At the hub, read-only: each global policy's version and selector, and per site the version it runs and its drift. Changed with the CLI (`policy edit --global`). */
function HubGlobalPolicies() {
  const q = useGlobalPolicies(true);
  const items = q.data?.items ?? [];
  return (
    <section aria-labelledby="hub-global-title" data-hub="global-policies">
      <h2 id="hub-global-title">Global policies</h2>
      <ErrorBox error={q.error} />
      <div class="table-wrap">
        <table>
          <thead><tr><th scope="col">Policy</th><th scope="col">Version</th><th scope="col">Selects</th><th scope="col">Signed by</th><th scope="col">Site</th><th scope="col">Applied</th><th scope="col">State</th></tr></thead>
          <tbody>
            {items.flatMap((p) => (p.sites.length ? p.sites : [null]).map((x, i) => (
              <tr key={`${p.policyId}/${x?.site ?? '-'}`} data-global-policy={p.name} data-global-site={x?.site ?? ''} data-state={x?.state ?? ''}>
                {i === 0 ? <th scope="row" rowSpan={Math.max(1, p.sites.length)}>{p.name}{p.drift ? <> <span class="badge state-failed">drift {p.drift}</span></> : null}</th> : null}
                {i === 0 ? <td rowSpan={Math.max(1, p.sites.length)} data-col="version">{p.version}{p.withdrawn ? ' (withdrawn)' : ''}</td> : null}
                {i === 0 ? <td rowSpan={Math.max(1, p.sites.length)}>{p.selects}</td> : null}
                {i === 0 ? <td rowSpan={Math.max(1, p.sites.length)}>{p.signedBy.join(', ')}</td> : null}
                <td>{x?.site ?? <span class="muted">no site selected</span>}</td>
                <td data-col="applied">{x ? x.appliedVersion ?? 'none' : '—'}</td>
                <td data-col="state">{x ? <>
                  <span class={`badge state-${x.state === 'current' ? 'ok' : 'failed'}`}>{x.state}</span>
                  {x.selected ? null : <span class="muted"> withdrawn: not selected</span>}
                  {x.state !== 'current' && x.lastError ? <span class="muted"> {x.lastError}</span> : null}
                </> : '—'}</td>
              </tr>
            )))}
          </tbody>
        </table>
      </div>
      {q.data && items.length === 0 ? <Empty>No global policy: <code>cairn policy create --global</code> at the hub (docs/sites.md).</Empty> : null}
    </section>
  );
}

export function SitesPage() {
  const health = useHealth();
  const replicas = useReplicas();
  const bySite = new Map<string, { copies: number; bytes: number; latest: string; from: Set<string> }>();
  for (const r of replicas.data?.items ?? []) {
    const s = bySite.get(r.site) ?? { copies: 0, bytes: 0, latest: r.committedAt, from: new Set<string>() };
    s.copies++; s.bytes += r.bytesSent; s.from.add(r.sourceSite);
    if (r.committedAt > s.latest) s.latest = r.committedAt;
    bySite.set(r.site, s);
  }
  const h = health.data;
  return (
    <Page title="Sites">
      <ErrorBox error={health.error ?? replicas.error} />
      {h?.site === HUB_SITE ? <><HubSitesHealth /><HubGlobalPolicies /></> : null}
      <div class="table-wrap">
        <table>
          <thead><tr><th scope="col">Site</th><th scope="col">Health</th><th scope="col">Copies held</th><th scope="col">Copied from</th><th scope="col">Bytes received</th><th scope="col">Latest copy (lag)</th></tr></thead>
          <tbody>
            {h ? (
              <tr data-site={h.site}>
                <th scope="row">{h.site} <span class="muted">(this gateway)</span></th>
                <td><StateBadge state={h.status} /> <span class="muted">NATS {h.nats}, catalogue {h.catalogue.reachable ? `lag ${h.catalogue.lag ?? 0}` : 'unreachable'}</span></td>
                <td>{bySite.get(h.site)?.copies ?? 0}</td><td>{[...(bySite.get(h.site)?.from ?? [])].join(', ') || '—'}</td>
                <td>{bytes(bySite.get(h.site)?.bytes ?? 0)}</td><td><Time iso={bySite.get(h.site)?.latest} /></td>
              </tr>
            ) : null}
            {[...bySite].filter(([site]) => site !== h?.site).map(([site, s]) => (
              <tr key={site} data-site={site}>
                <th scope="row">{site}</th><td class="muted">seen through its copies</td><td>{s.copies}</td><td>{[...s.from].join(', ')}</td><td>{bytes(s.bytes)}</td><td><Time iso={s.latest} /></td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {bySite.size === 0 ? <Empty>No copies at other sites: replication is set up with <code>cairn replication</code> (docs/sites.md).</Empty> : null}
    </Page>
  );
}
