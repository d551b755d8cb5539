// Restore jobs from the CLI: follow one (started by restore-request.ts) to its end from its own
// stream `restore-<id>` and the live progress subject, as `backup --wait` follows a backup.
import { eventSubject, progressSubject, type KnownEvent } from '@cairn/contracts';
import { decodeRecord, EVENT_TYPE_HEADER, fold, REVISION_HEADER, type EventLog } from '@cairn/eventlog';
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

/** The stream read whole: its events and the revision of the last one (-1: none). */
async function readRestore(s: Session, restoreId: string): Promise<{ events: KnownEvent[]; revision: number }> {
  const log = await s.eventLog();
  const events: KnownEvent[] = [];
  let revision = -1;
  for await (const r of log.readStream(`restore-${restoreId}`)) {
    events.push(r.event);
    revision = Number(r.revision);
  }
  return { events, revision };
}

async function restoreState(s: Session, restoreId: string): Promise<RestoreState> {
  return fold(restoreDecider, (await readRestore(s, restoreId)).events);
}

/** True when `id` names a restore job (its stream exists). */
export async function isRestoreJob(s: Session, id: string): Promise<boolean> {
  const st = await restoreState(s, id).catch(() => undefined);
  return st !== undefined && st.status !== 'none';
}

/**
 * The events of a restore's stream as its subscription pushed them (the events subject carries
 * every append: the event, its revision in the stream), on top of what a read returned. A push is
 * not a record: a publish JetStream refused (another writer took the revision, the stream was
 * unavailable) reaches the subscribers too, and a core subscription loses what arrives while it is
 * disconnected. So the pushed events stand for the stream only when they follow the read without
 * a gap, no revision came twice with different events, the connection never dropped, and the
 * stream's last event (one read, not one per event) is the ending event pushed.
 */
export class PushedRestoreEvents {
  private readonly pushed = new Map<number, KnownEvent>();
  private base: { events: KnownEvent[]; revision: number } | undefined;
  private spoiled = false;

  /** What a read of the stream returned (the events before the first push, or with it). */
  read(base: { events: KnownEvent[]; revision: number }): void {
    this.base = base;
  }

  /** An event pushed on the subject (the message's data and revision header); anything odd spoils the set. */
  push(data: Uint8Array, revisionHeader: string | undefined, subject: string): void {
    const decoded = decodeRecord(data, 0n, subject);
    const revision = revisionHeader && /^\d+$/.test(revisionHeader) ? Number(revisionHeader) : undefined;
    if (!decoded.ok || revision === undefined) { this.spoiled = true; return; }
    const known = this.pushed.get(revision);
    if (known && known.id !== decoded.event.id) this.spoiled = true;
    this.pushed.set(revision, decoded.event);
  }

  /** The connection dropped: what was published meanwhile was not pushed. */
  spoil(): void {
    this.spoiled = true;
  }

  /** The stream's events up to `revision` from the read and the pushes, or undefined when they cannot stand for it. */
  through(revision: number): KnownEvent[] | undefined {
    // The read's events stand at their revisions only when it returned every one of them.
    if (this.spoiled || !this.base || this.base.events.length !== this.base.revision + 1) return undefined;
    const events = [...this.base.events];
    for (let r = this.base.revision + 1; r <= revision; r++) {
      const e = this.pushed.get(r);
      if (!e) return undefined;
      events.push(e);
    }
    // A revision the read holds and a push contradicts: the read is the record, but the pushes are not to be trusted.
    for (const [r, e] of this.pushed) if (r <= this.base.revision && this.base.events[r]?.id !== e.id) return undefined;
    return events;
  }

  /** The revision of the last ending event pushed, if any. */
  ending(endings: ReadonlySet<string>): number | undefined {
    let found: number | undefined;
    for (const [r, e] of this.pushed) if (endings.has(e.type) && (found === undefined || r > found)) found = r;
    return found;
  }
}

/**
 * The restore's state from the pushed events when its stream's last event (one read) is the
 * ending event pushed; undefined: read the stream instead.
 */
export async function stateFromPushes(log: EventLog, restoreId: string, pushes: PushedRestoreEvents): Promise<RestoreState | undefined> {
  const end = pushes.ending(ENDING_EVENTS);
  if (end === undefined || !log.lastEvent) return undefined;
  const events = pushes.through(end);
  if (!events) return undefined;
  const last = await log.lastEvent(`restore-${restoreId}`).catch(() => undefined);
  if (!last || Number(last.revision) !== end || last.event.id !== events[end]?.id) return undefined;
  return fold(restoreDecider, events);
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
  // The pushed events themselves: at the end, the stream's last event is read instead of the whole stream.
  const pushes = new PushedRestoreEvents();
  let woken = false;
  let pushed = true;
  let wake: (() => void) | undefined;
  void (async () => {
    try {
      for await (const m of events) {
        pushes.push(m.data, m.headers?.get(REVISION_HEADER), m.subject);
        const type = m.headers?.get(EVENT_TYPE_HEADER);
        if (type && !ENDING_EVENTS.has(type)) continue; // no type: read to see
        woken = true; wake?.();
      }
    } catch { /* not allowed to subscribe: the poll alone follows the job */ }
    pushed = false;
    wake?.();
  })();
  void (async () => {
    for await (const st of s.nc.status()) if (st.type === 'disconnect' || st.type === 'reconnect') pushes.spoil();
  })().catch(() => undefined);
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
    // The state read for the first line is the loop's first state too (one read of the stream less),
    // and what the pushed events follow on.
    const log = await s.eventLog();
    const read = await readRestore(s, restoreId);
    pushes.read(read);
    let first: RestoreState | undefined = fold(restoreDecider, read.events);
    if (!s.json) process.stderr.write(`following restore ${restoreId}: ${first.status}${first.worker ? ` on ${first.worker}, attempt ${first.attempts}` : ''}\n`);
    for (;;) {
      const st = first ?? await stateFromPushes(log, restoreId, pushes) ?? await restoreState(s, restoreId);
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
