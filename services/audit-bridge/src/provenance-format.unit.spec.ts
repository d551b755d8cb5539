// The writer of a signed event reaches the SIEM: CEF `sproc`, the syslog structured data, OCSF.
import { describe, expect, it } from 'vitest';
import { newEvent, type CairnEvent } from '@cairn/contracts';
import { parseCef, toCef } from './cef.format.ts';
import { toSyslog } from './syslog.format.ts';
import { toOcsf } from './ocsf.mapping.ts';

const base = newEvent('UserCreated', { userId: 'bob', roles: ['auditor'] }, { site: 'site-a', actor: { kind: 'user', id: 'admin' }, streamId: 'user-bob' });
const signed: CairnEvent = { ...base, provenance: { writer: 'gateway', publicKey: `U${'A'.repeat(55)}`, signature: 'c2lnbmF0dXJlLWJ5dGVz' } };

describe('the writer in SIEM formats', () => {
  it('is named when the event is signed, and absent otherwise', () => {
    expect(parseCef(toCef(signed, { version: '1.0', position: 3n })).ext['sproc']).toBe('gateway');
    expect(parseCef(toCef(base, { version: '1.0', position: 3n })).ext['sproc']).toBeUndefined();
    expect(toSyslog(signed, 3n, { hostname: 'h', version: '1.0' })).toContain('writer="gateway"');
    expect(toSyslog(base, 3n, { hostname: 'h', version: '1.0' })).not.toContain('writer=');
    expect(toOcsf(signed, 3n, '1.0').unmapped.cairn.writer).toBe('gateway');
  });
});
