import { describe, expect, it } from 'vitest';
import { newEvent } from '@cairn/contracts';
import { escapeCefHeader, escapeCefValue, parseCef, toCef } from './cef.format.ts';
import { escapeSdValue, frameOctetCounted, toSyslog } from './syslog.format.ts';

const event = newEvent('JobFailed', { jobId: 'j1', phase: 'transfer', reason: 'a|b\\c=d\ne', retryable: false }, {
  site: 'site-a', streamId: 'job-j1', actor: { kind: 'service', id: 'scheduler@site-a' },
  id: '6f1c1c5e-2f0a-4c53-9d7e-0d1f5b1c2a3b', time: '2026-11-25T04:00:00.000Z',
});

describe('CEF', () => {
  it('escapes header fields and extension values as the CEF spec says', () => {
    expect(escapeCefHeader('a|b\\c=d')).toBe('a\\|b\\\\c=d');
    expect(escapeCefValue('a|b\\c=d\r\ne\rf')).toBe('a|b\\\\c\\=d\\ne\\rf');
  });

  it('writes one line with the envelope in extensions, and parses back', () => {
    const line = toCef(event, { version: '1.0', position: 7n });
    expect(line).not.toContain('\n');
    expect(line.startsWith(`CEF:0|Cairn|Cairn|1.0|JobFailed|Job failed|7|rt=${Date.parse('2026-11-25T04:00:00.000Z')} act=JobFailed suser=scheduler@site-a cs1Label=correlationId cs1=job-j1 `)).toBe(true);
    const { header, ext } = parseCef(line);
    expect(header).toEqual(['CEF:0', 'Cairn', 'Cairn', '1.0', 'JobFailed', 'Job failed', '7']);
    expect(ext).toMatchObject({ externalId: event.id, cn1: '7', cs2: 'job-j1', cs3: 'site-a', cs4: 'service' });
    expect(JSON.parse(ext['msg']!)).toEqual(event.data);
  });
});

describe('RFC 5424', () => {
  it('carries PRI, header, the cairn@32473 structured data and the CEF message, octet-counted', () => {
    const msg = toSyslog(event, 7n, { hostname: 'host a', version: '1.0' });
    expect(msg.startsWith('<107>1 2026-11-25T04:00:00.000Z host_a cairn - JobFailed [cairn@32473 eventId="6f1c1c5e-2f0a-4c53-9d7e-0d1f5b1c2a3b" type="JobFailed" schemaVersion="2" site="site-a" streamId="job-j1" correlationId="job-j1" actor="service:scheduler@site-a" position="7"] CEF:0|')).toBe(true);
    expect(escapeSdValue('a"b\\c]d')).toBe('a\\"b\\\\c\\]d');
    const framed = frameOctetCounted('é x');
    expect(framed.toString('utf8')).toBe('4 é x');
  });
});
