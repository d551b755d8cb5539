// One message of a route (a single notice or a digest) and its renderings: e-mail, webhook
// bodies (Cairn JSON, Slack incoming webhook, Teams MessageCard) and a syslog line. The id is
// derived from the route and the notices, so a message sent again after a crash carries the
// same id (e-mail Message-ID, webhook `Idempotency-Key`).
import { createHash } from 'node:crypto';
import type { NotificationSeverity } from '@cairn/contracts';
import type { Notice } from './notice.ts';
import type { Group } from './digest.ts';

export interface Message {
  readonly id: string;
  readonly routeId: string;
  readonly site: string;
  readonly severity: NotificationSeverity;
  readonly title: string;
  readonly text: string;
  /** Notices in it (a digest counts more than it lists). */
  readonly count: number;
  readonly notices: readonly Notice[];
}

const RANK: NotificationSeverity[] = ['info', 'warning', 'error', 'critical'];

export function messageOf(routeId: string, site: string, group: Group): Message {
  const first = group.listed[0]!;
  const id = createHash('sha256').update(`${routeId}\n${group.firstPosition}\n${group.lastPosition}\n${group.count}`).digest('hex').slice(0, 32);
  const severity = RANK[Math.max(...group.listed.map((n) => RANK.indexOf(n.severity)))]!;
  if (group.count === 1) return { id, routeId, site, severity, title: first.title, text: first.text, count: 1, notices: group.listed };
  const kinds = Object.entries(group.kinds).map(([k, n]) => `${n} ${k}`).join(', ');
  const lines = group.listed.map((n) => `- ${n.time} ${n.title}: ${n.text}`);
  if (group.count > group.listed.length) lines.push(`… and ${group.count - group.listed.length} more (cairn audit --since ${first.time})`);
  return {
    id, routeId, site, severity, count: group.count, notices: group.listed,
    title: `Digest: ${group.count} notices (${kinds})`,
    text: lines.join('\n'),
  };
}

export function emailOf(m: Message, from: string, to: readonly string[]) {
  return {
    from, to: [...to],
    subject: `[Cairn ${m.site}] ${m.title}`,
    text: `${m.title}\n\n${m.text}\n\nSeverity: ${m.severity}. Site: ${m.site}. Route: ${m.routeId}. Notification ${m.id}.\n`,
    messageId: `<${m.id}@cairn.${m.site}>`,
    headers: { 'X-Cairn-Notification': m.id, 'X-Cairn-Severity': m.severity },
  };
}

const COLOURS: Record<NotificationSeverity, string> = { info: '2E7D32', warning: 'F9A825', error: 'C62828', critical: '6A1B9A' };

export function webhookBodyOf(m: Message, format: 'json' | 'slack' | 'teams' = 'json'): unknown {
  switch (format) {
    case 'slack':
      return { text: `*[Cairn ${m.site}] ${m.title}*\n${m.text}` };
    case 'teams':
      return {
        '@type': 'MessageCard', '@context': 'https://schema.org/extensions',
        summary: `[Cairn ${m.site}] ${m.title}`, themeColor: COLOURS[m.severity],
        title: `[Cairn ${m.site}] ${m.title}`, text: m.text.replace(/\n/g, '  \n'),
      };
    default:
      return {
        id: m.id, site: m.site, route: m.routeId, severity: m.severity, title: m.title, text: m.text, count: m.count,
        notices: m.notices.map((n) => ({ id: n.id, kind: n.kind, severity: n.severity, site: n.site, vmId: n.vmId ?? null, title: n.title, text: n.text, time: n.time })),
      };
  }
}
