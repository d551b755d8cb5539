// Schedule preview: the next runs of a policy's cron in its own time zone, only those inside
// its backup window (the scheduler starts nothing outside it: libs/jobs inBackupWindow), and
// its retention said in words.
import { Cron } from 'croner';
import type { Policy } from './api.ts';

export function inWindow(schedule: Policy['schedule'], at: Date): boolean {
  const w = schedule.window;
  if (!w || w.start === w.end) return true;
  const hm = new Intl.DateTimeFormat('en-GB', { timeZone: schedule.timezone, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).format(at);
  return w.start < w.end ? hm >= w.start && hm < w.end : hm >= w.start || hm < w.end;
}

/** The next `n` runs after `from`, or the reason there are none (a bad cron or zone). */
export function nextRuns(schedule: Policy['schedule'], n = 5, from = new Date()): { runs: Date[] } | { error: string } {
  let cron: Cron;
  try {
    cron = new Cron(schedule.cron, { timezone: schedule.timezone, paused: true });
  } catch (e) {
    return { error: `the schedule cannot be read: ${(e as Error).message}` };
  }
  const runs: Date[] = [];
  let cursor: Date = from;
  for (let guard = 0; runs.length < n && guard < 10_000; guard++) {
    const next = cron.nextRun(cursor);
    if (!next) break;
    if (inWindow(schedule, next)) runs.push(next);
    cursor = next;
  }
  return { runs };
}

/** A run's time in the policy's zone, e.g. "Mon 7 Dec 2026, 02:00 (Europe/Paris)". */
export function inZone(at: Date, timezone: string): string {
  return `${new Intl.DateTimeFormat('en-GB', { timeZone: timezone, weekday: 'short', day: 'numeric', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' }).format(at)} (${timezone})`;
}

export function retentionInWords(r: Policy['retention']): string {
  const parts: string[] = [];
  if (r.last) parts.push(`the last ${r.last}`);
  if (r.daily) parts.push(`one a day for ${r.daily} day${r.daily > 1 ? 's' : ''}`);
  if (r.weekly) parts.push(`one a week for ${r.weekly} week${r.weekly > 1 ? 's' : ''}`);
  if (r.monthly) parts.push(`one a month for ${r.monthly} month${r.monthly > 1 ? 's' : ''}`);
  if (r.yearly) parts.push(`one a year for ${r.yearly} year${r.yearly > 1 ? 's' : ''}`);
  if (parts.length === 0) return 'Keeps nothing: every restore point expires at once.';
  return `Keeps ${parts.join(', ')}; a restore point kept by any rule stays, the others expire (their chunks are freed by garbage collection).`;
}
