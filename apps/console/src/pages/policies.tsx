// Policies: the list with each schedule previewed (next five runs in the policy's time zone)
// and its retention in words; create and edit for those allowed to; pause, resume and delete
// appear when the gateway has those operations.
import { useState } from 'preact/hooks';
import { useQueryClient } from '@tanstack/preact-query';
import { del, post, type Policy } from '../api.ts';
import { usePolicies } from '../queries.ts';
import { useSession } from '../session.tsx';
import { inZone, nextRuns, retentionInWords } from '../schedule.ts';
import { Empty, ErrorBox, Loading, Page } from '../ui.tsx';
import { minutesInWords, rpoMinutesOf } from '../rpo.ts';

export type Draft = Omit<Policy, 'policyId' | 'version' | 'deletedAt' | 'pausedAt'>;
export const NEW: Draft = {
  name: '', selector: { names: [] }, schedule: { cron: '0 2 * * *', timezone: Intl.DateTimeFormat().resolvedOptions().timeZone },
  retention: { last: 7, daily: 7, weekly: 4, monthly: 6, yearly: 0 }, repository: 'default', keyRef: 'default', priority: 100,
};

export function PoliciesPage() {
  const session = useSession();
  const policies = usePolicies();
  const queries = useQueryClient();
  const [editing, setEditing] = useState<{ policyId?: string; draft: Draft } | undefined>();
  const [message, setMessage] = useState<string | undefined>();
  const [error, setError] = useState<unknown>();
  const act = async (op: string, policyId: string) => {
    setError(undefined);
    try {
      if (op === 'deletion') await del(`/v1/policies/${encodeURIComponent(policyId)}`);
      else await post(`/v1/policies/${encodeURIComponent(policyId)}/${op}`);
      setMessage(op === 'deletion' ? 'Policy deleted; its restore points are kept.' : `Policy ${op}d.`);
      void queries.invalidateQueries({ queryKey: ['policies'] });
    } catch (e) {
      setError(e);
    }
  };
  return (
    <Page title="Policies" actions={session.can('policy') ? <button type="button" class="primary" onClick={() => setEditing({ draft: NEW })}>New policy</button> : undefined}>
      {message ? <p role="status" class="ok">{message}</p> : null}
      <ErrorBox error={error ?? policies.error} />
      {editing ? <PolicyForm initial={editing} onDone={(m) => { setEditing(undefined); setMessage(m); void queries.invalidateQueries({ queryKey: ['policies'] }); }} /> : null}
      {policies.isLoading ? <Loading what="policies" /> : (policies.data?.items.length ?? 0) === 0 ? <Empty>No policies yet.</Empty> : (
        <div class="cards">
          {policies.data!.items.map((p) => {
            const preview = nextRuns(p.schedule);
            return (
              <article key={p.policyId} class="card" data-policy={p.name} aria-labelledby={`policy-${p.policyId}`}>
                <h2 id={`policy-${p.policyId}`}>{p.name} {p.immutable ? <span class="badge">immutable</span> : null}{p.pausedAt ? <span class="badge">paused</span> : null}</h2>
                <p>VMs: {[...(p.selector.names ?? []).map((n) => `name ${n}`), ...(p.selector.tags ?? []).map((t) => `tag ${t}`), ...(p.selector.hypervisor ? [`hypervisor ${p.selector.hypervisor}`] : [])].join(', ') || 'none'}</p>
                <p>Schedule <code>{p.schedule.cron}</code> in {p.schedule.timezone}{p.schedule.window ? `, only between ${p.schedule.window.start} and ${p.schedule.window.end}` : ''} → repository {p.repository}</p>
                <h3>Next runs</h3>
                {'error' in preview ? <p class="error">{preview.error}</p> : (
                  <ol class="runs">{preview.runs.map((r) => <li key={r.toISOString()}><time dateTime={r.toISOString()}>{inZone(r, p.schedule.timezone)}</time></li>)}</ol>
                )}
                <h3>Retention</h3>
                <p>{retentionInWords(p.retention)}</p>
                <p data-rpo-minutes={rpoMinutesOf(p, new Date())}>RPO {minutesInWords(rpoMinutesOf(p, new Date()))} {p.rpoMinutes ? '(its own)' : '(the schedule\'s longest gap + 2 h)'}: a VM whose newest backup is older is reported (RpoMissed) and shown on the dashboard.</p>
                <div class="row">
                  {session.can('policy') ? <button type="button" onClick={() => setEditing({ policyId: p.policyId, draft: strip(p) })}>Edit</button> : null}
                  {session.can('policy') && session.has('pausePolicy') && !p.pausedAt ? <button type="button" onClick={() => void act('pause', p.policyId)}>Pause</button> : null}
                  {session.can('policy') && session.has('resumePolicy') && p.pausedAt ? <button type="button" onClick={() => void act('resume', p.policyId)}>Resume</button> : null}
                  {session.can('policy') && session.has('deletePolicy') ? <button type="button" class="danger" onClick={() => void act('deletion', p.policyId)}>Delete</button> : null}
                </div>
              </article>
            );
          })}
        </div>
      )}
    </Page>
  );
}

export function strip(p: Policy): Draft {
  const draft = { ...p } as Partial<Policy> & Record<string, unknown>;
  for (const k of ['policyId', 'version', 'deletedAt', 'pausedAt', 'createdAt', 'updatedAt', 'site']) delete draft[k];
  return draft as Draft;
}

const list = (s: string) => s.split(',').map((x) => x.trim()).filter(Boolean);

/** Saves through the site's own API (the default); the hub's page passes one that signs and relays (hub.tsx). */
export type SavePolicy = (body: Draft, policyId: string | undefined) => Promise<string>;

const saveHere: SavePolicy = async (body, policyId) => {
  if (policyId) {
    const r = await post<{ approvalId?: string }>(`/v1/policies/${encodeURIComponent(policyId)}`, body);
    return r.approvalId ? 'The change keeps fewer restore points: a second administrator must approve it (Approvals).' : `Policy ${body.name} saved.`;
  }
  await post('/v1/policies', body, { 'Idempotency-Key': crypto.randomUUID() });
  return `Policy ${body.name} created.`;
};

export function PolicyForm(props: { initial: { policyId?: string; draft: Draft }; onDone: (message: string) => void; save?: SavePolicy; disabled?: boolean }) {
  const [d, setD] = useState<Draft>(props.initial.draft);
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const preview = nextRuns(d.schedule);
  const num = (v: string) => Math.max(0, Math.floor(Number(v) || 0));
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true); setError(undefined);
    try {
      const body = { ...d, selector: Object.fromEntries(Object.entries(d.selector).filter(([, v]) => (Array.isArray(v) ? v.length : v))) };
      props.onDone(await (props.save ?? saveHere)(body, props.initial.policyId));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="card form" onSubmit={(e) => void submit(e)} aria-label={props.initial.policyId ? 'Edit policy' : 'New policy'}>
      <h2>{props.initial.policyId ? `Edit ${d.name}` : 'New policy'}</h2>
      <label>Name <input required value={d.name} disabled={Boolean(props.initial.policyId)} onInput={(e) => setD({ ...d, name: (e.target as HTMLInputElement).value })} /></label>
      <label>VM names (comma-separated) <input value={(d.selector.names ?? []).join(', ')} onInput={(e) => setD({ ...d, selector: { ...d.selector, names: list((e.target as HTMLInputElement).value) } })} /></label>
      <label>VM tags (all of) <input value={(d.selector.tags ?? []).join(', ')} onInput={(e) => setD({ ...d, selector: { ...d.selector, tags: list((e.target as HTMLInputElement).value) } })} /></label>
      <label>Cron (5 or 6 fields) <input required value={d.schedule.cron} spellcheck={false} onInput={(e) => setD({ ...d, schedule: { ...d.schedule, cron: (e.target as HTMLInputElement).value } })} /></label>
      <label>Time zone <input required value={d.schedule.timezone} onInput={(e) => setD({ ...d, schedule: { ...d.schedule, timezone: (e.target as HTMLInputElement).value } })} /></label>
      <fieldset class="retention"><legend>Retention: keep</legend>
        {(['last', 'daily', 'weekly', 'monthly', 'yearly'] as const).map((k) => (
          <label key={k}>{k} <input type="number" min={0} max={10000} value={d.retention[k]} onInput={(e) => setD({ ...d, retention: { ...d.retention, [k]: num((e.target as HTMLInputElement).value) } })} /></label>
        ))}
      </fieldset>
      <label>RPO in minutes <input type="number" min={1} value={d.rpoMinutes ?? ''} placeholder="the schedule's longest gap + 2 h" aria-describedby="rpo-help"
        onInput={(e) => { const v = Math.floor(Number((e.target as HTMLInputElement).value)); const rest = { ...d }; delete rest.rpoMinutes; setD(v >= 1 ? { ...rest, rpoMinutes: v } : rest); }} /></label>
      <p id="rpo-help" class="muted">How old a VM's newest backup may get before it is out of its recovery point objective. Empty: the longest gap between two runs of the schedule plus 2 h.</p>
      <label>Repository <input required value={d.repository} onInput={(e) => setD({ ...d, repository: (e.target as HTMLInputElement).value })} /></label>
      <label class="check"><input type="checkbox" checked={Boolean(d.immutable)} onChange={(e) => setD({ ...d, immutable: (e.target as HTMLInputElement).checked })} /> Immutable (lock each restore point until its retention ends)</label>
      <div class="preview" aria-live="polite">
        <strong>Next five runs:</strong>
        {'error' in preview ? <p class="error">{preview.error}</p> : <ol class="runs">{preview.runs.map((r) => <li key={r.toISOString()}>{inZone(r, d.schedule.timezone)}</li>)}</ol>}
        <p>{retentionInWords(d.retention)}</p>
      </div>
      <ErrorBox error={error} />
      <div class="row">
        <button type="submit" class="primary" disabled={busy || props.disabled}>{busy ? 'Saving…' : 'Save'}</button>
        <button type="button" onClick={() => props.onDone('')}>Cancel</button>
      </div>
    </form>
  );
}
