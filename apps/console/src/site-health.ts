// Every site's health as the hub sees it (GET /v1/sites/health at the hub's gateway): one line of
// words per site for the dashboard's Sites tile and the cells of the Sites page. Pure, unit-tested.
import type { SiteHealth } from './api.ts';

/** The hub's site name (tools/cli/src/stack/hub-stack.ts). */
export const HUB_SITE = 'hub';

/** A duration in the largest whole unit (`45 s`, `12 min`, `3 h`, `2 d`). */
export function durationInWords(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 60 ? `${s} s` : s < 3600 ? `${Math.floor(s / 60)} min` : s < 86_400 ? `${Math.floor(s / 3600)} h` : `${Math.floor(s / 86_400)} d`;
}

export type SiteVerdict = 'ok' | 'warn' | 'bad';

export interface SiteSummary {
  readonly site: string;
  /** bad: silent or its leaf link down; warn: failed jobs, RPO misses or events not yet copied; ok otherwise. */
  readonly verdict: SiteVerdict;
  readonly link: string;
  readonly lastContact: string;
  readonly eventLag: string;
  readonly failed: string;
  readonly rpo: string;
  /** Replication lag per pair (`→ b 2 min, 2 replicas`), or none. */
  readonly replication: readonly string[];
  /** The whole line, for the tile. */
  readonly line: string;
}

export function summarizeSite(s: SiteHealth, now: number): SiteSummary {
  const verdict: SiteVerdict = s.silent || s.leafLink === 'down' ? 'bad' : s.failedJobs24h > 0 || s.rpoMisses24h > 0 || (s.eventLag ?? 0) > 0 ? 'warn' : 'ok';
  const link = `link ${s.leafLink}${s.silent ? ', SILENT' : ''}`;
  const lastContact = s.lastContactAt ? `${durationInWords(now - Date.parse(s.lastContactAt))} ago` : 'never';
  const eventLag = s.eventLag === null ? 'unknown' : `${s.eventLag}`;
  const failed = `${s.failedJobs24h}`;
  const rpo = `${s.rpoMisses24h}`;
  const replication = s.replication.map((r) => `→ ${r.target} ${durationInWords(r.lagMs)} lag, ${r.replicas} replica${r.replicas === 1 ? '' : 's'}`);
  const line = [
    `${s.site}: ${link}`, `contact ${lastContact}`, `event lag ${eventLag}`,
    `${failed} failed jobs 24 h`, `${rpo} RPO misses 24 h`, ...(replication.length ? [replication.join('; ')] : ['no replication']),
  ].join(' · ');
  return { site: s.site, verdict, link, lastContact, eventLag, failed, rpo, replication, line };
}
