// VMs: the inventory by site and hypervisor; a VM's page with its disks, a backup button for
// those allowed to back up, the running job's live progress, and its restore points on a timeline.
import { useState } from 'preact/hooks';
import { useQueryClient } from '@tanstack/preact-query';
import { post, type RestorePoint } from '../api.ts';
import { useFeed } from '../live.ts';
import { useJobs, usePolicies, useReplicas, useRestorePoints, useVm, useVms } from '../queries.ts';
import { useSession } from '../session.tsx';
import { Empty, ErrorBox, Loading, Page, Progress, StateBadge, Time, bytes, shortId, when } from '../ui.tsx';

export function VmsPage() {
  const vms = useVms();
  const groups = new Map<string, NonNullable<typeof vms.data>['items']>();
  for (const v of vms.data?.items ?? []) {
    const key = `${v.site} · ${v.hypervisor.kind} on ${v.hypervisor.host}`;
    groups.set(key, [...(groups.get(key) ?? []), v]);
  }
  return (
    <Page title="VMs">
      <ErrorBox error={vms.error} />
      {vms.isLoading ? <Loading what="VMs" /> : groups.size === 0 ? <Empty>No VMs yet: connect a hypervisor (<code>cairn hypervisor add</code>).</Empty> : null}
      {[...groups].map(([group, list]) => (
        <section key={group} aria-label={group}>
          <h2>{group}</h2>
          <div class="table-wrap">
            <table>
              <thead><tr><th scope="col">Name</th><th scope="col">Disks</th><th scope="col">Tags</th><th scope="col">Last backup</th><th scope="col">Restore points</th></tr></thead>
              <tbody>
                {list.map((v) => (
                  <tr key={v.vmId} data-vm={v.name}>
                    <th scope="row"><a href={`/vms/${encodeURIComponent(v.vmId)}`}>{v.name}</a></th>
                    <td>{v.disks.filter((d) => !d.detachedAt).map((d) => `${d.name} (${bytes(d.sizeBytes)})`).join(', ')}</td>
                    <td>{v.tags.join(', ') || '—'}</td>
                    <td><Time iso={v.lastBackupAt} /></td>
                    <td>{v.restorePoints}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </section>
      ))}
    </Page>
  );
}

export function VmPage(props: { vmId: string }) {
  const session = useSession();
  const live = useFeed();
  const queries = useQueryClient();
  const vm = useVm(props.vmId);
  const jobs = useJobs({ vmId: props.vmId, limit: 20 });
  const points = useRestorePoints({ vmId: props.vmId });
  const [started, setStarted] = useState<string | undefined>();
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);

  const backup = async () => {
    setBusy(true);
    setError(undefined);
    try {
      const r = await post<{ jobId: string }>('/v1/backups', { vmId: props.vmId }, { 'Idempotency-Key': crypto.randomUUID() });
      setStarted(r.jobId);
      void queries.invalidateQueries({ queryKey: ['jobs'] });
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  const current = started ?? jobs.data?.items.find((j) => ['running', 'requested'].includes(live.jobStates.get(j.jobId) ?? j.state))?.jobId;
  const currentJob = jobs.data?.items.find((j) => j.jobId === current);
  const currentState = current ? live.jobStates.get(current) ?? currentJob?.state ?? 'requested' : undefined;

  if (vm.error) return <Page title="VM"><ErrorBox error={vm.error} /></Page>;
  if (!vm.data) return <Page title="VM"><Loading what="the VM" /></Page>;
  const v = vm.data;
  return (
    <Page title={v.name} actions={session.can('backup') ? (
      <button type="button" class="primary" data-action="backup" disabled={busy || currentState === 'running' || currentState === 'requested'} onClick={() => void backup()}>
        {busy ? 'Starting…' : 'Back up now'}
      </button>
    ) : undefined}>
      <p class="muted">{v.site} · {v.hypervisor.kind} on {v.hypervisor.host} · {v.tags.length ? `tags ${v.tags.join(', ')}` : 'no tags'}</p>
      <ErrorBox error={error} />
      {current ? (
        <section class="card current-job" aria-labelledby="current-job-title" data-job={current} data-state={currentState}>
          <h2 id="current-job-title">Backup <a href={`/jobs/${encodeURIComponent(current)}`}>{shortId(current)}</a> <StateBadge state={currentState ?? 'requested'} /></h2>
          <Progress percent={currentState === 'completed' ? 100 : live.percentOf(current, currentState)} label="backup progress" />
          {currentJob?.failure ? <p class="error">{currentJob.failure.phase}: {currentJob.failure.reason}</p> : null}
        </section>
      ) : null}
      <h2>Disks</h2>
      <ul>{v.disks.map((d) => <li key={d.name}>{d.name}: {bytes(d.sizeBytes)}{d.detachedAt ? ' (detached)' : ''}</li>)}</ul>
      <h2 id="timeline-title">Restore points</h2>
      {points.isLoading ? <Loading what="restore points" /> : <Timeline points={points.data?.items ?? []} />}
    </Page>
  );
}

function Timeline(props: { points: RestorePoint[] }) {
  const session = useSession();
  const replicas = useReplicas();
  const policies = usePolicies();
  const policyName = (id: string) => policies.data?.items.find((x) => x.policyId === id)?.name ?? shortId(id);
  const [asked, setAsked] = useState<Record<string, string>>({});
  const [error, setError] = useState<unknown>();
  const visible = props.points.filter((p) => !p.expiredAt);
  if (visible.length === 0) return <Empty>No restore points yet.</Empty>;
  const requestDeletion = async (id: string) => {
    setError(undefined);
    try {
      const a = await post<{ approvalId: string }>(`/v1/restore-points/${encodeURIComponent(id)}/deletion`, { reason: 'requested from the console' });
      setAsked({ ...asked, [id]: a.approvalId });
    } catch (e) {
      setError(e);
    }
  };
  return (
    <>
      <ErrorBox error={error} />
      <ol class="timeline" aria-labelledby="timeline-title">
        {visible.map((p) => {
          const copies = (replicas.data?.items ?? []).filter((r) => r.restorePointId === p.restorePointId).map((r) => r.site);
          return (
            <li key={p.restorePointId} class={`point point-${p.kind}`} data-restore-point={p.restorePointId}>
              <div class="point-head">
                <Time iso={p.createdAt} /> <span class={`badge kind-${p.kind}`}>{p.kind}</span>
                <span class="muted">{shortId(p.restorePointId)}</span>
              </div>
              <dl class="facts">
                <div><dt>Size</dt><dd>{bytes(p.sizeBytes)}</dd></div>
                <div><dt>Read</dt><dd>{bytes(p.changedBytes)}</dd></div>
                <div><dt>Stored</dt><dd>{bytes(p.bytesStored)}</dd></div>
                <div><dt>Consistency</dt><dd data-consistency={p.consistency ?? 'unknown'} title={p.consistencyReason ?? undefined}>{p.consistency === 'application' ? 'application-consistent (guest file systems frozen)' : p.consistency === 'crash' ? `crash-consistent${p.consistencyReason ? ` (${p.consistencyReason})` : ''}` : <span class="muted">not recorded (an older restore point)</span>}</dd></div>
                <div><dt>Test restore</dt><dd data-test-restore={p.lastTestRestore?.status ?? 'none'}>{!p.lastTestRestore ? <span class="muted">none yet</span>
                  : p.lastTestRestore.status === 'passed' ? <span class="ok">passed {when(p.lastTestRestore.at)}{p.lastTestRestore.checks.length ? ` (${p.lastTestRestore.checks.join(', ')})` : ''}</span>
                  : p.lastTestRestore.status === 'failed' ? <strong class="bad-text">failed {when(p.lastTestRestore.at)}{p.lastTestRestore.failedCheck ? `: ${p.lastTestRestore.failedCheck}` : ''}</strong>
                  : <span>running since {when(p.lastTestRestore.at)}</span>}</dd></div>
                {p.damage ? <div><dt>Damage</dt><dd data-damage={p.damage.damagedCount}><strong class="bad-text">{p.damage.damagedCount} damaged chunk{p.damage.damagedCount === 1 ? '' : 's'} found by a verify {when(p.damage.at)}</strong></dd></div> : null}
                <div><dt>Lock</dt><LockFact lock={p.lock} policyName={policyName} /></div>
                <div><dt>Replicas</dt><dd>{copies.length ? copies.join(', ') : 'none'}</dd></div>
                <div><dt>Job</dt><dd><a href={`/jobs/${encodeURIComponent(p.jobId)}`}>{shortId(p.jobId)}</a></dd></div>
              </dl>
              <div class="row">
                {session.can('restore') ? <a class="button" href={`/restore?vm=${encodeURIComponent(p.vmId)}&point=${encodeURIComponent(p.restorePointId)}`}>Restore…</a> : null}
                {session.can('admin') ? (
                  asked[p.restorePointId]
                    ? <span role="status">Deletion requested: a second administrator approves it in <a href="/approvals">Approvals</a>.</span>
                    : <button type="button" data-action="request-deletion" onClick={() => void requestDeletion(p.restorePointId)}>Request deletion…</button>
                ) : null}
              </div>
            </li>
          );
        })}
      </ol>
    </>
  );
}

/** A restore point's immutability lock: until when, and by which policy or whose act; an ended lock says so. */
function LockFact(props: { lock: RestorePoint['lock']; policyName: (id: string) => string }) {
  const l = props.lock;
  if (!l) return <dd data-lock="none"><span class="muted">not locked</span></dd>;
  const held = Date.parse(l.until) > Date.now();
  const by = l.source === 'policy'
    ? (l.policyId ? `by the immutability of policy ${props.policyName(l.policyId)}` : `by ${l.actor.id}`)
    : `by ${l.actor.id}'s lock`;
  return (
    <dd data-lock={held ? 'held' : 'ended'} data-lock-source={l.source} title={`locked ${when(l.at)} (${l.actor.kind} ${l.actor.id})`}>
      {held ? <strong>locked until {when(l.until)}</strong> : <span class="muted">lock ended {when(l.until)}</span>} <span>{by}</span>
    </dd>
  );
}
