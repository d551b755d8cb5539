// Audit: the site's log as the audit trail, filtered by actor, kind (event type), site and
// time, a page at a time with the API's cursors (oldest first, as the log runs), and every
// matching event (all pages) exported as CSV or JSON; the hash chain's verification status where the gateway has it.
import { useState } from 'preact/hooks';
import { useQuery } from '@tanstack/preact-query';
import { api, ApiError, qs, type AuditEntry, type Paged } from '../api.ts';
import { useSession } from '../session.tsx';
import { toCsv } from '../csv.ts';
import { Empty, ErrorBox, Loading, Page, Time } from '../ui.tsx';

interface Filters { actor: string; type: string; site: string; from: string; to: string }
const NONE: Filters = { actor: '', type: '', site: '', from: '', to: '' };

const iso = (local: string) => (local ? new Date(local).toISOString() : undefined);

function download(name: string, type: string, text: string): void {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export function AuditPage() {
  const session = useSession();
  const [draft, setDraft] = useState<Filters>(NONE);
  const [filters, setFilters] = useState<Filters>(NONE);
  const [pageSize, setPageSize] = useState(100);
  // Paging with the API's cursors: `cursors[i]` is the `after` of page i (undefined for the first).
  const [cursors, setCursors] = useState<Array<string | undefined>>([undefined]);
  const pageNo = cursors.length - 1;
  const after = cursors[pageNo];
  const audit = useQuery({
    queryKey: ['audit', filters, pageSize, after ?? ''],
    queryFn: () => api<Paged<AuditEntry>>(`/v1/audit${qs({ actor: filters.actor, type: filters.type, from: iso(filters.from), to: iso(filters.to), limit: pageSize, after })}`),
  });
  const firstPage = () => setCursors([undefined]);
  const next = audit.data?.next ?? undefined;
  const chain = useQuery({
    queryKey: ['audit-chain'], enabled: session.has('verifyAuditChain'),
    queryFn: () => api<{ ok: boolean; count: number; problem?: { kind: string; message: string } }>('/v1/audit/chain'), retry: false,
  });
  const rows = (audit.data?.items ?? []).filter((e) => !filters.site || e.site === filters.site);
  const field = (k: keyof Filters, label: string, type = 'text') => (
    <label>{label} <input type={type} value={draft[k]} onInput={(e) => setDraft({ ...draft, [k]: (e.target as HTMLInputElement).value })} /></label>
  );
  const [exporting, setExporting] = useState<string | undefined>();
  const [exportError, setExportError] = useState<unknown>();
  // An export is of every event the filters match, not only the page shown: it follows the cursors.
  const exportAll = async (kind: 'csv' | 'json') => {
    setExporting('0'); setExportError(undefined);
    try {
      const all: AuditEntry[] = [];
      let cursor: string | undefined;
      do {
        const page = await api<Paged<AuditEntry>>(`/v1/audit${qs({ actor: filters.actor, type: filters.type, from: iso(filters.from), to: iso(filters.to), limit: 1000, after: cursor })}`);
        all.push(...page.items.filter((e) => !filters.site || e.site === filters.site));
        cursor = page.next ?? undefined;
        setExporting(String(all.length));
      } while (cursor);
      const stamp = new Date().toISOString().replace(/[:.]/g, '-');
      if (kind === 'csv') download(`cairn-audit-${stamp}.csv`, 'text/csv', toCsv(all));
      else download(`cairn-audit-${stamp}.json`, 'application/json', JSON.stringify(all, null, 2));
    } catch (e) {
      setExportError(e);
    } finally {
      setExporting(undefined);
    }
  };
  return (
    <Page title="Audit" actions={<>
      <button type="button" disabled={rows.length === 0 || exporting !== undefined} onClick={() => void exportAll('csv')}>Export CSV</button>
      <button type="button" disabled={rows.length === 0 || exporting !== undefined} onClick={() => void exportAll('json')}>Export JSON</button>
      {exporting !== undefined ? <span role="status" class="muted">exporting: {exporting} events read…</span> : null}
    </>}>
      <ErrorBox error={exportError} />
      <section class="card chain" aria-label="Audit chain">
        <strong>Hash chain: </strong>
        {!session.has('verifyAuditChain') || (chain.error instanceof ApiError && chain.error.code === 'no_audit_chain')
          ? <span data-chain="cli">verified with <code>cairn audit verify</code> (this gateway cannot read the chain)</span>
          : chain.isLoading ? <span role="status">verifying…</span>
          : chain.error ? <span class="error" data-chain="unknown">not verified: {(chain.error as Error).message}</span>
          : chain.data?.ok ? <span class="ok" data-chain="ok">intact: {chain.data.count} records verified</span>
          : <span class="error" data-chain="broken">BROKEN ({chain.data?.problem?.kind}): {chain.data?.problem?.message}</span>}
        {' '}<button type="button" onClick={() => void chain.refetch()} disabled={chain.isFetching}>Verify again</button>
      </section>
      <form class="filters" onSubmit={(e) => { e.preventDefault(); setFilters(draft); firstPage(); }} aria-label="Filter the audit trail">
        {field('actor', 'Actor')}
        {field('type', 'Kind (event type)')}
        {field('site', 'Site')}
        {field('from', 'From', 'datetime-local')}
        {field('to', 'To', 'datetime-local')}
        <button type="submit" class="primary">Apply</button>
        <button type="button" onClick={() => { setDraft(NONE); setFilters(NONE); firstPage(); }}>Clear</button>
      </form>
      <ErrorBox error={audit.error} />
      {audit.isLoading ? <Loading what="the audit trail" /> : rows.length === 0 ? <Empty>No events match.</Empty> : (
        <div class="table-wrap">
          <table>
            <thead><tr><th scope="col">#</th><th scope="col">Time</th><th scope="col">Kind</th><th scope="col">Actor</th><th scope="col">Site</th><th scope="col">Stream</th></tr></thead>
            <tbody>
              {rows.map((e) => (
                <tr key={e.position} data-position={e.position}>
                  <td>{e.position}</td><td><Time iso={e.time} /></td><td>{e.type}</td><td>{e.actor.kind}:{e.actor.id}</td><td>{e.site}</td><td>{e.streamId}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <nav class="pager" aria-label="Audit pages">
        <button type="button" disabled={pageNo === 0} onClick={firstPage}>First page</button>
        <button type="button" disabled={pageNo === 0} onClick={() => setCursors(cursors.slice(0, -1))} data-action="previous-page">Previous page</button>
        <span data-page={pageNo + 1} role="status">Page {pageNo + 1}{rows.length ? ` · events ${rows[0]!.position}–${rows.at(-1)!.position}` : ''}{next ? '' : ' (last)'}</span>
        <button type="button" disabled={!next || audit.isFetching} onClick={() => setCursors([...cursors, next])} data-action="next-page">Next page</button>
        <label>Per page <select value={pageSize} onChange={(e) => { setPageSize(Number((e.target as HTMLSelectElement).value)); firstPage(); }}>
          {[25, 100, 500, 1000].map((n) => <option key={n} value={n}>{n}</option>)}
        </select></label>
      </nav>
    </Page>
  );
}
