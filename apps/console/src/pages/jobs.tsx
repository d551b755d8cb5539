// Jobs: the list with filters, and a job's page with its phases, its events and live progress.
import { useLocation } from 'preact-iso';
import { useFeed } from '../live.ts';
import { useJob, useJobs, useVms } from '../queries.ts';
import { Empty, ErrorBox, Loading, Page, Progress, StateBadge, Time, bytes, shortId } from '../ui.tsx';

const STATES = ['', 'requested', 'running', 'completed', 'failed', 'cancelled'];
const KINDS = ['', 'backup', 'restore'];

export function JobsPage() {
  const { query, route, path } = useLocation();
  const state = query['state'] ?? '';
  const vmId = query['vm'] ?? '';
  const kind = query['kind'] ?? '';
  const live = useFeed();
  const vms = useVms();
  const jobs = useJobs({ ...(state ? { state } : {}), ...(vmId ? { vmId } : {}), ...(kind ? { kind } : {}) });
  const nameOf = (id: string) => vms.data?.items.find((v) => v.vmId === id)?.name ?? shortId(id);
  const set = (k: string, v: string) => {
    const q = new URLSearchParams({ ...query, [k]: v });
    if (!v) q.delete(k);
    route(`${path}${q.toString() ? `?${q}` : ''}`, true);
  };
  return (
    <Page title="Jobs">
      <form class="filters" onSubmit={(e) => e.preventDefault()} aria-label="Filter jobs">
        <label>State <select value={state} onChange={(e) => set('state', (e.target as HTMLSelectElement).value)}>
          {STATES.map((s) => <option key={s} value={s}>{s || 'any'}</option>)}
        </select></label>
        <label>Kind <select value={kind} onChange={(e) => set('kind', (e.target as HTMLSelectElement).value)}>
          {KINDS.map((k) => <option key={k} value={k}>{k || 'any'}</option>)}
        </select></label>
        <label>VM <select value={vmId} onChange={(e) => set('vm', (e.target as HTMLSelectElement).value)}>
          <option value="">any</option>
          {(vms.data?.items ?? []).map((v) => <option key={v.vmId} value={v.vmId}>{v.name}</option>)}
        </select></label>
      </form>
      <ErrorBox error={jobs.error} />
      {jobs.isLoading ? <Loading what="jobs" /> : (jobs.data?.items.length ?? 0) === 0 ? <Empty>No jobs match.</Empty> : (
        <div class="table-wrap">
          <table>
            <thead><tr><th scope="col">Job</th><th scope="col">Kind</th><th scope="col">VM</th><th scope="col">State</th><th scope="col">Progress</th><th scope="col">Trigger</th><th scope="col">Requested</th><th scope="col">Read</th></tr></thead>
            <tbody>
              {jobs.data!.items.map((j) => {
                const s = live.jobStates.get(j.jobId) ?? j.state;
                return (
                  <tr key={j.jobId} data-job={j.jobId} data-state={s}>
                    <th scope="row"><a href={`/jobs/${encodeURIComponent(j.jobId)}`}>{shortId(j.jobId)}</a></th>
                    <td>{j.kind}</td>
                    <td>{j.vmId ? nameOf(j.vmId) : '—'}</td>
                    <td><StateBadge state={s} /></td>
                    <td>{s === 'running' || s === 'completed' ? <Progress percent={live.percentOf(j.jobId, s)} label={`job ${j.jobId} progress`} /> : '—'}</td>
                    <td>{j.trigger}</td>
                    <td><Time iso={j.requestedAt} /></td>
                    <td>{bytes(j.bytesRead)}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </Page>
  );
}

export function JobPage(props: { jobId: string }) {
  const live = useFeed();
  const job = useJob(props.jobId);
  if (job.error) return <Page title="Job"><ErrorBox error={job.error} /></Page>;
  if (!job.data) return <Page title="Job"><Loading what="the job" /></Page>;
  const j = job.data;
  const state = live.jobStates.get(j.jobId) ?? j.state;
  // Events the feed delivered after the catalogue's answer are shown too.
  const known = new Set(j.events.map((e) => e.eventId));
  const stream = j.kind === 'restore' ? `restore-${j.jobId}` : `job-${j.jobId}`;
  const extra = live.events.filter((e) => e.streamId === stream && !known.has(e.id)).reverse()
    .map((e) => ({ position: Number(e.position), eventId: e.id, time: e.time, type: e.type, actor: e.actor }));
  const events = [...j.events, ...extra];
  return (
    <Page title={`Job ${shortId(j.jobId)}`}>
      <p><StateBadge state={state} /> {j.trigger} {j.kind} of {j.vmId ? <a href={`/vms/${encodeURIComponent(j.vmId)}`}>{j.vmId}</a> : 'a restore point'}, {j.kind === 'restore' ? `to a ${j.mode}` : `mode ${j.mode}`}</p>
      <Progress percent={live.percentOf(j.jobId, state)} label="transfer progress" />
      {j.failure ? <p class="error" role="alert">Failed in {j.failure.phase}: {j.failure.reason}</p> : null}
      {j.restorePointId && j.kind === 'restore' ? <p>From restore point {shortId(j.restorePointId)}{j.bytesRead !== null ? ` · wrote ${bytes(j.bytesRead)}` : ''}</p> : null}
      {j.restorePointId && j.kind !== 'restore' ? <p>Restore point {shortId(j.restorePointId)} · read {bytes(j.bytesRead)} · stored {bytes(j.bytesStored)}</p> : null}
      <h2>Phases</h2>
      <ol class="phases">
        {j.phases.map((p) => <li key={p.phase + p.startedAt} class={`phase phase-${p.state}`}><strong>{p.phase}</strong> <StateBadge state={p.state} /> <Time iso={p.startedAt} />{p.detail ? <span class="muted"> · {p.detail}</span> : null}</li>)}
      </ol>
      <h2>Events</h2>
      <ol class="events">
        {events.map((e) => <li key={e.eventId} data-position={e.position}><Time iso={e.time} /> <strong>{e.type}</strong> <span class="muted">by {e.actor.id}</span></li>)}
      </ol>
    </Page>
  );
}
