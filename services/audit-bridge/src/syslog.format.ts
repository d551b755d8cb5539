// RFC 5424 syslog messages carrying a CEF payload, with Cairn's structured data element
// `[cairn@32473 ...]`, framed by octet counting (RFC 6587 / RFC 5425) for TCP and TLS.
// 32473 is the example Private Enterprise Number of RFC 5612: replace it with the
// operator's own PEN once one is registered (option `enterpriseNumber`).
import type { CairnEvent } from '@cairn/contracts';
import { eventWeight, toCef } from './cef.format.ts';

export const EXAMPLE_PEN = 32473;
/** Facility 13: "log audit". */
export const AUDIT_FACILITY = 13;

export interface SyslogFormatOptions {
  readonly hostname: string;
  readonly appName?: string;
  readonly facility?: number;
  readonly enterpriseNumber?: number;
  readonly version: string;
}

/** Syslog severity: failures are errors (3), high-risk acts warnings (4), security-relevant changes notices (5), the rest info (6). */
export function syslogSeverity(type: string): number {
  return { failure: 3, 'high-risk': 4, security: 5, info: 6 }[eventWeight(type)];
}

/** Escapes an SD-PARAM value (RFC 5424 6.3.3: `"`, `\` and `]`). */
export function escapeSdValue(value: string): string {
  return value.replace(/["\\\]]/g, (c) => `\\${c}`);
}

/** A header field: printable US-ASCII without spaces, at most `max` characters, `-` when empty. */
function headerField(value: string, max: number): string {
  const clean = value.replace(/[^\x21-\x7e]/g, '_').slice(0, max);
  return clean.length ? clean : '-';
}

/** One RFC 5424 message (no framing). */
export function toSyslog(event: CairnEvent, position: bigint, options: SyslogFormatOptions): string {
  const pri = (options.facility ?? AUDIT_FACILITY) * 8 + syslogSeverity(event.type);
  const pen = options.enterpriseNumber ?? EXAMPLE_PEN;
  const params: Array<[string, string]> = [
    ['eventId', event.id],
    ['type', event.type],
    ['schemaVersion', String(event.schemaVersion)],
    ['site', event.site],
    ['streamId', event.streamId],
    ['correlationId', event.correlationId],
    ['actor', `${event.actor.kind}:${event.actor.id}`],
    ['position', position.toString()],
  ];
  if (event.causationId !== null) params.push(['causationId', event.causationId]);
  if (event.trace) params.push(['traceparent', event.trace.traceparent]);
  // The identity that wrote and signed it (secure sites, docs/security.md "Event provenance").
  if (event.provenance) params.push(['writer', event.provenance.writer]);
  const sd = `[cairn@${pen} ${params.map(([k, v]) => `${k}="${escapeSdValue(v)}"`).join(' ')}]`;
  return [
    `<${pri}>1`,
    headerField(event.time, 64),
    headerField(options.hostname, 255),
    headerField(options.appName ?? 'cairn', 48),
    '-',
    headerField(event.type, 32),
    sd,
    toCef(event, { version: options.version, position }),
  ].join(' ');
}

/** Octet-counting frame: `<length in bytes> <message>`. */
export function frameOctetCounted(message: string): Buffer {
  const body = Buffer.from(message, 'utf8');
  return Buffer.concat([Buffer.from(`${body.length} `, 'ascii'), body]);
}
