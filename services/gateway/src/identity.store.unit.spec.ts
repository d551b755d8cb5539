import { describe, expect, it } from 'vitest';
import { InMemoryEventLog } from '@cairn/eventlog';
import { IdentityStore, LastAdministratorError, tokenIdOf } from './identity.store.ts';
import { ROLE_PERMISSIONS, allows } from './roles.ts';
import { permissionOf } from './auth.guard.ts';

const site = 'site-a';
const admin = { kind: 'user', id: 'admin' } as const;

function store(log = new InMemoryEventLog(site)) {
  return { log, ids: new IdentityStore({ log, site, serviceActor: { kind: 'service', id: 'gateway@site-a' } }) };
}

describe('roles', () => {
  it('grants what the matrix says and nothing else', () => {
    expect(allows(['auditor'], 'read')).toBe(true);
    for (const p of ['backup', 'policy', 'restore', 'files', 'admin'] as const) expect(allows(['auditor'], p)).toBe(false);
    expect(allows(['restore-operator'], 'files')).toBe(true);
    expect(allows(['restore-operator'], 'restore')).toBe(true);
    expect(allows(['restore-operator'], 'backup')).toBe(false);
    expect(allows(['operator'], 'admin')).toBe(false);
    expect(allows(['auditor', 'restore-operator'], 'restore')).toBe(true);
    expect(allows([], 'read')).toBe(false);
    expect(ROLE_PERMISSIONS.administrator).toEqual(['read', 'backup', 'policy', 'restore', 'files', 'admin']);
  });

  it('a route that declares no permission needs read for GET and admin otherwise (fail closed)', () => {
    expect(permissionOf({ method: 'GET' } as never)).toBe('read');
    expect(permissionOf({ method: 'POST' } as never)).toBe('admin');
    expect(permissionOf(undefined)).toBe('admin');
  });
});

describe('IdentityStore', () => {
  it('bootstraps the administrator once, keeps only hashes, and authenticates by hash', async () => {
    const { log, ids } = store();
    expect(await ids.ensureBootstrap('admin', 'bootstrap-token-0123456789')).toBe('created');
    expect(await ids.ensureBootstrap('admin', 'bootstrap-token-0123456789')).toBe('present');
    const events = [];
    for await (const r of log.readAll()) events.push(r.event);
    expect(events.map((e) => e.type)).toEqual(['UserCreated', 'TokenIssued']);
    expect(JSON.stringify(events)).not.toContain('bootstrap-token-0123456789');
    expect(await ids.authenticate('bootstrap-token-0123456789')).toMatchObject({ actor: admin, roles: ['administrator'], tokenId: tokenIdOf('bootstrap-token-0123456789') });
    expect(await ids.authenticate('bootstrap-token-012345678X')).toBe('unknown');
  });

  it('refuses a revoked token, an expired one and a disabled user\'s at once', async () => {
    const { ids } = store();
    await ids.createUser('olga', ['operator'], admin);
    const a = await ids.issueToken('olga', 'a', admin);
    const b = await ids.issueToken('olga', 'b', admin, { expiresAt: new Date(Date.now() + 60_000) });
    expect(await ids.authenticate(a.token)).toMatchObject({ actor: { id: 'olga' } });
    await ids.revokeToken(a.record.tokenId, admin, 'lost');
    expect(await ids.authenticate(a.token)).toBe('revoked');
    expect(await ids.authenticate(b.token, new Date(Date.now() + 120_000))).toBe('expired');
    await ids.disableUser('olga', admin);
    expect(await ids.authenticate(b.token)).toBe('user-disabled');
  });

  it('a second store on the same log finds tokens it never saw by reading their streams, and replays never undo a revocation', async () => {
    const { log, ids } = store();
    await ids.createUser('bob', ['administrator'], admin);
    const t = await ids.issueToken('bob', 'x', admin);
    await ids.revokeToken(t.record.tokenId, admin);
    const other = store(log).ids;
    expect(await other.authenticate(t.token)).toBe('revoked');
    // The subscription delivering the same events again (from the start) changes nothing.
    for await (const r of log.readAll()) other.apply(r);
    expect(await other.authenticate(t.token)).toBe('revoked');
  });

  it('approvals: a grant is appended at the revision read, so two approvers cannot both win', async () => {
    const { ids } = store();
    const a = await ids.requestApproval({ kind: 'delete-restore-point', restorePointId: 'rp1' }, admin, 'why');
    const seen = { ...a };
    await ids.grant(a, { kind: 'user', id: 'bob' });
    await expect(ids.grant(seen, { kind: 'user', id: 'carl' })).rejects.toThrow(/changed meanwhile/);
    expect((await ids.approval(a.approvalId, true))).toMatchObject({ status: 'approved', approvedBy: 'bob', requestedBy: 'admin' });
  });

  it('never leaves the site without an enabled administrator, even when two ask at once', async () => {
    const { ids } = store();
    await ids.ensureBootstrap('admin', 'bootstrap-token-0123456789');
    await expect(ids.disableUser('admin', admin)).rejects.toBeInstanceOf(LastAdministratorError);
    await expect(ids.setRoles('admin', ['operator'], admin)).rejects.toThrow(/last enabled administrator and cannot lose the administrator role/);
    await ids.createUser('bob', ['administrator'], admin);
    await ids.createUser('olga', ['operator'], admin);
    await ids.disableUser('olga', admin);
    // Two administrators disabling each other at the same moment: one of them stays.
    const both = await Promise.allSettled([ids.disableUser('admin', admin), ids.disableUser('bob', admin)]);
    expect(both.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    const left = ids.listUsers().filter((u) => !u.disabled && u.roles.includes('administrator'));
    expect(left).toHaveLength(1);
    await expect(ids.setRoles(left[0]!.userId, ['auditor'], admin)).rejects.toBeInstanceOf(LastAdministratorError);
    expect((await ids.setRoles(left[0]!.userId, ['administrator', 'auditor'], admin)).roles).toContain('administrator');
  });
});
