// The restore wizard's "Whole VM" step: every disk of the restore point written as a new VM
// (POST /v1/restore-jobs with a `vm` target), on the data mover's host (QEMU, a start script)
// or defined on a libvirt hypervisor, optionally started. The job is followed live: its state
// from the feed's restore events, its progress from the feed's progress frames.
import { useState } from 'preact/hooks';
import { post, type RestorePoint } from '../api.ts';
import { useFeed } from '../live.ts';
import { useRestoreJob, useVms } from '../queries.ts';
import { ErrorBox, Progress, StateBadge, bytes } from '../ui.tsx';

/** A new VM's name: what the API accepts (libs/contracts RestoreRequestTarget). */
export const VM_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** `<original>-<suffix>`, made acceptable as a VM name. */
export function defaultVmName(original: string | undefined, suffix: string): string {
  const base = (original ?? 'vm').replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[^A-Za-z0-9]+/, '') || 'vm';
  return `${base.slice(0, 63 - suffix.length)}-${suffix}`;
}

export function VmRestore(props: { point: RestorePoint }) {
  const vms = useVms();
  const original = vms.data?.items.find((v) => v.vmId === props.point.vmId);
  const libvirtHosts = [...new Set((vms.data?.items ?? []).filter((v) => v.hypervisor.kind === 'libvirt').map((v) => v.hypervisor.host))].sort();
  const [vmName, setVmName] = useState(() => defaultVmName(original?.name, 'restored'));
  const [host, setHost] = useState('');
  const [storage, setStorage] = useState('');
  const [format, setFormat] = useState<'raw' | 'qcow2'>('qcow2');
  const [start, setStart] = useState(true);
  const [keepIdentity, setKeepIdentity] = useState(false);
  const [noNetwork, setNoNetwork] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  const [restoreId, setRestoreId] = useState<string | undefined>();
  const job = useRestoreJob(restoreId);
  const live = useFeed();

  const submit = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    if (!VM_NAME.test(vmName)) { setError(new Error('The VM name: letters, digits, dot, dash or underscore, starting with a letter or digit, at most 64.')); return; }
    setBusy(true);
    const id = crypto.randomUUID();
    try {
      const target = {
        kind: 'vm', vmName, format, start, keepIdentity,
        ...(storage.trim() ? { storage: storage.trim() } : {}),
        ...(host ? { host, ...(noNetwork ? { noNetwork: true } : {}) } : {}),
      };
      await post('/v1/restore-jobs', { restoreId: id, restorePointId: props.point.restorePointId, target });
      setRestoreId(id);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  const view = job.data;
  const state = (restoreId ? live.jobStates.get(restoreId) : undefined) ?? view?.state;
  const ended = state === 'completed' || state === 'failed';
  return (
    <form class="form" onSubmit={(e) => void submit(e)}>
      <label>New VM name <input type="text" required value={vmName} maxLength={64} spellcheck={false} onInput={(e) => setVmName((e.target as HTMLInputElement).value)} /></label>
      <label>Host <select value={host} onChange={(e) => setHost((e.target as HTMLSelectElement).value)} aria-describedby="host-help">
        <option value="">The data mover's host (QEMU)</option>
        {libvirtHosts.map((h) => <option key={h} value={h}>{h} (libvirt)</option>)}
      </select></label>
      <p id="host-help" class="muted">{host
        ? <>The VM is defined on <code>{host}</code> from the domain XML the restore point keeps; its disks go to the storage below on that host.</>
        : <>The disks, <code>vm.json</code> and a <code>start.sh</code> go to <code>&lt;storage&gt;/{vmName || '<name>'}/</code> on the data mover's host.</>}</p>
      <label>Storage directory <input type="text" value={storage} spellcheck={false} placeholder="default: <data>/restores/vms" onInput={(e) => setStorage((e.target as HTMLInputElement).value)} aria-describedby="storage-help" /></label>
      <p id="storage-help" class="muted">Inside the data mover's restore directories (with <code>cairn up</code>: <code>&lt;data&gt;/restores/</code>); other places are refused.</p>
      <label>Disk format <select value={format} onChange={(e) => setFormat((e.target as HTMLSelectElement).value as 'raw' | 'qcow2')}>
        <option value="qcow2">qcow2</option><option value="raw">raw</option>
      </select></label>
      <label class="check"><input type="checkbox" checked={start} onChange={(e) => setStart((e.target as HTMLInputElement).checked)} /> Start the VM once its disks are written</label>
      <label class="check"><input type="checkbox" checked={keepIdentity} onChange={(e) => setKeepIdentity((e.target as HTMLInputElement).checked)} /> Keep the original UUID and MAC addresses (only if the original is gone: the copy cannot run beside it)</label>
      {host ? <label class="check"><input type="checkbox" checked={noNetwork} onChange={(e) => setNoNetwork((e.target as HTMLInputElement).checked)} /> Keep every network card disconnected</label> : null}
      <button type="submit" class="primary" data-action="restore-vm" disabled={busy || (Boolean(restoreId) && !ended)}>{busy ? 'Starting…' : 'Restore VM'}</button>
      <ErrorBox error={error} />
      {restoreId ? (
        <div class="card current-restore" data-restore={restoreId} data-state={state ?? 'requested'} aria-live="polite">
          <p><strong>Restore job</strong> <a href={`/jobs/${encodeURIComponent(restoreId)}`}>{restoreId.slice(0, 8)}…</a> <StateBadge state={state ?? 'requested'} /></p>
          {!ended ? <Progress percent={live.percentOf(restoreId)} label="restore progress" /> : null}
          {state === 'completed' && view?.state === 'completed' ? (
            <p role="status" class="ok" data-restored-vm={view.vm?.name ?? vmName} data-serial-log={view.vm?.serialLog ?? ''}>
              Restored {bytes(view.sizeBytes)} in {(view.durationMs / 1000).toFixed(1)} s: VM <strong>{view.vm?.name ?? vmName}</strong>
              {view.vm?.libvirt ? <> defined on {view.vm.libvirt.host} as <code>{view.vm.libvirt.domain}</code></> : <> in <code>{view.vm?.dir}</code></>}
              {view.vm?.started ? ', running' : view.vm?.startScript ? <>, start it with <code>{view.vm.startScript}</code></> : ''}.
            </p>
          ) : state === 'completed' ? <p role="status" class="muted">Completed; reading the result…</p> : null}
          {state === 'failed' && view?.failure ? <p class="error" role="alert">Failed ({view.failure.code}): {view.failure.reason}</p> : null}
        </div>
      ) : null}
    </form>
  );
}
