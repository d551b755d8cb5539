// Sites: this gateway's site and its health; at the hub (site "hub"), every site that holds
// or sends copies, with each site's latest copy as a measure of replication lag.
import { useHealth, useReplicas } from '../queries.ts';
import { Empty, ErrorBox, Page, StateBadge, Time, bytes } from '../ui.tsx';

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
