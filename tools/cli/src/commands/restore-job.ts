// Restore jobs from the CLI: follow one (started by restore-request.ts) to its end from its own
// stream `restore-<id>` and the live progress subject, as `backup --wait` follows a backup.
import { eventSubject, progressSubject, type KnownEvent } from '@cairn/contracts';
import { EVENT_TYPE_HEADER, fold } from '@cairn/eventlog';
import { isRestoreOver, restoreDecider, restoreJobView, type RestoreState } from '@cairn/jobs';
import { CliError, EXIT } from '../cli-error.ts';
import { bytes, output, type Session } from '../session.ts';
import { progressLine } from './operate.command.ts';

const FAILURE_EXIT: Record<string, number> = {
  not_found: EXIT.notFound, conflict: EXIT.conflict, forbidden: EXIT.denied, invalid: EXIT.usage, failed: EXIT.jobFailed,
};

/** How often the restore's stream is read when no event pushed a wake-up: with and without the event subscription. */
const POLL_PUSHED_MS = 2000;
const POLL_MS = 300;
/** The events after which `isRestoreOver` holds: the only ones worth reading the stream for. */
const ENDING_EVENTS: ReadonlySet<string> = new Set(['RestoreCompleted', 'RestoreFailed']);

async function restoreState(s: Session, restoreId: string): Promise<RestoreState> {
  const log = await s.eventLog();
  const events: KnownEvent[] = [];
  for await (const r of log.readStream(`restore-${restoreId}`)) events.push(r.event);
  return fold(restoreDecider, events);
}

/** True when `id` names a restore job (its stream exists). */
export async function isRestoreJob(s: Session, id: string): Promise<boolean> {
  const st = await restoreState(s, id).catch(() => undefined);
  return st !== undefined && st.status !== 'none';
}

/** Follows a restore job until it ends, drawing a progress line on a terminal; throws when it failed. */
export async function watchRestore(s: Session, restoreId: string, timeoutMs: number): Promise<void> {
  const started = Date.now();
  let lastAt = Date.now(); let lastDone = 0; let rate = 0; let printed = -1;
  const sub = s.nc.subscribe(progressSubject(s.site, restoreId));
  // An event that ends the job (ENDING_EVENTS) wakes the loop below at once (push), which then
  // reads the stream; the others do not (the progress line has its own subject), so a restore
  // costs two stream reads (the first line, the end), not one per event and poll: each read asks
  // JetStream once per event of the stream, CPU in this process and in NATS while the data mover
  // needs both cores.
  // The poll stays as the safety net: every POLL_PUSHED_MS while the subscription lives (a missed
  // message), every POLL_MS once it ended (an identity that may not subscribe to events).
  const events = s.nc.subscribe(eventSubject(s.site, `restore-${restoreId}`));
  let woken = false;
  let pushed = true;
  let wake: (() => void) | undefined;
  void (async () => {
    try {
      for await (const m of events) {
        const type = m.headers?.get(EVENT_TYPE_HEADER);
        if (type && !ENDING_EVENTS.has(type)) continue; // no type: read to see
        woken = true; wake?.();
      }
    } catch { /* not allowed to subscribe: the poll alone follows the job */ }
    pushed = false;
    wake?.();
  })();
  const tty = process.stderr.isTTY && !s.json;
  void (async () => {
    for await (const m of sub) {
      const p = m.json<{ bytesDone: number; bytesPlanned: number; disk: string }>();
      const now = Date.now();
      if (now - lastAt >= 500) { rate = ((p.bytesDone - lastDone) * 1000) / (now - lastAt); lastAt = now; lastDone = p.bytesDone; }
      if (tty) process.stderr.write(`\r  ${progressLine(p.disk, p.bytesDone, p.bytesPlanned, rate)}        `);
      else if (!s.json) {
        // Not a terminal (a log, a pipe): one line per tenth done.
        const tenth = p.bytesPlanned > 0 ? Math.floor((p.bytesDone / p.bytesPlanned) * 10) : 10;
        if (tenth > printed) { printed = tenth; process.stderr.write(`  ${progressLine(p.disk, p.bytesDone, p.bytesPlanned, rate)}\n`); }
      }
    }
  })();
  try {
    await s.nc.flush(); // subscribed before saying so
    // The state read for the first line is the loop's first state too (one read of the stream less).
    let first: RestoreState | undefined;
    if (!s.json) {
      first = await restoreState(s, restoreId);
      process.stderr.write(`following restore ${restoreId}: ${first.status}${first.worker ? ` on ${first.worker}, attempt ${first.attempts}` : ''}\n`);
    }
    for (;;) {
      const st = first ?? await restoreState(s, restoreId);
      first = undefined;
      if (isRestoreOver(st)) {
        if (tty) process.stderr.write('\n');
        const summary = restoreJobView(st)!;
        if (st.status === 'failed') {
          if (s.json) output(s, summary, () => '');
          throw new CliError(`restore ${restoreId} failed: ${st.failure?.reason ?? 'unknown reason'}`, FAILURE_EXIT[st.failure?.code ?? 'failed'] ?? EXIT.jobFailed);
        }
        const vm = st.completed?.vm;
        output(s, summary, () => [...summary.disks.map((d) =>
          `restored ${d.disk} of ${summary.restorePointId} to ${d.path} (${bytes(d.sizeBytes)} in ${(summary.durationMs / 1000).toFixed(1)} s${st.attempts > 1 ? `, ${st.attempts} attempts` : ''})`),
        ...(vm ? [`VM ${vm.name} (uuid ${vm.uuid}, MACs ${Object.values(vm.macs).join(', ') || 'none'}) in ${vm.dir}: ${vmState(vm)}`] : [])].join('\n'));
        return;
      }
      if (Date.now() - started > timeoutMs) {
        throw new CliError(`restore ${restoreId} still ${st.status} after ${timeoutMs / 1000} s`, EXIT.failure, `follow it with \`cairn job watch ${restoreId}\``);
      }
      if (!woken) {
        await new Promise<void>((r) => {
          const t = setTimeout(r, pushed ? POLL_PUSHED_MS : POLL_MS);
          wake = () => { clearTimeout(t); r(); };
        });
      }
      woken = false; wake = undefined;
    }
  } finally {
    sub.unsubscribe();
    events.unsubscribe();
  }
}

function vmState(vm: NonNullable<NonNullable<RestoreState['completed']>['vm']>): string {
  if (vm.vmware?.attached) return `attached to vSphere VM ${vm.vmware.vm} (${vm.vmware.moref}) on ${vm.vmware.host}: ${vm.vmware.attached.join(', ')} (copies stay in ${vm.dir})`;
  if (vm.vmware) return `vSphere VM ${vm.vmware.vm} (${vm.vmware.moref}) on ${vm.vmware.host}, ${vm.started ? 'powered on' : 'powered off'}; its disks uploaded to the datastore (copies stay in ${vm.dir})`;
  if (vm.libvirt) {
    const safety = vm.libvirt.safetyRestorePointId ? `; what it overwrote is restore point ${vm.libvirt.safetyRestorePointId}` : '';
    return `libvirt domain ${vm.libvirt.domain} on ${vm.libvirt.host}, ${vm.started ? 'running' : `defined (start it with virsh start ${vm.libvirt.domain})`}${vm.serialLog ? `, console ${vm.serialLog}` : ''}${safety}`;
  }
  if (vm.qemuInPlace) {
    const safety = vm.qemuInPlace.safetyRestorePointId ? `; what it overwrote is restore point ${vm.qemuInPlace.safetyRestorePointId}` : '';
    return `its disks in ${vm.dir} restored in place (QEMU hypervisor ${vm.qemuInPlace.host}); start it as before${safety}`;
  }
  return vm.started ? `running (pid ${vm.pid}), console ${vm.serialLog}, QMP ${vm.qmpSocket}` : `start it with ${vm.startScript}`;
}
