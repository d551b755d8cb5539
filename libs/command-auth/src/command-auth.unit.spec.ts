import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createUser } from '@nats-io/nkeys';
import { endorse, newEvent, type Command, type EventDataMap, type KnownEvent, type Role } from '@cairn/contracts';
import { InMemoryEventLog } from '@cairn/eventlog';
import { SignedCommandPolicy, signCommand, signerFromSeed, verifyCommandSignature, type CommandSigner } from './command-auth.ts';

const SITE = 'site-a';
const keyOf = (): CommandSigner => signerFromSeed(new TextDecoder().decode(createUser().getSeed()));

function command(actor: Command['actor'], name = 'RequestBackup', payload: unknown = { vmId: 'vm-1', mode: 'auto' }): Command {
  return { id: randomUUID(), name, schemaVersion: 1, idempotencyKey: randomUUID(), actor, site: SITE, time: new Date().toISOString(), payload };
}

async function user(log: InMemoryEventLog, userId: string, roles: Role[], keys: CommandSigner[]) {
  const streamId = `user-${userId}`;
  const by = { kind: 'user' as const, id: 'admin' };
  await log.append(streamId, [newEvent('UserCreated', { userId, roles }, { site: SITE, actor: by, streamId })], { expectedRevision: 'no_stream' });
  for (const k of keys) await log.append(streamId, [newEvent('UserKeyAdded', { userId, publicKey: k.publicKey }, { site: SITE, actor: by, streamId })], { expectedRevision: 'any' });
}

async function denials(log: InMemoryEventLog): Promise<Array<EventDataMap['AccessDenied'] & { actor: string }>> {
  const out = [];
  for await (const r of log.readAll()) {
    const e = r.event as KnownEvent;
    if (e.type === 'AccessDenied') out.push({ ...e.data, actor: `${e.actor.kind}:${e.actor.id}` });
  }
  return out;
}

describe('signed commands', () => {
  it('a signature covers id, key, name, site, actor, time and payload', () => {
    const k = keyOf();
    const signed = signCommand(command({ kind: 'user', id: 'alice' }), k);
    expect(signed.auth?.publicKey).toBe(k.publicKey);
    expect(verifyCommandSignature(signed)).toBe(true);
    expect(verifyCommandSignature({ ...signed, payload: { vmId: 'vm-2', mode: 'auto' } })).toBe(false);
    expect(verifyCommandSignature({ ...signed, actor: { kind: 'user', id: 'bob' } })).toBe(false);
    expect(verifyCommandSignature({ ...signed, idempotencyKey: 'other' })).toBe(false);
    expect(verifyCommandSignature({ ...signed, auth: { ...signed.auth!, issuedAt: new Date(Date.now() + 1000).toISOString() } })).toBe(false);
    expect(verifyCommandSignature({ ...signed, auth: { ...signed.auth!, publicKey: keyOf().publicKey } })).toBe(false);
    // The same key with a broken checksum (its last character changed) is no key.
    const pk = signed.auth!.publicKey;
    expect(verifyCommandSignature({ ...signed, auth: { ...signed.auth!, publicKey: pk.slice(0, -1) + (pk.endsWith('A') ? 'B' : 'A') } })).toBe(false);
    // Key order in the payload does not matter (canonical JSON).
    expect(verifyCommandSignature({ ...signed, payload: { mode: 'auto', vmId: 'vm-1' } })).toBe(true);
  });

  it('checks key, freshness, roles and service identities, and records every refusal', async () => {
    const log = new InMemoryEventLog(SITE);
    const [alice, auditorKey, revoked, service, stranger] = [keyOf(), keyOf(), keyOf(), keyOf(), keyOf()];
    await user(log, 'alice', ['operator'], [alice, revoked]);
    await user(log, 'audrey', ['auditor'], [auditorKey]);
    await log.append('user-alice', [newEvent('UserKeyRevoked', { userId: 'alice', publicKey: revoked.publicKey }, { site: SITE, actor: { kind: 'user', id: 'admin' }, streamId: 'user-alice' })], { expectedRevision: 'any' });
    const policy = new SignedCommandPolicy({
      log, site: SITE, serviceActor: { kind: 'service', id: `data-mover@${SITE}` }, serviceKeys: new Map([[service.publicKey, 'gateway']]),
    });
    const subject = `cairn.${SITE}.cmd.scheduler.RequestBackup`;
    const asAlice = { kind: 'user' as const, id: 'alice' };
    expect(await policy.authorize(signCommand(command(asAlice), alice), subject)).toEqual({ ok: true, by: 'user' });
    expect(await policy.authorize(signCommand(command(asAlice), service), subject)).toEqual({ ok: true, by: 'service' });
    expect(await policy.authorize(signCommand(command({ kind: 'service', id: `scheduler@${SITE}` }, 'RequestSnapshot', {}), service), subject)).toMatchObject({ ok: true });

    const refused = async (c: Command, code: string, message: RegExp) => {
      const d = await policy.authorize(c, subject);
      expect(d).toMatchObject({ ok: false, code });
      expect(d.ok ? '' : d.message).toMatch(message);
    };
    await refused(command(asAlice), 'unauthenticated', /not signed/);
    const forged = signCommand(command(asAlice), stranger);
    await refused(forged, 'unauthenticated', /not a current key of user alice/);
    await refused({ ...signCommand(command(asAlice), alice), payload: { vmId: 'vm-9', mode: 'full' } }, 'unauthenticated', /does not verify/);
    await refused(signCommand(command(asAlice), alice, new Date(Date.now() - 6 * 60_000)), 'unauthenticated', /stale or replayed/);
    await refused(signCommand(command(asAlice), revoked), 'unauthenticated', /never added, or revoked/);
    await refused(signCommand(command({ kind: 'user', id: 'audrey' }), auditorKey), 'forbidden', /needs permission backup; user audrey has roles auditor/);
    await refused(signCommand(command({ kind: 'user', id: 'alice' }, 'DeleteRestorePoint', {}), alice), 'forbidden', /needs permission admin/);
    await refused(signCommand(command({ kind: 'service', id: `scheduler@${SITE}` }), alice), 'unauthenticated', /not signed by a service identity/);
    await refused(signCommand(command({ kind: 'user', id: 'nobody' }), stranger), 'unauthenticated', /no user nobody/);

    const recorded = await denials(log);
    expect(recorded.map((d) => [d.userId, d.needed, d.actor])).toEqual([
      ['alice', 'signature', `service:data-mover@${SITE}`],
      ['alice', 'current-key', `service:data-mover@${SITE}`],
      ['alice', 'valid-signature', `service:data-mover@${SITE}`],
      ['alice', 'fresh-signature', `service:data-mover@${SITE}`],
      // The same actor, command and reason within 10 s: recorded once (the revoked key above).
      ['audrey', 'backup', 'user:audrey'],
      ['alice', 'admin', 'user:alice'],
      [`scheduler@${SITE}`, 'service-signature', `service:data-mover@${SITE}`],
      ['nobody', 'known-user', `service:data-mover@${SITE}`],
    ]);
    expect(recorded.every((d) => d.method === 'NATS' && d.path === subject)).toBe(true);
  });

  it('on a secure site a person\'s key counts only along an endorsement chain from the root operator (a gateway-recorded key signs nothing)', async () => {
    const log = new InMemoryEventLog(SITE);
    const [root, olgaKey, minted] = [keyOf(), keyOf(), keyOf()];
    const as = (writer: string) => ({ provenance: { writer, publicKey: root.publicKey, signature: 'x'.repeat(86) } });
    const by = { kind: 'service' as const, id: `cairn-up@${SITE}` };
    const put = (streamId: string, e: ReturnType<typeof newEvent>, writer: string) => log.append(streamId, [{ ...e, ...as(writer) }], { expectedRevision: 'any' });
    await put('provenance-signing', newEvent('EventSigningStarted', { identities: ['admin'], rootOperator: { userId: 'op', publicKey: root.publicKey } }, { site: SITE, actor: by, streamId: 'provenance-signing' }), 'admin');
    await put('user-op', newEvent('UserCreated', { userId: 'op', roles: ['administrator'] }, { site: SITE, actor: by, streamId: 'user-op' }), 'admin');
    await put('user-op', newEvent('UserKeyAdded', { userId: 'op', publicKey: root.publicKey }, { site: SITE, actor: by, streamId: 'user-op' }), 'admin');
    await put('user-olga', newEvent('UserCreated', { userId: 'olga', roles: ['operator'] }, { site: SITE, actor: by, streamId: 'user-olga' }), 'gateway');
    await put('user-olga', newEvent('UserKeyAdded', { userId: 'olga', publicKey: olgaKey.publicKey, endorsement: endorse('op', 'olga', { kind: 'key', publicKey: olgaKey.publicKey }, root) }, { site: SITE, actor: by, streamId: 'user-olga' }), 'gateway');
    await put('user-olga', newEvent('UserKeyAdded', { userId: 'olga', publicKey: minted.publicKey }, { site: SITE, actor: by, streamId: 'user-olga' }), 'gateway');
    const policy = new SignedCommandPolicy({ log, site: SITE, serviceActor: { kind: 'service', id: `scheduler@${SITE}` }, serviceKeys: new Map(), endorsedKeysOnly: true });
    const subject = `cairn.${SITE}.cmd.scheduler.RequestBackup`;
    const asOlga = { kind: 'user' as const, id: 'olga' };
    expect(await policy.authorize(signCommand(command({ kind: 'user', id: 'op' }), root), subject)).toEqual({ ok: true, by: 'user' });
    expect(await policy.authorize(signCommand(command(asOlga), olgaKey), subject)).toEqual({ ok: true, by: 'user' });
    expect(await policy.authorize(signCommand(command(asOlga), minted), subject)).toMatchObject({ ok: false, code: 'unauthenticated', message: expect.stringMatching(/not endorsed.*no administrator endorsed it/) as unknown });
    expect((await denials(log)).map((d) => d.needed)).toEqual(['endorsed-key']);
  });
});

describe('the signing vector shared with the console\'s browser signer (signing.vector.json)', () => {
  it('the CLI\'s signer makes exactly the vector\'s signing string and signatures', async () => {
    const { readFile } = await import('node:fs/promises');
    const v = JSON.parse(await readFile(new URL('./signing.vector.json', import.meta.url), 'utf8')) as {
      keyFile: { seed: string; publicKey: string; userId: string }; issuedAt: string; command: Command; signingString: string; auth: unknown;
      approval: { approvalId: string; action: unknown; statement: string; signature: unknown };
      commandVersions: Record<string, number>; canonical: { value: unknown; json: string };
    };
    const { approvalStatement, canonicalJson, commandSigningString, latestCommandVersion, signStatement } = await import('@cairn/contracts');
    // What the console's copy of these must agree with (it imports no server library).
    for (const [name, version] of Object.entries(v.commandVersions)) expect(version, name).toBe(latestCommandVersion(name as never));
    expect(canonicalJson(v.canonical.value)).toBe(v.canonical.json);
    const signer = signerFromSeed(v.keyFile.seed);
    expect(signer.publicKey).toBe(v.keyFile.publicKey);
    expect(commandSigningString(v.command, v.issuedAt)).toBe(v.signingString);
    const signed = signCommand(v.command, signer, new Date(v.issuedAt));
    expect(signed.auth).toEqual(v.auth);
    expect(verifyCommandSignature(signed)).toBe(true);
    const statement = (t: string) => approvalStatement({ approvalId: v.approval.approvalId, decision: 'grant', userId: v.keyFile.userId, action: v.approval.action as never, issuedAt: t });
    expect(statement(v.issuedAt)).toBe(v.approval.statement);
    expect(signStatement(statement, signer, new Date(v.issuedAt))).toEqual(v.approval.signature);
  });
});
