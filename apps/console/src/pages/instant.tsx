// Instant recovery: the wizard's step that runs a restore point as a new VM now, straight from
// the repository (POST /v1/instant-recoveries), and the page of sessions: state, overlay size
// (what the guest wrote so far), mirror progress, with Finish (mirror to local storage while the
// VM runs, then pivot) and Discard (stop it, remove exporter, overlays and sockets).
import { useState } from 'preact/hooks';
import { useLocation } from 'preact-iso';
import { post, type Instant, type RestorePoint } from '../api.ts';
import { useFeed } from '../live.ts';
import { useInstants, useVms } from '../queries.ts';
import { useSession } from '../session.tsx';
import { Empty, ErrorBox, Loading, Page, Progress, StateBadge, Time, bytes, shortId } from '../ui.tsx';
import { VM_NAME, defaultVmName } from './vm-restore.tsx';

export function InstantRestore(props: { point: RestorePoint }) {
  const vms = useVms();
  const { route } = useLocation();
  const original = vms.data?.items.find((v) => v.vmId === props.point.vmId);
  const [vmName, setVmName] = useState(() => defaultVmName(original?.name, 'instant'));
  const [storage, setStorage] = useState('');
  const [start, setStart] = useState(true);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    if (!VM_NAME.test(vmName)) { setError(new Error('The VM name: letters, digits, dot, dash or underscore, starting with a letter or digit, at most 64.')); return; }
    setBusy(true);
    try {
      const view = await post<Instant>('/v1/instant-recoveries', {
        instantId: crypto.randomUUID(), restorePointId: props.point.restorePointId, vmName, start, ...(storage.trim() ? { storage: storage.trim() } : {}),
      });
      route(`/instant?started=${encodeURIComponent(view.instantId)}`);
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };
  return (
    <form class="form" onSubmit={(e) => void submit(e)}>
      <p class="muted">The VM runs at once on local overlays over the restore point, served read-only from the repository; nothing is copied first. Later, <strong>Finish</strong> moves it to local storage while it runs, or <strong>Discard</strong> drops it and what it wrote.</p>
      <label>New VM name <input type="text" required value={vmName} maxLength={64} spellcheck={false} onInput={(e) => setVmName((e.target as HTMLInputElement).value)} /></label>
      <label>Storage directory (overlays) <input type="text" value={storage} spellcheck={false} placeholder="default: <data>/restores/vms" onInput={(e) => setStorage((e.target as HTMLInputElement).value)} aria-describedby="instant-storage-help" /></label>
      <p id="instant-storage-help" class="muted">On the data mover's host, inside its restore directories; the session's directory is made in it.</p>
      <label class="check"><input type="checkbox" checked={start} onChange={(e) => setStart((e.target as HTMLInputElement).checked)} /> Start the VM</label>
      <button type="submit" class="primary" data-action="instant" disabled={busy}>{busy ? 'Starting the VM…' : 'Start instant recovery'}</button>
      {busy ? <p role="status" class="muted">The data mover starts the exporter, makes the overlays{start ? ' and starts the VM' : ''}; this page answers when the VM is served.</p> : null}
      <ErrorBox error={error} />
    </form>
  );
}

const LIVE_STATES = new Set(['starting', 'serving', 'mirroring']);
const RECENT_MS = 3600_000;

export function InstantPage() {
  const session = useSession();
  const { query } = useLocation();
  const [all, setAll] = useState(false);
  const sessions = useInstants();
  // Live sessions, and those that ended in the last hour (so Finish and Discard show their outcome); all with the switch.
  const now = Date.now();
  const shown = (i: Instant) => all || LIVE_STATES.has(i.state) || (i.endedAt !== undefined && now - Date.parse(i.endedAt) < RECENT_MS);
  const items = [...(sessions.data?.items ?? [])].filter(shown).reverse(); // newest first
  return (
    <Page title="Instant recoveries" actions={
      <label class="check"><input type="checkbox" checked={all} onChange={(e) => setAll((e.target as HTMLInputElement).checked)} /> All ended ones</label>
    }>
      <p class="muted">VMs running straight from the repository. Start one from the <a href="/restore">restore wizard</a> (“Instant recovery”).</p>
      <ErrorBox error={sessions.error} />
      {sessions.isLoading ? <Loading what="instant recoveries" /> : items.length === 0 ? <Empty>{all ? 'No instant recoveries yet.' : 'No instant recovery is running or ended in the last hour.'}</Empty> : (
        <ul class="cards">
          {items.map((i) => <InstantCard key={i.instantId} view={i} canAct={session.can('restore')} justStarted={query['started'] === i.instantId} />)}
        </ul>
      )}
    </Page>
  );
}

function InstantCard(props: { view: Instant; canAct: boolean; justStarted: boolean }) {
  const v = props.view;
  const live = useFeed();
  const [storage, setStorage] = useState('');
  const [format, setFormat] = useState<'raw' | 'qcow2'>('qcow2');
  const [confirmDiscard, setConfirmDiscard] = useState(false);
  const [busy, setBusy] = useState<'finish' | 'discard' | undefined>();
  const [error, setError] = useState<unknown>();
  const act = async (what: 'finish' | 'discard') => {
    setBusy(what); setError(undefined);
    try {
      await post(`/v1/instant-recoveries/${encodeURIComponent(v.instantId)}/${what}`, what === 'finish' ? { format, ...(storage.trim() ? { storage: storage.trim() } : {}) } : {});
    } catch (e) {
      setError(e);
    } finally {
      setBusy(undefined); setConfirmDiscard(false);
    }
  };
  // Mirror progress: the feed's frames are ahead of the session's own figures.
  const frames = live.progress.get(v.instantId);
  let done = v.mirror?.bytesDone ?? 0; let total = v.mirror?.bytesTotal ?? 0;
  if (frames) { let d = 0; let t = 0; for (const f of frames.values()) { d += f.bytesDone; t += f.bytesPlanned; } if (d >= done) { done = d; total = t; } }
  if (v.state === 'finished') { total = v.disks.reduce((n, d) => n + d.sizeBytes, 0); done = total; }
  const percent = v.state === 'finished' ? 100 : total > 0 ? Math.min(100, Math.floor((done / total) * 100)) : v.state === 'mirroring' ? 0 : undefined;
  const headingId = `instant-${v.instantId}`;
  return (
    <li class="card" data-instant={v.instantId} data-vm-name={v.vmName} data-state={v.state} aria-labelledby={headingId}>
      <h2 id={headingId}>{v.vmName} <StateBadge state={v.state} />{props.justStarted ? <span class="badge">just started</span> : null}</h2>
      <dl class="facts">
        <div><dt>VM</dt><dd data-running={v.running}>{v.running ? `running${v.pid ? ` (pid ${v.pid})` : ''}` : 'not running'}</dd></div>
        <div><dt>Overlay</dt><dd data-overlay-bytes={v.overlayBytes}>{bytes(v.overlayBytes)} written by the guest</dd></div>
        <div><dt>Restore point</dt><dd>{shortId(v.restorePointId)}</dd></div>
        <div><dt>Started</dt><dd><Time iso={v.startedAt} /></dd></div>
        {v.endedAt ? <div><dt>Ended</dt><dd><Time iso={v.endedAt} /></dd></div> : null}
        <div><dt>Disks</dt><dd>{v.disks.map((d) => `${d.disk} (${bytes(d.sizeBytes)})`).join(', ')}</dd></div>
        <div><dt>Directory</dt><dd><code>{v.dir}</code></dd></div>
      </dl>
      {v.state === 'mirroring' || v.state === 'finished' ? (
        <div class="mirror" data-mirror-percent={percent ?? ''}>
          <span>{v.state === 'finished' ? 'Mirrored to local storage' : 'Mirror to local storage'}: {bytes(done)} of {bytes(total)}{v.mirror?.ready && v.state === 'mirroring' ? ' · in step, pivoting' : ''}</span>
          <Progress percent={percent} label={`mirror of ${v.vmName}`} />
        </div>
      ) : null}
      {v.state === 'finished' ? <p class="ok" role="status">Finished: the VM runs on local disks{v.disks[0]?.path ? <> (<code>{v.disks[0].path}</code>…)</> : null}; the export is closed.</p> : null}
      {v.failure ? <p class="error" role="alert">Failed at {v.failure.step}: {v.failure.reason}</p> : null}
      {props.canAct && v.state === 'serving' ? (
        <form class="row" onSubmit={(e) => { e.preventDefault(); void act('finish'); }} aria-label={`Finish ${v.vmName}`}>
          <label>Local storage <input type="text" value={storage} spellcheck={false} placeholder="default: the session's directory" onInput={(e) => setStorage((e.target as HTMLInputElement).value)} /></label>
          <label>Format <select value={format} onChange={(e) => setFormat((e.target as HTMLSelectElement).value as 'raw' | 'qcow2')}><option value="qcow2">qcow2</option><option value="raw">raw</option></select></label>
          <button type="submit" class="primary" data-action="finish" disabled={busy !== undefined}>{busy === 'finish' ? 'Starting the mirror…' : 'Finish'}</button>
        </form>
      ) : null}
      {props.canAct && LIVE_STATES.has(v.state) ? (
        <div class="row">
          {!confirmDiscard
            ? <button type="button" data-action="discard" disabled={busy !== undefined} onClick={() => setConfirmDiscard(true)}>Discard…</button>
            : <>
              <span role="alert">Stop {v.vmName} and drop everything it wrote?</span>
              <button type="button" class="danger" data-action="discard-confirm" disabled={busy !== undefined} onClick={() => void act('discard')}>{busy === 'discard' ? 'Discarding…' : 'Discard'}</button>
              <button type="button" onClick={() => setConfirmDiscard(false)}>Keep it</button>
            </>}
        </div>
      ) : null}
      <ErrorBox error={error} />
    </li>
  );
}
