// The audit trail as CSV (RFC 4180): quoted where needed, and a cell that a spreadsheet would
// run as a formula (=, +, -, @ first) quoted too, so an exported event cannot execute there.
import type { AuditEntry } from './api.ts';

const HEAD = ['position', 'time', 'type', 'site', 'actorKind', 'actor', 'streamId', 'correlationId', 'data'];

function cell(v: unknown): string {
  const s = typeof v === 'string' ? v : JSON.stringify(v) ?? '';
  if (/^[=+\-@\t\r]/.test(s)) return `"'${s.replace(/"/g, '""')}"`;
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function toCsv(rows: readonly AuditEntry[]): string {
  return [HEAD.join(','), ...rows.map((e) => [e.position, e.time, e.type, e.site, e.actor.kind, e.actor.id, e.streamId, e.correlationId, e.data].map(cell).join(','))].join('\r\n') + '\r\n';
}
