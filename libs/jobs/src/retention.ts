// GFS retention: which restore points a policy keeps. A point is kept when it is among the
// newest `last`, or the newest of one of the newest `daily` days, `weekly` ISO weeks,
// `monthly` months or `yearly` years (calendar buckets in the policy's time zone).
import type { Policy } from '@cairn/contracts';

export interface RetainedPoint {
  readonly id: string;
  readonly time: string;
}

export interface RetentionDecision {
  readonly keep: ReadonlyMap<string, string[]>;
  readonly expire: ReadonlyMap<string, string>;
}

/** One formatter per time zone: building an Intl.DateTimeFormat costs far more than using it. */
const dayFormats = new Map<string, Intl.DateTimeFormat>();

function parts(date: Date, timeZone: string): { y: number; m: number; d: number } {
  let f = dayFormats.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' });
    if (dayFormats.size < 1024) dayFormats.set(timeZone, f);
  }
  const [y, m, d] = f.format(date).split('-').map(Number) as [number, number, number];
  return { y, m, d };
}

function isoWeek(y: number, m: number, d: number): string {
  const t = new Date(Date.UTC(y, m - 1, d));
  const day = (t.getUTCDay() + 6) % 7;
  t.setUTCDate(t.getUTCDate() - day + 3);
  const firstThursday = new Date(Date.UTC(t.getUTCFullYear(), 0, 4));
  const week = 1 + Math.round(((t.getTime() - firstThursday.getTime()) / 86_400_000 - 3 + ((firstThursday.getUTCDay() + 6) % 7)) / 7);
  return `${t.getUTCFullYear()}-W${week}`;
}

export function applyRetention(points: readonly RetainedPoint[], retention: Policy['retention'], timeZone: string): RetentionDecision {
  const newest = [...points].sort((a, b) => Date.parse(b.time) - Date.parse(a.time));
  const keep = new Map<string, string[]>();
  const mark = (id: string, why: string) => keep.set(id, [...(keep.get(id) ?? []), why]);
  newest.slice(0, retention.last).forEach((p) => mark(p.id, 'last'));
  const buckets: Array<[keyof Policy['retention'], (p: { y: number; m: number; d: number }) => string]> = [
    ['daily', (p) => `${p.y}-${p.m}-${p.d}`],
    ['weekly', (p) => isoWeek(p.y, p.m, p.d)],
    ['monthly', (p) => `${p.y}-${p.m}`],
    ['yearly', (p) => `${p.y}`],
  ];
  for (const [rule, bucketOf] of buckets) {
    const limit = retention[rule];
    const seen = new Set<string>();
    for (const p of newest) {
      if (seen.size >= limit) break;
      const b = bucketOf(parts(new Date(p.time), timeZone));
      if (seen.has(b)) continue;
      seen.add(b);
      mark(p.id, `${rule} ${b}`);
    }
  }
  const expire = new Map<string, string>();
  for (const p of newest) {
    if (!keep.has(p.id)) expire.set(p.id, `not kept by retention (last ${retention.last}, daily ${retention.daily}, weekly ${retention.weekly}, monthly ${retention.monthly}, yearly ${retention.yearly})`);
  }
  return { keep, expire };
}
