// The restore wizard: choose a VM, one of its restore points, then what to restore. Each kind
// of restore is one entry in RESTORE_KINDS, offered only when the gateway has its operation
// (from /openapi.json): a kind whose route has not landed is absent, not a dead button.
import { useState } from 'preact/hooks';
import type { FunctionComponent } from 'preact';
import { useLocation } from 'preact-iso';
import { post, type RestorePoint } from '../api.ts';
import { useRestorePoints, useVms } from '../queries.ts';
import { useSession } from '../session.tsx';
import { Empty, ErrorBox, Page, bytes, shortId, when } from '../ui.tsx';
import { FilesRestore } from './files.tsx';
import { InstantRestore } from './instant.tsx';
import { VmRestore } from './vm-restore.tsx';
import type { Permission } from '../api.ts';

interface KindProps { point: RestorePoint }
interface RestoreKind { id: string; label: string; description: string; operationId: string; Form: FunctionComponent<KindProps>; permission?: Permission }

/** Restore kinds, each with the operationId of its route. */
export const RESTORE_KINDS: readonly RestoreKind[] = [
  { id: 'vm', label: 'Whole VM', description: 'Write every disk as a new VM on the data mover\'s host or a libvirt host, and start it.', operationId: 'requestRestore', Form: VmRestore },
  { id: 'instant', label: 'Instant recovery', description: 'Run the restore point as a new VM now, straight from the repository; finish (move to local disks) or discard it later.', operationId: 'startInstantRecovery', Form: InstantRestore },
  { id: 'disk', label: 'One disk', description: 'Write one disk of the restore point to an image file on the data mover\'s host.', operationId: 'restoreDisk', Form: DiskRestore },
  { id: 'files', label: 'Files', description: 'Browse the files inside the restore point and download them, one by one or as a zip.', operationId: 'listFiles', Form: FilesRestore, permission: 'files' },
];

export function RestoreWizard() {
  const session = useSession();
  const { query } = useLocation();
  const vms = useVms();
  const [vmId, setVmId] = useState(query['vm'] ?? '');
  const [pointId, setPointId] = useState(query['point'] ?? '');
  const [kindId, setKindId] = useState('');
  const points = useRestorePoints(vmId ? { vmId } : {});
  const kinds = RESTORE_KINDS.filter((k) => session.has(k.operationId) && session.can(k.permission ?? 'restore'));
  const point = points.data?.items.find((p) => p.restorePointId === pointId);
  const kind = kinds.find((k) => k.id === kindId) ?? (kinds.length === 1 ? kinds[0] : undefined);

  if (!session.can('restore')) return <Page title="Restore"><p>Your roles do not allow restores.</p></Page>;
  return (
    <Page title="Restore">
      <ol class="wizard">
        <li class="step">
          <h2 id="step-vm">1. VM</h2>
          <select aria-labelledby="step-vm" value={vmId} onChange={(e) => { setVmId((e.target as HTMLSelectElement).value); setPointId(''); }}>
            <option value="">Choose a VM…</option>
            {(vms.data?.items ?? []).map((v) => <option key={v.vmId} value={v.vmId}>{v.name}</option>)}
          </select>
        </li>
        {vmId ? (
          <li class="step">
            <h2 id="step-point">2. Restore point</h2>
            {(points.data?.items.filter((p) => !p.expiredAt).length ?? 0) === 0 ? <Empty>This VM has no restore points.</Empty> : (
              <select aria-labelledby="step-point" value={pointId} onChange={(e) => setPointId((e.target as HTMLSelectElement).value)}>
                <option value="">Choose a restore point…</option>
                {points.data!.items.filter((p) => !p.expiredAt).map((p) => (
                  <option key={p.restorePointId} value={p.restorePointId}>{when(p.createdAt)} · {p.kind} · {bytes(p.sizeBytes)} · {shortId(p.restorePointId)}</option>
                ))}
              </select>
            )}
          </li>
        ) : null}
        {point ? (
          <li class="step">
            <h2 id="step-kind">3. What to restore</h2>
            <div role="radiogroup" aria-labelledby="step-kind" class="kinds">
              {kinds.map((k) => (
                <label key={k.id} class="kind">
                  <input type="radio" name="kind" value={k.id} checked={kind?.id === k.id} onChange={() => setKindId(k.id)} />
                  <strong>{k.label}</strong> <span class="muted">{k.description}</span>
                </label>
              ))}
            </div>
          </li>
        ) : null}
        {point && kind ? <li class="step"><h2>4. {kind.label}</h2><kind.Form point={point} /></li> : null}
      </ol>
    </Page>
  );
}

function DiskRestore(props: KindProps) {
  const disks = props.point.disks;
  const [disk, setDisk] = useState(disks[0]?.name ?? '');
  const [path, setPath] = useState('');
  const [format, setFormat] = useState<'raw' | 'qcow2'>('raw');
  const [overwrite, setOverwrite] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  const [done, setDone] = useState<{ path?: string; sizeBytes: number; durationMs: number } | undefined>();
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true); setError(undefined); setDone(undefined);
    try {
      setDone(await post('/v1/restores', { restorePointId: props.point.restorePointId, disk, target: { kind: 'file', path }, format, overwrite }, { 'Idempotency-Key': crypto.randomUUID() }));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="form" onSubmit={(e) => void submit(e)}>
      <label>Disk <select value={disk} onChange={(e) => setDisk((e.target as HTMLSelectElement).value)}>
        {disks.map((d) => <option key={d.name} value={d.name}>{d.name} ({bytes(d.sizeBytes)})</option>)}
      </select></label>
      <label>Target image file <input type="text" required value={path} onInput={(e) => setPath((e.target as HTMLInputElement).value)} spellcheck={false}
        placeholder={`…/restores/${props.point.restorePointId.slice(0, 8)}-${disk || 'disk'}.raw`} aria-describedby="target-help" /></label>
      <p id="target-help" class="muted">A new file on the data mover's host, inside its restore directories (with <code>cairn up</code>: <code>&lt;data&gt;/restores/</code>); other places are refused.</p>
      <label>Format <select value={format} onChange={(e) => setFormat((e.target as HTMLSelectElement).value as 'raw' | 'qcow2')}>
        <option value="raw">raw</option><option value="qcow2">qcow2</option>
      </select></label>
      <label class="check"><input type="checkbox" checked={overwrite} onChange={(e) => setOverwrite((e.target as HTMLInputElement).checked)} /> Replace the file if it exists</label>
      <button type="submit" class="primary" data-action="restore" disabled={busy}>{busy ? 'Restoring…' : 'Restore disk'}</button>
      {busy ? <p role="status" class="muted">The data mover is writing the disk; this page answers when it is done.</p> : null}
      <ErrorBox error={error} />
      {done ? <p role="status" class="ok" data-restored={done.path ?? path}>Restored {bytes(done.sizeBytes)} to {done.path ?? path} in {(done.durationMs / 1000).toFixed(1)} s.</p> : null}
    </form>
  );
}
