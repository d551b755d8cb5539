// Run a site from the hub (issue 24; docs/console.md, "Run a site"): pick a site, load your
// operator key for it, and back up a VM, create or edit a policy, restore a disk, approve or
// refuse a four-eyes request there. Each command is made and signed here, in the browser, with
// the person's key (signing.ts) and posted to `POST /v1/sites/<site>/commands`, which the hub's
// gateway relays to the site unchanged; the site checks the signature and the person's roles
// itself. The lists are the hub's view of the site (its catalogue and its copy of the site's log,
// read again every 5 s: the hub's live feed carries the hub's own events, not the sites').
import { useState } from 'preact/hooks';
import { useQuery, useQueryClient } from '@tanstack/preact-query';
import { api, post, type AuditEntry, type Items, type Job, type Policy, type RestorePoint, type Vm } from '../api.ts';
import { useSitesHealth } from '../queries.ts';
import { useSession } from '../session.tsx';
import { KeyPanel, useOperatorKey } from '../keyring.tsx';
import { newSignedCommand, signApproval, type ConsoleCommand, type OperatorKey } from '../signing.ts';
import { PolicyForm, NEW, strip, type Draft } from './policies.tsx';
import { Empty, ErrorBox, Loading, Page, StateBadge, Time, bytes, shortId } from '../ui.tsx';

const EVERY = 5_000;

/** Signs `name` for `site` with the loaded key and has the hub relay it; the site's reply's result. */
export async function relay<R>(site: string, key: OperatorKey, name: ConsoleCommand, payload: unknown): Promise<R> {
  const command = await newSignedCommand(name, payload, site, key);
  const r = await post<{ accepted: true; result?: R }>(`/v1/sites/${encodeURIComponent(site)}/commands`, { command });
  return r.result as R;
}

let remembered: string | undefined;

export function HubPage() {
  const sites = useSitesHealth(true);
  const names = (sites.data?.items ?? []).map((s) => s.site).sort();
  const [site, setSite] = useState<string | undefined>(remembered);
  const chosen = site && names.includes(site) ? site : names[0];
  const pick = (s: string) => { remembered = s; setSite(s); };
  return (
    <Page title="Run a site">
      <p class="muted">Commands chosen here are signed in this browser with your operator key for the site and relayed by the hub unchanged; the site checks your signature and your roles there. The hub cannot act for you.</p>
      <ErrorBox error={sites.error} />
      {sites.isLoading ? <Loading what="the sites" /> : names.length === 0 ? <Empty>No site is linked to the hub yet: <code>cairn hub add-site</code> (docs/sites.md).</Empty> : (
        <div class="row">
          <label for="hub-site">Site</label>
          <select id="hub-site" value={chosen} onChange={(e) => pick((e.target as HTMLSelectElement).value)}>
            {names.map((n) => <option key={n} value={n}>{n}</option>)}
          </select>
        </div>
      )}
      {chosen ? <SitePanel key={chosen} site={chosen} /> : null}
    </Page>
  );
}

function SitePanel(props: { site: string }) {
  const key = useOperatorKey();
  return (
    <div data-hub-site={props.site}>
      <KeyPanel site={props.site} />
      {key ? null : <p class="muted" data-hint="load-key">Load your operator key of site {props.site} to act there; without it this page only shows. (From a shell: <code>cairn --data &lt;hub&gt; --site {props.site} --operator-key &lt;file&gt; …</code>.)</p>}
      <SiteVms site={props.site} />
      <SiteJobs site={props.site} />
      <SiteApprovals site={props.site} />
      <SitePolicies site={props.site} />
      <SiteRestorePoints site={props.site} />
    </div>
  );
}

const ofSite = <T extends { site: string }>(site: string, items: T[] | undefined) => (items ?? []).filter((x) => x.site === site);

function SiteVms(props: { site: string }) {
  const session = useSession();
  const key = useOperatorKey();
  const queries = useQueryClient();
  const vms = useQuery({ queryKey: ['vms'], queryFn: () => api<Items<Vm>>('/v1/vms'), refetchInterval: EVERY });
  const [started, setStarted] = useState<Record<string, string>>({});
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState<string | undefined>();
  const backup = async (vm: Vm) => {
    setBusy(vm.vmId); setError(undefined);
    try {
      const r = await relay<{ jobId: string }>(props.site, key!, 'RequestBackup', { vmId: vm.vmId, mode: 'auto' });
      setStarted({ ...started, [vm.vmId]: r.jobId });
      void queries.invalidateQueries({ queryKey: ['jobs'] });
    } catch (e) {
      setError(e);
    } finally {
      setBusy(undefined);
    }
  };
  const items = ofSite(props.site, vms.data?.items);
  return (
    <section aria-labelledby="hub-vms-title">
      <h2 id="hub-vms-title">VMs at {props.site}</h2>
      <ErrorBox error={error ?? vms.error} />
      {vms.isLoading ? <Loading what="VMs" /> : items.length === 0 ? <Empty>The hub has no VM of site {props.site} yet.</Empty> : (
        <div class="table-wrap">
          <table>
            <thead><tr><th scope="col">Name</th><th scope="col">Disks</th><th scope="col">Last backup</th><th scope="col">Restore points</th><th scope="col">Action</th></tr></thead>
            <tbody>
              {items.map((v) => (
                <tr key={v.vmId} data-hub-vm={v.name}>
                  <th scope="row">{v.name}</th>
                  <td>{v.disks.filter((d) => !d.detachedAt).map((d) => `${d.name} ${bytes(d.sizeBytes)}`).join(', ')}</td>
                  <td><Time iso={v.lastBackupAt} /></td>
                  <td>{v.restorePoints}</td>
                  <td>
                    {session.can('backup') ? (
                      <button type="button" class="primary" data-action="hub-backup" disabled={!key || busy === v.vmId} aria-label={`Back up now: ${v.name}`} onClick={() => void backup(v)}>
                        {busy === v.vmId ? 'Starting…' : 'Back up now'}
                      </button>
                    ) : null}
                    {started[v.vmId] ? <span role="status" data-started-job={started[v.vmId]}> job {shortId(started[v.vmId]!)} started</span> : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function SiteJobs(props: { site: string }) {
  const jobs = useQuery({ queryKey: ['jobs', { limit: 200 }], queryFn: () => api<Items<Job>>('/v1/jobs?limit=200'), refetchInterval: EVERY });
  const vms = useQuery({ queryKey: ['vms'], queryFn: () => api<Items<Vm>>('/v1/vms') });
  const name = (vmId: string) => vms.data?.items.find((v) => v.vmId === vmId)?.name ?? shortId(vmId);
  const items = ofSite(props.site, jobs.data?.items).slice(0, 20);
  return (
    <section aria-labelledby="hub-jobs-title">
      <h2 id="hub-jobs-title">Latest jobs at {props.site}</h2>
      <ErrorBox error={jobs.error} />
      {jobs.isLoading ? <Loading what="jobs" /> : items.length === 0 ? <Empty>No jobs at {props.site} yet.</Empty> : (
        <div class="table-wrap">
          <table>
            <thead><tr><th scope="col">Job</th><th scope="col">Kind</th><th scope="col">VM</th><th scope="col">State</th><th scope="col">Requested</th><th scope="col">Stored</th></tr></thead>
            <tbody>
              {items.map((j) => (
                <tr key={j.jobId} data-hub-job={j.jobId} data-state={j.state}>
                  <th scope="row"><a href={`/jobs/${encodeURIComponent(j.jobId)}`}>{shortId(j.jobId)}</a></th>
                  <td>{j.kind}</td><td>{name(j.vmId)}</td><td><StateBadge state={j.state} /></td><td><Time iso={j.requestedAt} /></td><td>{bytes(j.bytesStored)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

export interface SiteApproval {
  approvalId: string; action: { kind: string; [k: string]: unknown }; requestedBy: string; requestedAt: string; reason?: string;
  status: 'pending' | 'granted' | 'rejected' | 'done' | 'failed'; approvedBy?: string; rejectedBy?: string;
}

/** Folds the approval events of a site (from the hub's copy of its log) into requests with their status. Pure. */
export function foldApprovals(site: string, events: readonly AuditEntry[]): SiteApproval[] {
  const byId = new Map<string, SiteApproval>();
  for (const e of [...events].filter((x) => x.site === site).sort((a, b) => a.position - b.position)) {
    const d = (e.data ?? {}) as { approvalId?: string; action?: SiteApproval['action']; requestedBy?: string; reason?: string; approvedBy?: string; rejectedBy?: string; outcome?: string };
    if (!d.approvalId) continue;
    if (e.type === 'ApprovalRequested' && d.action) {
      byId.set(d.approvalId, { approvalId: d.approvalId, action: d.action, requestedBy: d.requestedBy ?? e.actor.id, requestedAt: e.time, ...(d.reason ? { reason: d.reason } : {}), status: 'pending' });
      continue;
    }
    const a = byId.get(d.approvalId);
    if (!a) continue;
    if (e.type === 'ApprovalGranted') byId.set(a.approvalId, { ...a, status: 'granted', ...(d.approvedBy ? { approvedBy: d.approvedBy } : {}) });
    else if (e.type === 'ApprovalRejected') byId.set(a.approvalId, { ...a, status: 'rejected', ...(d.rejectedBy ? { rejectedBy: d.rejectedBy } : {}) });
    else if (e.type === 'ApprovalExecuted') byId.set(a.approvalId, { ...a, status: d.outcome === 'failed' ? 'failed' : 'done' });
  }
  return [...byId.values()].reverse();
}

const APPROVAL_TYPES = ['ApprovalRequested', 'ApprovalGranted', 'ApprovalRejected', 'ApprovalExecuted'] as const;

function SiteApprovals(props: { site: string }) {
  const session = useSession();
  const key = useOperatorKey();
  const events = useQuery({
    queryKey: ['approvals', 'hub-site'], refetchInterval: EVERY,
    queryFn: async () => (await Promise.all(APPROVAL_TYPES.map((t) => api<Items<AuditEntry>>(`/v1/audit?type=${t}&limit=1000`)))).flatMap((r) => r.items),
  });
  const items = foldApprovals(props.site, events.data ?? []);
  // A request decided from this page stays on it with its outcome (the next read shows it decided).
  const [acted, setActed] = useState<ReadonlySet<string>>(new Set());
  const pending = items.filter((a) => a.status === 'pending' || acted.has(a.approvalId));
  return (
    <section aria-labelledby="hub-approvals-title">
      <h2 id="hub-approvals-title">Approvals waiting at {props.site}</h2>
      <ErrorBox error={events.error} />
      {events.isLoading ? <Loading what="approvals" /> : pending.length === 0 ? <Empty>Nothing waits for a decision at {props.site}.</Empty> : (
        <ul class="cards">
          {pending.map((a) => <SiteApprovalCard key={a.approvalId} site={props.site} a={a} admin={session.can('admin')} signer={key} onAct={() => setActed((x) => new Set([...x, a.approvalId]))} />)}
        </ul>
      )}
      {items.some((a) => a.status !== 'pending' && !acted.has(a.approvalId)) ? (
        <p class="muted">Decided lately: {items.filter((a) => a.status !== 'pending' && !acted.has(a.approvalId)).slice(0, 5).map((a) => <span key={a.approvalId} data-hub-approval={a.approvalId} data-status={a.status}>{shortId(a.approvalId)} {a.status}{a.approvedBy ? ` by ${a.approvedBy}` : ''}; </span>)}</p>
      ) : null}
    </section>
  );
}

function describe(a: SiteApproval): string {
  const x = a.action;
  if (x.kind === 'delete-restore-point') return `Delete restore point ${String(x['restorePointId'])}`;
  if (x.kind === 'delete-repository') return `Delete repository ${String(x['repository'])}`;
  if (x.kind === 'declare-site-lost') return `Declare site ${String(x['site'])} lost`;
  return x.kind;
}

function SiteApprovalCard(props: { site: string; a: SiteApproval; admin: boolean; signer: OperatorKey | undefined; onAct: () => void }) {
  const { a, signer } = props;
  const queries = useQueryClient();
  const [reason, setReason] = useState('');
  const [error, setError] = useState<unknown>();
  const [done, setDone] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const mine = signer?.userId === a.requestedBy;
  const decide = async (decision: 'approve' | 'reject') => {
    setBusy(true); setError(undefined);
    props.onAct();
    try {
      const signature = await signApproval(signer!, a.approvalId, decision === 'approve' ? 'grant' : 'reject', a.action);
      const r = await relay<{ status: string; approvedBy?: string | null }>(props.site, signer!, 'DecideApproval', { approvalId: a.approvalId, decision, signature, ...(decision === 'reject' && reason ? { reason } : {}) });
      setDone(`${decision === 'approve' ? 'Approved' : 'Refused'} at ${props.site}: ${r.status}`);
      void queries.invalidateQueries({ queryKey: ['approvals'] });
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const reasonId = `hub-reason-${a.approvalId}`;
  return (
    <li class="card" data-hub-approval={a.approvalId} data-status={a.status}>
      <h3>{describe(a)} <StateBadge state={a.status} /></h3>
      <p>Asked by <strong>{a.requestedBy}</strong> <Time iso={a.requestedAt} />{a.reason ? ` — “${a.reason}”` : ''}</p>
      {props.admin && a.status === 'pending' && !done ? (
        signer ? (
          <div class="decide">
            <label for={reasonId}>Reason</label>
            <input id={reasonId} value={reason} maxLength={1024} onInput={(e) => setReason((e.target as HTMLInputElement).value)} />
            <div class="row">
              {mine ? <span class="muted">A second administrator must approve your own request.</span>
                : <button type="button" class="primary" data-action="hub-approve" disabled={busy} onClick={() => void decide('approve')}>Approve</button>}
              <button type="button" class="danger" data-action="hub-reject" disabled={busy} onClick={() => void decide('reject')}>{mine ? 'Withdraw' : 'Refuse'}</button>
            </div>
          </div>
        ) : <p class="muted" data-hint="sign-with-cli">Load your operator key of site {props.site} above to decide here, or run <code>cairn --data &lt;hub&gt; --site {props.site} --operator-key &lt;file&gt; approval approve {a.approvalId}</code>.</p>
      ) : null}
      {done ? <p role="status" class="ok" data-decided={a.approvalId}>{done}</p> : null}
      <ErrorBox error={error} />
    </li>
  );
}

function SitePolicies(props: { site: string }) {
  const session = useSession();
  const key = useOperatorKey();
  const queries = useQueryClient();
  const policies = useQuery({ queryKey: ['policies'], queryFn: () => api<Items<Policy & { site?: string }>>('/v1/policies'), refetchInterval: EVERY });
  const [editing, setEditing] = useState<{ policyId?: string; draft: Draft } | undefined>();
  const [message, setMessage] = useState<string | undefined>();
  const items = (policies.data?.items ?? []).filter((p) => p.site === props.site && !p.deletedAt);
  const save = async (body: Draft, policyId: string | undefined): Promise<string> => {
    if (policyId) {
      await relay(props.site, key!, 'UpdatePolicy', { policy: { ...body, policyId } });
      return `Policy ${body.name} saved at ${props.site}.`;
    }
    const r = await relay<{ policyId: string }>(props.site, key!, 'CreatePolicy', body);
    return `Policy ${body.name} created at ${props.site} (${shortId(r.policyId)}).`;
  };
  return (
    <section aria-labelledby="hub-policies-title">
      <h2 id="hub-policies-title">Policies at {props.site}</h2>
      {message ? <p role="status" class="ok">{message}</p> : null}
      <ErrorBox error={policies.error} />
      {session.can('policy') ? <button type="button" disabled={!key} data-action="hub-new-policy" onClick={() => setEditing({ draft: NEW })}>New policy at {props.site}</button> : null}
      {editing ? <PolicyForm initial={editing} save={save} disabled={!key} onDone={(m) => { setEditing(undefined); setMessage(m || undefined); void queries.invalidateQueries({ queryKey: ['policies'] }); }} /> : null}
      {policies.isLoading ? <Loading what="policies" /> : items.length === 0 ? <Empty>No policies at {props.site}.</Empty> : (
        <ul class="cards">
          {items.map((p) => (
            <li key={p.policyId} class="card" data-hub-policy={p.name}>
              <h3>{p.name} {p.pausedAt ? <span class="badge">paused</span> : null}</h3>
              <p>VMs: {[...(p.selector.names ?? []), ...(p.selector.tags ?? []).map((t) => `tag ${t}`)].join(', ') || 'none'} · <code>{p.schedule.cron}</code> {p.schedule.timezone} · version {p.version}</p>
              {session.can('policy') ? <button type="button" disabled={!key} onClick={() => setEditing({ policyId: p.policyId, draft: strip(p) })} aria-label={`Edit ${p.name} at ${props.site}`}>Edit</button> : null}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

function SiteRestorePoints(props: { site: string }) {
  const session = useSession();
  const key = useOperatorKey();
  const points = useQuery({ queryKey: ['restore-points', { limit: 500 }], queryFn: () => api<Items<RestorePoint>>('/v1/restore-points?limit=500'), refetchInterval: EVERY });
  const vms = useQuery({ queryKey: ['vms'], queryFn: () => api<Items<Vm>>('/v1/vms') });
  const name = (vmId: string) => vms.data?.items.find((v) => v.vmId === vmId)?.name ?? shortId(vmId);
  const [open, setOpen] = useState<string | undefined>();
  const items = ofSite(props.site, points.data?.items).filter((p) => !p.expiredAt).slice(-20).reverse();
  return (
    <section aria-labelledby="hub-points-title">
      <h2 id="hub-points-title">Restore points at {props.site}</h2>
      <ErrorBox error={points.error} />
      {points.isLoading ? <Loading what="restore points" /> : items.length === 0 ? <Empty>No restore points at {props.site} yet.</Empty> : (
        <ul class="cards">
          {items.map((p) => (
            <li key={p.restorePointId} class="card" data-hub-point={p.restorePointId}>
              <h3>{name(p.vmId)} <Time iso={p.createdAt} /></h3>
              <p>{p.kind}, {bytes(p.sizeBytes)}, {p.disks.map((d) => d.name).join(', ')}</p>
              {session.can('restore') ? <button type="button" disabled={!key} data-action="hub-restore" aria-expanded={open === p.restorePointId} onClick={() => setOpen(open === p.restorePointId ? undefined : p.restorePointId)}>Restore a disk…</button> : null}
              {open === p.restorePointId && key ? <RestoreForm site={props.site} point={p} signer={key} /> : null}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

function RestoreForm(props: { site: string; point: RestorePoint; signer: OperatorKey }) {
  const [disk, setDisk] = useState(props.point.disks[0]?.name ?? '');
  const [path, setPath] = useState('');
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const [done, setDone] = useState<{ path?: string; sizeBytes: number } | undefined>();
  const id = props.point.restorePointId;
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true); setError(undefined); setDone(undefined);
    try {
      setDone(await relay<{ path?: string; sizeBytes: number }>(props.site, props.signer, 'RestoreDisk', { restorePointId: id, disk, target: { kind: 'file', path }, format: 'raw' }));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="form" onSubmit={(e) => void submit(e)} aria-label={`Restore a disk of ${shortId(id)} at ${props.site}`}>
      <label for={`disk-${id}`}>Disk</label>
      <select id={`disk-${id}`} value={disk} onChange={(e) => setDisk((e.target as HTMLSelectElement).value)}>
        {props.point.disks.map((d) => <option key={d.name} value={d.name}>{d.name}</option>)}
      </select>
      <label for={`path-${id}`}>Image file on the site's data mover (inside its restore directories)</label>
      <input id={`path-${id}`} required value={path} spellcheck={false} onInput={(e) => setPath((e.target as HTMLInputElement).value)} />
      <button type="submit" class="primary" disabled={busy}>{busy ? 'Restoring…' : 'Restore'}</button>
      {done ? <p role="status" class="ok" data-restored={done.path ?? ''}>Restored {bytes(done.sizeBytes)} to {done.path ?? path} at {props.site}.</p> : null}
      <ErrorBox error={error} />
    </form>
  );
}
