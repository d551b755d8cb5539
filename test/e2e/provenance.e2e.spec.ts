// Event provenance on a secure site (issue 22, docs/security.md "Event provenance"): with each
// service identity in turn, forged identity, token, approval, deletion and job events are
// refused by NATS (publish permissions) or by every reader (skipped, reported as a
// ProvenanceViolation naming the identity whose key signed them); events planted with the
// operator's own admin NATS credentials are refused by the readers and named by
// `cairn audit verify`; the four-eyes deletion cannot be completed by one compromised service
// identity (the gateway included: a grant without the person's signature, or by an
// administrator and key it minted, is refused by the data mover and reported), nor by the admin
// identity, nor by one administrator (not by approving itself, making a third administrator or
// adding a key to the other one); two administrators with their keys still can, through the
// CLI. One secure stack (no VM: restore points are written with the repository writer) shared
// by the file.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { approvalStatement, newEvent, newStatementSigner, signStatement, type ApprovalAction, type CairnEvent, type KnownEvent } from '@cairn/contracts';
import { CatalogueClient } from '@cairn/catalogue-client';
import { readAuditChain, auditStream } from '@cairn/audit-bridge';
import { CommandBus } from '@cairn/messaging';
import type { SiteSecurity } from '@cairn/nats-security';
import { startStack, type Stack } from '@cairn/cli';
import { waitFor } from '@cairn/testing';
import { cli, gatewayCall } from './e2e-helpers.ts';
import { backup, discoverVm, makeImage, type Vm } from './sites-helpers.ts';
import { closeIdentityConnections, forgeEvent, type ForgeOutcome } from './provenance-helpers.ts';

type Secure = Stack & { security: SiteSecurity };
let stack: Secure;
let catalogue: CatalogueClient;
const vm: Vm = { vmId: 'vm-prov', name: 'prov', size: 1 << 20 };
let restorePointId: string;
let jobId: string;
let approvalId: string;
let bobToken: string;
let bobKey: string;
/** The local operator's request to make carol an administrator (pending until bob approves). */
let carolApprovalId: string;
/** Every forged event that NATS let into the log: `cairn audit verify` must name each one. */
const stored: Array<{ eventId: string; by: string }> = [];

const api = (token: string, method: 'GET' | 'POST', path: string, body?: unknown) => gatewayCall(stack.gatewayUrl, token, method, path, body);

/** The ProvenanceViolation events about `eventId` (read through the admin's checking client). */
async function violationsOf(eventId: string): Promise<Array<KnownEvent & { type: 'ProvenanceViolation' }>> {
  const out: Array<KnownEvent & { type: 'ProvenanceViolation' }> = [];
  for await (const r of stack.log.readStream(`provenance-${eventId}`)) if (r.event.type === 'ProvenanceViolation') out.push(r.event);
  return out;
}

/** Refused by NATS, or stored and then refused and reported by each of `readers`, naming `signedBy`. */
async function expectRefused(outcome: ForgeOutcome, event: CairnEvent, signedBy: string | null, readers: readonly string[], by: string): Promise<'nats' | 'readers'> {
  if (outcome.refusedBy === 'nats') return 'nats';
  stored.push({ eventId: event.id, by });
  const reports = await waitFor(async () => {
    const v = await violationsOf(event.id);
    return readers.every((r) => v.some((x) => x.data.detectedBy === r)) ? v : undefined;
  }, { timeoutMs: 60_000, intervalMs: 250, what: `${readers.join(', ')} to report ${event.type} forged by ${by}` });
  for (const r of reports) expect(r.data).toMatchObject({ eventId: event.id, eventType: event.type, signedBy });
  return 'readers';
}

const ALL_READERS = ['catalogue', 'audit-bridge'];
const IDENTITY_READERS = [...ALL_READERS, 'gateway'];

let dataDir: string | undefined;

beforeAll(async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-prov-'));
  dataDir = dir;
  // No scheduler service: it would act on the recorded job (its identity is still there to forge with).
  stack = await startStack({ dataDir: dir, secure: true, operator: { kind: 'user', id: 'local-op' }, without: ['scheduler'] }) as Secure;
  catalogue = new CatalogueClient(stack.nc, { site: stack.site });
  await discoverVm(stack, vm);
  restorePointId = await backup(stack, vm, makeImage(vm.size, 3));
  await waitFor(() => catalogue.getRestorePoint(restorePointId).then(() => true, () => false), { timeoutMs: 60_000, what: 'the restore point in the catalogue' });
  jobId = (await catalogue.getRestorePoint(restorePointId)).jobId;
  // A second administrator and their key, both endorsed by the local operator (the site's root
  // operator; the CLI signs with its key), and a deletion the local operator asked for (pending).
  bobKey = join(dir, 'bob.key');
  for (const args of [['user', 'add', 'bob', '--role', 'administrator'], ['user', 'key', 'add', 'bob', '--out', bobKey]]) {
    const r = await cli(['--data', stack.dataDir, '--json', ...args]);
    expect(r.code, r.stderr).toBe(0);
  }
  bobToken = String((await api(stack.gatewayToken, 'POST', '/v1/tokens', { userId: 'bob', name: 'bob' })).body.token);
  approvalId = await requestDeletion();
}, 240_000);

/** The local operator asks for the restore point's deletion through the CLI (signed with its key). */
async function requestDeletion(): Promise<string> {
  const req = await cli(['--data', stack.dataDir, '--json', 'restore-point', 'delete', restorePointId, '--reason', 'provenance test']);
  expect(req.code, req.stderr).toBe(0);
  const body = JSON.parse(req.stdout) as { approvalId: string; requestedBy: string; status: string };
  expect(body).toMatchObject({ requestedBy: 'local-op', status: 'pending' });
  return body.approvalId;
}

/** DeleteRestorePoint straight to the data mover over NATS (as the local operator, signed). */
async function deleteOverNats(id: string): Promise<unknown> {
  const bus = new CommandBus(stack.nc, { site: stack.site, actor: stack.operator!.actor, defaultTimeoutMs: 15_000 });
  return bus.send('data-mover', 'DeleteRestorePoint', { restorePointId, approvalId: id });
}

/** The data mover's report of a four-eyes event without a trusted person's signature. */
async function personSignatureViolation(eventId: string) {
  return waitFor(async () => (await violationsOf(eventId)).find((v) => v.data.detectedBy === 'data-mover' && v.data.failure === 'person_signature'),
    { timeoutMs: 30_000, intervalMs: 250, what: `the data mover's person_signature report of ${eventId}` });
}

/** An operator key file for `userId` (the format `cairn user key add` writes). */
async function keyFile(userId: string, signer: { publicKey: string; seed: string }): Promise<string> {
  const file = join(stack.dataDir, `${userId}-${randomUUID()}.key`);
  await writeFile(file, JSON.stringify({ kind: 'cairn-operator-key', userId, publicKey: signer.publicKey, seed: signer.seed }), { mode: 0o600 });
  return file;
}

const stillThere = async () => expect((await stack.repository.listRestorePoints()).map((p) => p.id)).toContain(restorePointId);

afterAll(async () => {
  await closeIdentityConnections();
  await stack?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

const meta = (streamId: string, actorId: string) => ({ site: stack.site, actor: { kind: 'user' as const, id: actorId }, streamId });

/** The forgeries of the issue, for one identity. */
function forgeries(identity: string): Array<{ name: string; event: () => CairnEvent; readers: readonly string[]; check: () => Promise<void> }> {
  const mallory = `mallory-${identity}`;
  const token = `cairn_${randomBytes(32).toString('base64url')}`;
  const sha = createHash('sha256').update(token).digest('hex');
  const forgedRp = randomUUID();
  const jobEvent = identity === 'scheduler'
    // The scheduler forging the data mover's commit of a restore point that does not exist.
    ? () => newEvent('RestorePointCommitted', { restorePointId: forgedRp, jobId, vmId: vm.vmId, parentId: null, disks: [{ name: 'disk0', sizeBytes: 1, bytesRead: 1, bytesStored: 1, chunksNew: 1, chunksReused: 0 }] }, { ...meta(`job-${jobId}`, 'x'), actor: { kind: 'service', id: `data-mover@${stack.site}` } })
    // Anyone else forging the scheduler's cancellation of a finished job.
    : () => newEvent('JobCancelled', { jobId, reason: `forged by ${identity}` }, { ...meta(`job-${jobId}`, 'x'), actor: { kind: 'service', id: `scheduler@${stack.site}` } });
  return [
    {
      name: 'UserCreated (an administrator)', readers: IDENTITY_READERS,
      event: () => newEvent('UserCreated', { userId: mallory, roles: ['administrator'] }, meta(`user-${mallory}`, 'admin')),
      check: async () => {
        const users = await api(stack.gatewayToken, 'GET', '/v1/users');
        expect(JSON.stringify(users.body)).not.toContain(mallory);
      },
    },
    {
      name: 'TokenIssued (for the bootstrap administrator)', readers: IDENTITY_READERS,
      event: () => newEvent('TokenIssued', { tokenId: sha.slice(0, 24), userId: 'admin', name: 'forged', tokenSha256: sha, expiresAt: null }, meta(`token-${sha.slice(0, 24)}`, 'admin')),
      check: async () => { expect((await api(token, 'GET', '/v1/whoami')).status).toBe(401); },
    },
    {
      name: 'ApprovalGranted (of the pending deletion)', readers: IDENTITY_READERS,
      event: () => newEvent('ApprovalGranted', { approvalId, approvedBy: mallory }, meta(`approval-${approvalId}`, mallory)),
      check: async () => { expect((await api(bobToken, 'GET', `/v1/approvals/${approvalId}`)).body).toMatchObject({ status: 'pending' }); },
    },
    {
      name: 'RestorePointDeleted', readers: ALL_READERS,
      event: () => newEvent('RestorePointDeleted', { restorePointId, approvalId, requestedBy: 'admin', approvedBy: mallory }, meta(`restorepoint-${restorePointId}`, mallory)),
      check: async () => {
        expect((await catalogue.getRestorePoint(restorePointId)).expiredAt).toBeNull();
        expect((await stack.repository.listRestorePoints()).map((p) => p.id)).toContain(restorePointId);
      },
    },
    {
      name: `a job event of another service (${identity === 'scheduler' ? 'RestorePointCommitted' : 'JobCancelled'})`, readers: ALL_READERS,
      event: jobEvent,
      check: async () => {
        expect((await catalogue.getJob(jobId)).state).toBe('completed');
        await expect(catalogue.getRestorePoint(forgedRp)).rejects.toThrow();
      },
    },
  ];
}

// The gateway is the writer of identity and approval events (it authenticated the person); the
// data mover the writer of RestorePointDeleted (it did the act): those rows are their own.
const OWN: Record<string, readonly string[]> = { gateway: ['UserCreated', 'TokenIssued', 'ApprovalGranted'], 'data-mover': ['RestorePointDeleted'] };

describe('forged events, with each service identity in turn', () => {
  for (const identity of ['scheduler', 'snapshot-coordinator', 'data-mover', 'catalogue', 'audit-bridge', 'replication', 'gateway'] as const) {
    it(`${identity}: refused by NATS or by every reader, reported naming ${identity}`, { timeout: 240_000 }, async () => {
      const seen: string[] = [];
      for (const f of forgeries(identity)) {
        const event = f.event();
        if (OWN[identity]?.includes(event.type)) continue;
        // Signed with its own key (what a compromised host holds), and unsigned.
        const signed = await forgeEvent({ stack, identity, event, how: 'signed' });
        seen.push(`${f.name}: ${await expectRefused(signed, event, identity, f.readers, identity)}`);
        const bare = { ...f.event() };
        const unsigned = await forgeEvent({ stack, identity, event: bare, how: 'unsigned' });
        await expectRefused(unsigned, bare, null, f.readers, identity);
        await f.check();
      }
      console.log(`[provenance] ${identity}: ${seen.join('; ')}`);
    });
  }
});

describe('four-eyes that no single identity completes', () => {
  it('no single compromised service identity completes the deletion: grants it cannot write, and the data mover refuses the act', { timeout: 120_000 }, async () => {
    // After every identity's forged ApprovalGranted (above): still pending, and the act refused.
    expect((await api(bobToken, 'GET', `/v1/approvals/${approvalId}`)).body).toMatchObject({ status: 'pending' });
    expect(await deleteOverNats(approvalId)).toMatchObject({ accepted: false, error: { code: 'approval_required' } });
    await stillThere();
  });

  it('the gateway identity: a grant it writes without the approver\'s signature, or by an administrator and key it minted, is refused by the data mover and reported naming the gateway', { timeout: 180_000 }, async () => {
    const action: ApprovalAction = { kind: 'delete-restore-point', restorePointId };
    // 1. A real request of the local operator; the gateway writes a grant "by bob" that bob never signed.
    const first = await requestDeletion();
    const grant = newEvent('ApprovalGranted', { approvalId: first, approvedBy: 'bob' }, meta(`approval-${first}`, 'bob'));
    expect((await forgeEvent({ stack, identity: 'gateway', event: grant, how: 'signed' })).refusedBy).toBeUndefined();
    const refused = await deleteOverNats(first) as { accepted: boolean; error?: { code: string; message: string } };
    expect(refused).toMatchObject({ accepted: false, error: { code: 'approval_required' } });
    expect(refused.error?.message).toMatch(/written by gateway.*no signature of bob/);
    expect((await personSignatureViolation(grant.id)).data).toMatchObject({ eventType: 'ApprovalGranted', signedBy: 'gateway' });
    await stillThere();
    // 2. The gateway mints an administrator and a key, and signs the grant with that key.
    const mallory = newStatementSigner();
    const second = await requestDeletion();
    for (const event of [
      newEvent('UserCreated', { userId: 'mallory-gw', roles: ['administrator'] }, meta('user-mallory-gw', 'admin')),
      newEvent('UserKeyAdded', { userId: 'mallory-gw', publicKey: mallory.publicKey }, meta('user-mallory-gw', 'admin')),
    ]) expect((await forgeEvent({ stack, identity: 'gateway', event, how: 'signed' })).refusedBy).toBeUndefined();
    const signature = signStatement((issuedAt) => approvalStatement({ approvalId: second, decision: 'grant', userId: 'mallory-gw', action, issuedAt }), mallory);
    const minted = newEvent('ApprovalGranted', { approvalId: second, approvedBy: 'mallory-gw', signature }, meta(`approval-${second}`, 'mallory-gw'));
    expect((await forgeEvent({ stack, identity: 'gateway', event: minted, how: 'signed' })).refusedBy).toBeUndefined();
    const refused2 = await deleteOverNats(second) as { error?: { message: string } };
    expect(refused2).toMatchObject({ accepted: false, error: { code: 'approval_required' } });
    expect(refused2.error?.message).toMatch(/mallory-gw is not a trusted administrator.*no administrator endorsed it/);
    expect((await personSignatureViolation(minted.id)).data).toMatchObject({ signedBy: 'gateway', message: expect.stringMatching(/written by gateway/) as unknown });
    await stillThere();
  });

  it('the admin identity: grants and deletions it plants are refused by every reader; an administrator and key it writes are not trusted, so approving with them is refused', { timeout: 180_000 }, async () => {
    for (const how of ['signed', 'signed-as-other', 'unsigned'] as const) {
      const grant = newEvent('ApprovalGranted', { approvalId, approvedBy: 'bob' }, meta(`approval-${approvalId}`, 'bob'));
      const outcome = await forgeEvent({ stack, identity: 'admin', event: grant, how });
      expect(outcome.refusedBy).toBeUndefined(); // the operator's NATS identity may publish anywhere on its site
      await expectRefused(outcome, grant, how === 'unsigned' ? null : 'admin', IDENTITY_READERS, `admin (${how})`);
    }
    const deleted = newEvent('RestorePointDeleted', { restorePointId, approvalId, requestedBy: 'admin', approvedBy: 'bob' }, meta(`restorepoint-${restorePointId}`, 'bob'));
    await expectRefused(await forgeEvent({ stack, identity: 'admin', event: deleted, how: 'signed' }), deleted, 'admin', ALL_READERS, 'admin');
    const mallory = newStatementSigner();
    for (const event of [
      newEvent('UserCreated', { userId: 'mallory-adm', roles: ['administrator'] }, meta('user-mallory-adm', 'admin')),
      newEvent('UserKeyAdded', { userId: 'mallory-adm', publicKey: mallory.publicKey }, meta('user-mallory-adm', 'admin')),
    ]) expect((await forgeEvent({ stack, identity: 'admin', event, how: 'signed' })).refusedBy).toBeUndefined();
    // The gateway's own projection has mallory-adm (admin may record users), so it gets as far as the key check.
    await waitFor(async () => (JSON.stringify((await api(stack.gatewayToken, 'GET', '/v1/users')).body).includes('mallory-adm') ? true : undefined), { timeoutMs: 30_000, what: 'mallory-adm in the gateway' });
    const r = await cli(['--data', stack.dataDir, '--json', '--operator-key', await keyFile('mallory-adm', mallory), 'approval', 'approve', approvalId]);
    expect(r.code, r.stdout + r.stderr).toBe(7);
    expect(r.stderr + r.stdout).toMatch(/written by admin/);
    expect((await api(bobToken, 'GET', `/v1/approvals/${approvalId}`)).body).toMatchObject({ status: 'pending' });
    expect(await deleteOverNats(approvalId)).toMatchObject({ accepted: false, error: { code: 'approval_required' } });
    await stillThere();
  });

  it('one administrator alone: not by approving itself, nor by making a third administrator, nor by adding a key to the other one; REST without a key cannot either', { timeout: 180_000 }, async () => {
    const d = ['--data', stack.dataDir, '--json'];
    // Approving its own request, signed with its own key: four-eyes.
    const self = await cli([...d, 'approval', 'approve', approvalId]);
    expect(self.code).toBe(7);
    expect(self.stdout + self.stderr).toMatch(/four_eyes|second administrator|asked for by local-op/);
    // The bootstrap API user approving unsigned over REST: the approver's signature is required.
    expect(await api(stack.gatewayToken, 'POST', `/v1/approvals/${approvalId}/approve`)).toMatchObject({ status: 403, body: { code: 'signature_required' } });
    // With two administrators who can sign, a third administrator is a four-eyes request...
    const carol = await cli([...d, 'user', 'add', 'carol', '--role', 'administrator']);
    expect(carol.code, carol.stderr).toBe(0);
    const carolApproval = JSON.parse(carol.stdout) as { approvalId: string; status: string; action: { kind: string } };
    expect(carolApproval).toMatchObject({ status: 'pending', action: { kind: 'grant-administrator' } });
    carolApprovalId = carolApproval.approvalId;
    const own = await cli([...d, 'approval', 'approve', carolApproval.approvalId]);
    expect(own.code).toBe(7);
    expect(JSON.stringify((await api(stack.gatewayToken, 'GET', '/v1/users')).body)).not.toContain('"carol"');
    // ...and so is a key for the other administrator (whose seed the local operator would hold).
    const extra = join(stack.dataDir, 'bob-second.key');
    const key = await cli([...d, 'user', 'key', 'add', 'bob', '--out', extra]);
    expect(key.code, key.stderr).toBe(0);
    expect(JSON.parse(key.stdout)).toMatchObject({ user: { status: 'pending', action: { kind: 'add-operator-key', userId: 'bob' } } });
    expect((await cli([...d, '--operator-key', extra, 'approval', 'approve', approvalId])).code).toBe(7);
    // A REST caller without a key makes no administrator and adds no key.
    expect(await api(stack.gatewayToken, 'POST', '/v1/users', { userId: 'dave', roles: ['administrator'] })).toMatchObject({ status: 403, body: { code: 'endorsement_required' } });
    expect(await api(stack.gatewayToken, 'POST', '/v1/users/bob/keys', { publicKey: newStatementSigner().publicKey })).toMatchObject({ status: 403, body: { code: 'endorsement_required' } });
    expect((await api(bobToken, 'GET', `/v1/approvals/${approvalId}`)).body).toMatchObject({ status: 'pending' });
    await stillThere();
  });

  it('two administrators with their own keys: the local operator asks, bob approves through the CLI, the restore point is deleted', { timeout: 120_000 }, async () => {
    const ok = await cli(['--data', stack.dataDir, '--json', '--operator-key', bobKey, 'approval', 'approve', approvalId], { CAIRN_API_TOKEN: bobToken });
    expect(ok.code, ok.stderr + ok.stdout).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ status: 'done', requestedBy: 'local-op', approvedBy: 'bob' });
    expect((await stack.repository.listRestorePoints()).map((p) => p.id)).not.toContain(restorePointId);
    const deleted: KnownEvent[] = [];
    for await (const r of stack.log.readStream(`restorepoint-${restorePointId}`)) deleted.push(r.event);
    expect(deleted.find((e) => e.type === 'RestorePointDeleted')?.data).toMatchObject({ approvalId, requestedBy: 'local-op', approvedBy: 'bob' });
    // The third administrator the local operator asked for: bob approves, carol is made with the local operator's endorsement.
    const carol = await cli(['--data', stack.dataDir, '--json', '--operator-key', bobKey, 'approval', 'approve', carolApprovalId], { CAIRN_API_TOKEN: bobToken });
    expect(carol.code, carol.stderr + carol.stdout).toBe(0);
    expect(JSON.parse(carol.stdout)).toMatchObject({ status: 'done', approvedBy: 'bob' });
    const users = (await api(bobToken, 'GET', '/v1/users')).body.items as Array<{ userId: string; roles: string[] }>;
    expect(users.find((u) => u.userId === 'carol')?.roles).toContain('administrator');
  });
});

describe('cairn audit verify', () => {
  it('names every forged event that reached the log, the admin-planted ones included; the audit chain holds none of them', { timeout: 180_000 }, async () => {
    expect(stored.length).toBeGreaterThan(0);
    const r = await cli(['--data', stack.dataDir, '--json', 'audit', 'verify']);
    expect(r.code, r.stderr + r.stdout.slice(0, 2000)).toBe(1);
    const out = JSON.parse(r.stdout) as { ok: boolean; provenance: { checked: number; refused: Array<{ eventId: string; signedBy: string | null; failure: string }> } };
    expect(out.ok).toBe(true); // the chain itself is intact
    const named = new Set(out.provenance.refused.map((x) => x.eventId));
    for (const s of stored) expect(named.has(s.eventId), `${s.eventId} forged by ${s.by}`).toBe(true);
    expect(out.provenance.refused.length).toBe(stored.length);
    const chain = await readAuditChain(stack.nc, auditStream(stack.site));
    const sealed = new Set(chain.map((c) => c.event.id));
    for (const s of stored) expect(sealed.has(s.eventId)).toBe(false);
    expect(chain.some((c) => c.event.type === 'ProvenanceViolation')).toBe(true);
    expect(chain.filter((c) => c.event.type === 'UserCreated').every((c) => c.event.provenance?.writer === 'gateway' || c.event.provenance?.writer === 'admin')).toBe(true);
    // The cut-over `cairn up` recorded: recording it again changes nothing.
    const again = await cli(['--data', stack.dataDir, '--json', 'audit', 'start-signing']);
    expect(again.code, again.stderr).toBe(0);
    expect((JSON.parse(again.stdout) as { cutover: string }).cutover).toBe((out.provenance as unknown as { cutover: string }).cutover);
    const text = await cli(['--data', stack.dataDir, 'audit', 'verify']);
    expect(text.stdout).toMatch(/REFUSED position \d+ ApprovalGranted .* signed by admin/);
  });
});
