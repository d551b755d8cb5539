// The security events (access, four-eyes, restores, repository keys) as the SIEM formats carry them: CEF
// severity and fields, syslog severity, and OCSF records that validate against the documented
// class fields with the activity docs/audit-siem.md lists.
import { describe, expect, it } from 'vitest';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { newEvent, type CairnEvent } from '@cairn/contracts';
import { parseCef, toCef } from './cef.format.ts';
import { syslogSeverity } from './syslog.format.ts';
import { OcsfEntityManagement, toOcsf } from './ocsf.mapping.ts';
import { toHec } from './hec.format.ts';

const site = 'site-a';
const bob = { kind: 'user' as const, id: 'bob' };
const meta = (streamId: string) => ({ site, actor: bob, streamId });

const REPO = '5f1c0d2e3a4b59687a8b9c0d1e2f3a4b';
const EVENTS: Array<[CairnEvent, { activity: string; cef: number; syslog: number; status: 'Success' | 'Failure'; severity?: string }]> = [
  [newEvent('UserCreated', { userId: 'olga', roles: ['operator'] }, meta('user-olga')), { activity: 'Create', cef: 5, syslog: 5, status: 'Success' }],
  [newEvent('UserKeyAdded', { userId: 'olga', publicKey: `U${'A'.repeat(55)}` }, meta('user-olga')), { activity: 'Create', cef: 5, syslog: 5, status: 'Success' }],
  [newEvent('UserKeyRevoked', { userId: 'olga', publicKey: `U${'A'.repeat(55)}` }, meta('user-olga')), { activity: 'Delete', cef: 5, syslog: 5, status: 'Success' }],
  [newEvent('TokenIssued', { tokenId: 't1', userId: 'olga', name: 'cli', tokenSha256: 'a'.repeat(64), expiresAt: null }, meta('token-t1')), { activity: 'Create', cef: 5, syslog: 5, status: 'Success' }],
  [newEvent('TokenRevoked', { tokenId: 't1', userId: 'olga' }, meta('token-t1')), { activity: 'Delete', cef: 5, syslog: 5, status: 'Success' }],
  [newEvent('SignedIn', { userId: 'bob', method: 'token', tokenId: 't2', roles: ['administrator'] }, meta('access-2026-11-25')), { activity: 'Read', cef: 5, syslog: 5, status: 'Success' }],
  [newEvent('AccessDenied', { userId: 'bob', roles: ['auditor'], operation: 'requestBackup', needed: 'backup', method: 'POST', path: '/v1/backups' }, meta('access-2026-11-25')), { activity: 'Other', cef: 7, syslog: 3, status: 'Failure' }],
  [newEvent('ApprovalRequested', { approvalId: 'a1', action: { kind: 'delete-restore-point', restorePointId: 'rp1' }, requestedBy: 'admin' }, meta('approval-a1')), { activity: 'Create', cef: 5, syslog: 5, status: 'Success' }],
  [newEvent('ApprovalGranted', { approvalId: 'a1', approvedBy: 'bob' }, meta('approval-a1')), { activity: 'Update', cef: 5, syslog: 5, status: 'Success' }],
  [newEvent('RestorePointDeleted', { restorePointId: 'rp1', approvalId: 'a1', requestedBy: 'admin', approvedBy: 'bob' }, meta('restorepoint-rp1')), { activity: 'Delete', cef: 5, syslog: 5, status: 'Success' }],
  [newEvent('DiskRestored', { restoreId: 'r1', restorePointId: 'rp1', disk: 'vda', target: 'file', path: '/restores/x.raw', sizeBytes: 1 }, meta('restore-r1')), { activity: 'Read', cef: 5, syslog: 5, status: 'Success' }],
  [newEvent('RepositoryInitialized', { repositoryId: REPO, host: 'vault-1', keyId: 'a1b2c3d4e5f60718', wrapping: 'passphrase', chunkSize: 262144 }, meta(`repository-${REPO}`)),
    { activity: 'Create', cef: 5, syslog: 5, status: 'Success', severity: 'Medium' }],
  [newEvent('RepositoryKeyRotated', { repositoryId: REPO, keyId: '0011223344556677', previousKeyIds: ['a1b2c3d4e5f60718'], wrapping: 'key-provider', keyProvider: 'file', openedWith: 'recovery-key' }, meta(`repository-${REPO}`)),
    { activity: 'Update', cef: 5, syslog: 5, status: 'Success', severity: 'Medium' }],
  // Whoever holds a recovery key reads every restore point: high, a syslog warning.
  [newEvent('RecoveryKeyExported', { repositoryId: REPO, fingerprint: '0123456789abcdef', openedWith: 'passphrase', file: '/safe/recovery.txt' }, meta(`repository-${REPO}`)),
    { activity: 'Read', cef: 8, syslog: 4, status: 'Success', severity: 'High' }],
];

const ocsf = TypeCompiler.Compile(OcsfEntityManagement);

describe('security events in CEF, syslog and OCSF', () => {
  for (const [event, want] of EVENTS) {
    it(`${event.type}: ${want.activity}, CEF severity ${want.cef}, the person as actor`, () => {
      const cef = parseCef(toCef(event, { version: '0.1.0', position: 7n }));
      expect(cef.header[4]).toBe(event.type);
      expect(Number(cef.header[6])).toBe(want.cef);
      expect(cef.ext).toMatchObject({ suser: 'bob', cs4: 'user', cs2: event.streamId, externalId: event.id });
      expect(syslogSeverity(event.type)).toBe(want.syslog);
      const record = toOcsf(event, 7n, '0.1.0');
      expect([...ocsf.Errors(record)].map((e) => `${e.path} ${e.message}`)).toEqual([]);
      expect(record).toMatchObject({ activity_name: want.activity, status: want.status, actor: { user: { uid: 'bob' } }, entity: { type: event.streamId.split('-')[0] } });
      if (want.severity) expect(record.severity).toBe(want.severity);
      if (event.streamId.startsWith('repository-')) {
        expect(record.entity).toEqual({ uid: event.streamId, type: 'repository', name: REPO });
        expect(cef.ext).toMatchObject({ cs2: `repository-${REPO}` });
      }
    });
  }
});

describe('an unverified person (a site without signed commands)', () => {
  it('says so in CEF (cs6 actorAuthenticated=false) and OCSF (unmapped.cairn.actorAuthenticated); an authenticated one carries nothing', () => {
    const claimed = newEvent('PolicyCreated', { policyId: 'p1', name: 'p', selector: { vmIds: ['vm1'] }, schedule: { cron: '0 2 * * *', timezone: 'UTC' }, retention: { keepLast: 1 }, repository: 'default' } as never,
      { site, actor: { kind: 'user', id: 'mallory', authenticated: false }, streamId: 'policy-p1' });
    const cef = parseCef(toCef(claimed, { version: '0.1.0', position: 1n }));
    expect(cef.ext).toMatchObject({ suser: 'mallory', cs6Label: 'actorAuthenticated', cs6: 'false' });
    const record = toOcsf(claimed, 1n, '0.1.0');
    expect([...ocsf.Errors(record)]).toEqual([]);
    expect(record.unmapped.cairn.actorAuthenticated).toBe(false);
    const real = newEvent('UserCreated', { userId: 'olga', roles: ['operator'] }, meta('user-olga'));
    expect(parseCef(toCef(real, { version: '0.1.0', position: 2n })).ext).not.toHaveProperty('cs6');
    expect(toOcsf(real, 2n, '0.1.0').unmapped.cairn).not.toHaveProperty('actorAuthenticated');
  });
});

describe('what a SIEM never gets', () => {
  it('a token\'s hash stays in the log: CEF, OCSF and HEC leave it out', () => {
    const e = EVENTS[1]![0];
    const all = [toCef(e, { version: '0', position: 1n }), JSON.stringify(toOcsf(e, 1n, '0')), JSON.stringify(toHec(e, 1n, { host: 'h' }))];
    for (const text of all) {
      expect(text).not.toContain('a'.repeat(64));
      expect(text).toContain('olga');
    }
  });
});
