// CEF (ArcSight Common Event Format) payload for one Cairn event, with CEF's escaping rules:
// header fields escape `\` and `|`; extension values escape `\` and `=` and encode line
// breaks as `\n` / `\r`, so one event is always one line.
import type { CairnEvent } from '@cairn/contracts';

export const CEF_VENDOR = 'Cairn';
export const CEF_PRODUCT = 'Cairn';

/** Escapes a CEF header field (vendor, product, version, signature id, name). */
export function escapeCefHeader(value: string): string {
  return value.replace(/[\\|]/g, (c) => `\\${c}`).replace(/\r\n|\r|\n/g, ' ');
}

/** Escapes a CEF extension value. */
export function escapeCefValue(value: string): string {
  return value
    .replace(/[\\=]/g, (c) => `\\${c}`)
    .replace(/\r\n|\n/g, '\\n')
    .replace(/\r/g, '\\r');
}

/** "JobFailed" -> "Job failed": the human-readable CEF name of an event type. */
export function eventTypeName(type: string): string {
  const words = type.replace(/([a-z0-9])([A-Z])/g, '$1 $2').toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

const FAILURES = new Set(['JobFailed', 'SnapshotFailed', 'MessageDeadLettered', 'AccessDenied', 'AuthFailed']);
const SECURITY_RELEVANT = new Set([
  'PolicyCreated', 'PolicyUpdated', 'PolicyDeleted', 'RestorePointExpired', 'JobCancelled',
  // Access and four-eyes (docs/security.md): who may do what, and destructive acts.
  'UserCreated', 'UserRolesChanged', 'UserDisabled', 'UserKeyAdded', 'UserKeyRevoked', 'TokenIssued', 'TokenRevoked', 'SignedIn', 'AccessRecovered',
  'ApprovalRequested', 'ApprovalGranted', 'ApprovalRejected', 'ApprovalExecuted', 'RestorePointDeleted', 'RestorePointLocked', 'DiskRestored',
  // Repository keys (docs/security.md, Repository keys).
  'RepositoryInitialized', 'RepositoryKeyRotated', 'RepositoryDeleted',
]);
/** Acts that hand out the means to read everything: whoever holds a recovery key reads every restore point. */
const HIGH_RISK = new Set(['RecoveryKeyExported']);

/** How an event type weighs for a SIEM; CEF, syslog and OCSF severities all follow from it. */
export type EventWeight = 'failure' | 'high-risk' | 'security' | 'info';
export function eventWeight(type: string): EventWeight {
  if (FAILURES.has(type)) return 'failure';
  if (HIGH_RISK.has(type)) return 'high-risk';
  if (SECURITY_RELEVANT.has(type)) return 'security';
  return 'info';
}

/**
 * The event as a SIEM receives it: the same, except that a token's SHA-256 (TokenIssued) is
 * left out; the log and its hash chain keep it, a SIEM has no use for it.
 */
export function forSiem<E extends CairnEvent>(event: E): E {
  if (event.type !== 'TokenIssued' || typeof event.data !== 'object' || event.data === null) return event;
  const { tokenSha256: _omitted, ...data } = event.data as Record<string, unknown>;
  return { ...event, data };
}

/**
 * CEF severity 0-10: failures 7 and high-risk acts 8 (both high), security-relevant changes 5
 * (medium), the rest 3 (low).
 */
export function cefSeverity(type: string): number {
  return { failure: 7, 'high-risk': 8, security: 5, info: 3 }[eventWeight(type)];
}

/** Longest `msg` kept (ArcSight truncates at 1023 characters anyway). */
const MAX_MSG = 1023;

export interface CefContext {
  /** Cairn version written in the header (Device Version). */
  readonly version: string;
  /** Global position of the event in the site's log. */
  readonly position: bigint;
}

/** The CEF line of one event (no trailing newline). */
export function toCef(event: CairnEvent, ctx: CefContext): string {
  const header = [
    'CEF:0', CEF_VENDOR, CEF_PRODUCT, ctx.version, event.type, eventTypeName(event.type), String(cefSeverity(event.type)),
  ].map((v, i) => (i === 0 ? v : escapeCefHeader(v))).join('|');
  const data = JSON.stringify(forSiem(event).data);
  const ext: Array<[string, string]> = [
    ['rt', String(Date.parse(event.time))],
    ['act', event.type],
    ['suser', event.actor.id],
    ['cs1Label', 'correlationId'],
    ['cs1', event.correlationId],
    ['cs2Label', 'streamId'],
    ['cs2', event.streamId],
    ['cs3Label', 'site'],
    ['cs3', event.site],
    ['cs4Label', 'actorKind'],
    ['cs4', event.actor.kind],
    ['cn1Label', 'position'],
    ['cn1', ctx.position.toString()],
    ['externalId', event.id],
    ['msg', data.length > MAX_MSG ? `${data.slice(0, MAX_MSG - 3)}...` : data],
  ];
  if (event.causationId !== null) ext.push(['cs5Label', 'causationId'], ['cs5', event.causationId]);
  // A person's name nobody verified (a site without signed commands): docs/audit-siem.md.
  if (event.actor.authenticated === false) ext.push(['cs6Label', 'actorAuthenticated'], ['cs6', 'false']);
  // The identity that wrote and signed it (secure sites): the event's source process.
  if (event.provenance) ext.push(['sproc', event.provenance.writer]);
  return `${header}|${ext.map(([k, v]) => `${k}=${escapeCefValue(v)}`).join(' ')}`;
}

/** Parses a CEF line back (header fields and extensions, unescaped): for tests and tools. */
export function parseCef(line: string): { header: string[]; ext: Record<string, string> } {
  const header: string[] = [];
  let i = 0;
  let cur = '';
  while (header.length < 7) {
    if (i >= line.length) throw new Error(`not a CEF line (only ${header.length} header fields): ${line}`);
    const c = line[i]!;
    if (c === '\\' && i + 1 < line.length) { cur += line[i + 1]; i += 2; continue; }
    if (c === '|') { header.push(cur); cur = ''; i++; continue; }
    cur += c;
    i++;
  }
  const rest = line.slice(i);
  const ext: Record<string, string> = {};
  // A key starts after a space (or the start) and is followed by an unescaped `=`.
  const keyAt = /(?:^| )([A-Za-z0-9_]+)=/g;
  const starts: Array<{ key: string; from: number; valueFrom: number }> = [];
  // Values escape every `=`, so an unescaped one always ends a key.
  for (const m of rest.matchAll(keyAt)) {
    starts.push({ key: m[1]!, from: m.index, valueFrom: m.index + m[0].length });
  }
  starts.forEach((s, n) => {
    const end = n + 1 < starts.length ? starts[n + 1]!.from : rest.length;
    ext[s.key] = unescapeCefValue(rest.slice(s.valueFrom, end));
  });
  return { header, ext };
}

function unescapeCefValue(v: string): string {
  return v.replace(/\\(.)/g, (_m, c: string) => (c === 'n' ? '\n' : c === 'r' ? '\r' : c));
}
