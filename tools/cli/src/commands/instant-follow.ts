// Follows `cairn instant finish` to the pivot: the session's stream `instant-<id>` and the
// mirror's live progress (loaded only when a finish is followed).
import { progressSubject, type KnownEvent } from '@cairn/contracts';
import { fold } from '@cairn/eventlog';
import { instantDecider, type InstantState } from '@cairn/jobs';
import { CliError, EXIT } from '../cli-error.ts';
import { output, type Session } from '../session.ts';
import { progressLine } from './operate.command.ts';

async function instantState(s: Session, instantId: string): Promise<InstantState> {
  const log = await s.eventLog();
  const events: KnownEvent[] = [];
  for await (const r of log.readStream(`instant-${instantId}`)) events.push(r.event);
  return fold(instantDecider, events);
}

/** Follows a finish until the pivot (or its failure), drawing the mirror's progress. */
export async function watchFinish(s: Session, instantId: string, timeoutMs: number): Promise<void> {
  const started = Date.now();
  let lastAt = Date.now(); let lastDone = 0; let rate = 0; let printed = -1;
  const tty = process.stderr.isTTY && !s.json;
  const sub = s.nc.subscribe(progressSubject(s.site, instantId));
  void (async () => {
    for await (const m of sub) {
      const p = m.json<{ bytesDone: number; bytesPlanned: number; disk: string }>();
      const now = Date.now();
      if (now - lastAt >= 500) { rate = ((p.bytesDone - lastDone) * 1000) / (now - lastAt); lastAt = now; lastDone = p.bytesDone; }
      if (tty) process.stderr.write(`\r  mirror ${progressLine(p.disk, p.bytesDone, p.bytesPlanned, rate)}        `);
      else if (!s.json) {
        const tenth = p.bytesPlanned > 0 ? Math.floor((p.bytesDone / p.bytesPlanned) * 10) : 10;
        if (tenth > printed) { printed = tenth; process.stderr.write(`  mirror ${progressLine(p.disk, p.bytesDone, p.bytesPlanned, rate)}\n`); }
      }
    }
  })();
  try {
    await s.nc.flush();
    for (;;) {
      const st = await instantState(s, instantId);
      if (st.status === 'finished' || (st.failure?.step === 'mirror' && st.status !== 'mirroring')) {
        if (tty) process.stderr.write('\n');
        if (st.status !== 'finished') throw new CliError(`instant recovery ${instantId}: the mirror failed: ${st.failure?.reason ?? 'unknown reason'}`, EXIT.jobFailed, 'the VM keeps running on its overlays: `cairn instant finish` again, or discard it');
        const done = st.finished!;
        output(s, { instantId, state: 'finished', disks: done.disks, durationMs: done.durationMs },
          () => `instant recovery ${instantId} finished in ${(done.durationMs / 1000).toFixed(1)} s: VM ${st.plan?.vmName} runs from ${done.disks.map((d) => d.path).join(', ')}; the export is closed`);
        return;
      }
      if (Date.now() - started > timeoutMs) throw new CliError(`instant recovery ${instantId} still ${st.status} after ${timeoutMs / 1000} s`, EXIT.failure, `\`cairn instant list\` shows its mirror's progress`);
      await new Promise((r) => setTimeout(r, 300));
    }
  } finally {
    sub.unsubscribe();
  }
}
