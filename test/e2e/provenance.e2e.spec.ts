// Event provenance on a secure site (issue 22, docs/security.md "Event provenance"): with each
// service identity in turn, forged identity, token, approval, deletion and job events are
// refused by NATS (publish permissions) or by every reader (skipped, reported as a
// ProvenanceViolation naming the identity whose key signed them); events planted with the
// operator's own admin NATS credentials are refused by the readers and named by
// `cairn audit verify`; the four-eyes deletion cannot be completed by one compromised service
// identity or by one administrator. One secure stack (no VM: restore points are written with
// the repository writer) shared by the file.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newEvent, type CairnEvent, type KnownEvent } from '@cairn/contracts';
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

beforeAll(async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'cairn-prov-'));
  // No scheduler service: it would act on the recorded job (its identity is still there to forge with).
  stack = await startStack({ dataDir, secure: true, operator: { kind: 'user', id: 'local-op' }, without: ['scheduler'] }) as Secure;
  catalogue = new CatalogueClient(stack.nc, { site: stack.site });
  await discoverVm(stack, vm);
  restorePointId = await backup(stack, vm, makeImage(vm.size, 3));
  await waitFor(() => catalogue.getRestorePoint(restorePointId).then(() => true, () => false), { timeoutMs: 60_000, what: 'the restore point in the catalogue' });
  jobId = (await catalogue.getRestorePoint(restorePointId)).jobId;
  // A second administrator, and a deletion the first one asked for (pending).
  expect((await api(stack.gatewayToken, 'POST', '/v1/users', { userId: 'bob', roles: ['administrator'] })).status).toBe(201);
  bobToken = String((await api(stack.gatewayToken, 'POST', '/v1/tokens', { userId: 'bob', name: 'bob' })).body.token);
  const req = await api(stack.gatewayToken, 'POST', `/v1/restore-points/${restorePointId}/deletion`, { reason: 'provenance test' });
  expect(req.status).toBe(202);
  approvalId = String(req.body.approvalId);
}, 240_000);

afterAll(async () => {
  await closeIdentityConnections();
  await stack?.stop();
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

describe('four-eyes', () => {
  it('no single compromised service identity completes the deletion: grants it cannot write, and the data mover refuses the act', { timeout: 120_000 }, async () => {
    // After every identity's forged ApprovalGranted (above): still pending, and the act refused.
    expect((await api(bobToken, 'GET', `/v1/approvals/${approvalId}`)).body).toMatchObject({ status: 'pending' });
    const bus = new CommandBus(stack.nc, { site: stack.site, actor: stack.operator!.actor, defaultTimeoutMs: 15_000 });
    const reply = await bus.send('data-mover', 'DeleteRestorePoint', { restorePointId, approvalId });
    expect(reply).toMatchObject({ accepted: false, error: { code: 'approval_required' } });
    expect((await stack.repository.listRestorePoints()).map((p) => p.id)).toContain(restorePointId);
  });

  it('no single administrator completes it: not by approving itself, nor by planting a grant with the admin NATS credentials', { timeout: 120_000 }, async () => {
    const self = await api(stack.gatewayToken, 'POST', `/v1/approvals/${approvalId}/approve`);
    expect(self).toMatchObject({ status: 403, body: { code: 'four_eyes' } });
    for (const how of ['signed', 'signed-as-other', 'unsigned'] as const) {
      const grant = newEvent('ApprovalGranted', { approvalId, approvedBy: 'bob' }, meta(`approval-${approvalId}`, 'bob'));
      const outcome = await forgeEvent({ stack, identity: 'admin', event: grant, how });
      expect(outcome.refusedBy).toBeUndefined(); // the operator's NATS identity may publish anywhere on its site
      await expectRefused(outcome, grant, how === 'unsigned' ? null : 'admin', IDENTITY_READERS, `admin (${how})`);
    }
    const deleted = newEvent('RestorePointDeleted', { restorePointId, approvalId, requestedBy: 'admin', approvedBy: 'bob' }, meta(`restorepoint-${restorePointId}`, 'bob'));
    await expectRefused(await forgeEvent({ stack, identity: 'admin', event: deleted, how: 'signed' }), deleted, 'admin', ALL_READERS, 'admin');
    expect((await api(bobToken, 'GET', `/v1/approvals/${approvalId}`)).body).toMatchObject({ status: 'pending' });
    const bus = new CommandBus(stack.nc, { site: stack.site, actor: stack.operator!.actor, defaultTimeoutMs: 15_000 });
    expect(await bus.send('data-mover', 'DeleteRestorePoint', { restorePointId, approvalId })).toMatchObject({ accepted: false, error: { code: 'approval_required' } });
    expect((await stack.repository.listRestorePoints()).map((p) => p.id)).toContain(restorePointId);
    // With a real second administrator it happens.
    const ok = await api(bobToken, 'POST', `/v1/approvals/${approvalId}/approve`);
    expect(ok).toMatchObject({ status: 200, body: { status: 'done', requestedBy: 'admin', approvedBy: 'bob' } });
    expect((await stack.repository.listRestorePoints()).map((p) => p.id)).not.toContain(restorePointId);
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
