// API access control end to end: users and tokens in the log, the role matrix on every route of
// the OpenAPI document, the auditor reading everything and changing nothing, revocation taking
// effect at once, OIDC sign-in against a JWKS served on loopback, and four-eyes deletion of a
// restore point (a second administrator, never the requester; a locked restore point refused),
// with every act in the audit trail (catalogue timeline and the audit bridge's hash chain).
// Real nats-server, JetStream log, catalogue, data mover with a directory repository, audit
// bridge; the scheduler is a fake that records what reaches it.
import { createServer, type Server } from 'node:http';
import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { newEvent, type Actor } from '@cairn/contracts';
import { createJetStreamEventLog, type JetStreamEventLog } from '@cairn/eventlog';
import { CommandBus, JetStreamServer } from '@cairn/messaging';
import { DirectoryBackend, initRepository, type Repository } from '@cairn/repository';
import { useHarness, waitFor } from '@cairn/testing';
import { startCatalogue, type RunningCatalogue } from '@cairn/catalogue';
import { startDataMover } from '@cairn/data-mover';
import { auditStream, readAuditChain, startAuditBridge } from '@cairn/audit-bridge';
import { gatewayOpenApiDocument, startGateway, type RunningGateway } from '@cairn/gateway';
import { verifyChain } from '@cairn/audit';
import { pino } from 'pino';
import { cli } from './e2e-helpers.ts';

const site = 'site-acl';
const bootstrapToken = 'bootstrap-token-0123456789abcdef';
const h = useHarness();
const logger = pino({ level: 'silent' });
const TEST: Actor = { kind: 'service', id: 'access-e2e' };
let nc: NatsConnection;
let natsUrl: string;
let log: JetStreamEventLog;
let repo: Repository;
let catalogue: RunningCatalogue;
let gateway: RunningGateway;
let root: string;
let jwks: Server;
let issuer: string;
let signingKey: CryptoKey;
const reachedScheduler: Array<{ name: string; actor: Actor }> = [];
const tokens: Record<string, string> = {};

interface Reply { status: number; body: Record<string, unknown> & { items?: Array<Record<string, unknown>> } }

async function call(token: string | undefined, method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<Reply> {
  const headers: Record<string, string> = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(`${gateway.url}${path}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  const text = await res.text();
  // The live feed answers text/event-stream, not JSON.
  if (res.headers.get('content-type')?.startsWith('text/event-stream')) return { status: res.status, body: {} };
  return { status: res.status, body: text ? JSON.parse(text) as Reply['body'] : {} };
}

/** A restore point in the repository and the catalogue (as a completed backup job records it). */
async function restorePoint(): Promise<string> {
  const jobId = randomUUID();
  const w = await repo.writeRestorePoint({ vm: { id: 'vm1', name: 'web-1' }, disks: [{ name: 'vda', sizeBytes: 65536, extents: [{ offset: 0, data: Buffer.alloc(65536, 3) }] }], labels: { jobId } });
  const d = w.disks[0]!;
  const streamId = `job-${jobId}`;
  const meta = { site, actor: TEST, streamId, correlationId: jobId };
  await log.append(streamId, [
    newEvent('JobRequested', { jobId, vmId: 'vm1', policyId: null, mode: 'full', trigger: 'manual' }, meta),
    newEvent('RestorePointCommitted', {
      restorePointId: w.restorePointId, jobId, vmId: 'vm1', parentId: null,
      disks: [{ name: d.name, sizeBytes: d.sizeBytes, bytesRead: d.bytesRead, bytesStored: d.bytesStored, chunksNew: d.chunksNew, chunksReused: d.chunksReused }],
    }, meta),
    newEvent('JobCompleted', { jobId, restorePointId: w.restorePointId, bytesRead: d.bytesRead, bytesStored: d.bytesStored, durationMs: 1 }, meta),
  ], { expectedRevision: 'no_stream' });
  await catalogue.service.projector.waitForPosition(await log.headPosition());
  return w.restorePointId;
}

const exists = (id: string) => repo.listRestorePoints().then((all) => all.some((r) => r.id === id));

async function eventsSince(position: bigint) {
  const out = [];
  for await (const r of log.readAll({ fromPosition: position })) out.push(r.event);
  return out;
}

beforeAll(async () => {
  const base = await h.tmpDir();
  root = join(base, 'restores');
  await mkdir(root);
  const nats = await h.nats();
  natsUrl = nats.url;
  nc = await connect({ servers: nats.url });
  h.onClose(() => nc.drain());
  log = await createJetStreamEventLog({ nc, site });
  h.onClose(() => log.close());
  await log.append('vm-vm1', [newEvent('VmDiscovered', { vmId: 'vm1', name: 'web-1', hypervisor: { kind: 'qemu', host: 'h1' }, tags: [], disks: [{ name: 'vda', sizeBytes: 65536 }] }, { site, actor: TEST, streamId: 'vm-vm1' })], { expectedRevision: 'no_stream' });
  catalogue = await startCatalogue({ nc, site, dataDir: ':memory:', log, logger });
  h.onClose(() => catalogue.close());
  repo = await initRepository(new DirectoryBackend(join(base, 'repo'), { createRoot: true }), { passphrase: 'pw', kdf: { N: 1024 } });
  h.onClose(() => repo.close());
  const mover = await startDataMover({ nc, log, site, repositories: new Map([['default', repo]]), restoreRoots: [root], logger, runDir: join(base, 'run') });
  h.onClose(() => mover.close());
  const bridge = await startAuditBridge({ nc, site, logger, targets: [{ kind: 'chain', name: 'chain' }] });
  h.onClose(() => bridge.close());

  const scheduler = new JetStreamServer({ connection: nc, site, actor: { kind: 'service', id: 'fake-scheduler' } });
  for (const name of ['RequestBackup', 'CreatePolicy', 'PausePolicy', 'ResumePolicy', 'DeletePolicy'] as const) {
    scheduler.addCommandHandler('scheduler', name, async (_payload, ctx) => {
      reachedScheduler.push({ name, actor: ctx.actor });
      return name === 'RequestBackup' ? { jobId: `j-${reachedScheduler.length}` } : { policyId: `p-${reachedScheduler.length}` };
    });
  }
  await new Promise<void>((resolve, reject) => { void scheduler.listen((e?: unknown) => (e ? reject(e) : resolve())); });
  h.onClose(() => scheduler.close());

  // An OIDC provider's JWKS on loopback, with a key pair made here.
  const pair = await generateKeyPair('ES256');
  signingKey = pair.privateKey;
  const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'test-key', alg: 'ES256', use: 'sig' };
  jwks = createServer((_req, res) => { res.setHeader('Content-Type', 'application/json'); res.end(JSON.stringify({ keys: [jwk] })); });
  await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
  h.onClose(() => new Promise<void>((resolve) => jwks.close(() => resolve())));
  issuer = `http://127.0.0.1:${(jwks.address() as { port: number }).port}`;

  // Many refused credentials from one address here: throttling is tested in hostile-input.e2e.spec.ts.
  gateway = await startGateway({
    nc, log, site, port: 0, token: bootstrapToken, logger, timeoutMs: 10_000, longTimeoutMs: 30_000, authFailureLimit: 1_000_000,
    oidc: { issuer, audience: 'cairn', jwksUrl: `${issuer}/jwks.json` },
  });
  h.onClose(() => gateway.close());
  tokens.admin = bootstrapToken;
});

afterAll(async () => { await gateway?.close(); });

describe('users and tokens', () => {
  it('the bootstrap administrator creates users with roles and issues their tokens; only hashes reach the log', async () => {
    expect((await call(bootstrapToken, 'GET', '/v1/whoami')).body).toMatchObject({ actor: { id: 'admin' }, roles: ['administrator'] });
    const head = await log.headPosition();
    for (const [userId, role] of [['bob', 'administrator'], ['olga', 'operator'], ['rita', 'restore-operator'], ['aude', 'auditor']] as const) {
      expect((await call(bootstrapToken, 'POST', '/v1/users', { userId, roles: [role] })).status).toBe(201);
      const t = await call(bootstrapToken, 'POST', '/v1/tokens', { userId, name: `${userId} laptop` });
      expect(t.status).toBe(201);
      expect(t.body.token).toMatch(/^cairn_[A-Za-z0-9_-]{43}$/);
      tokens[role] = String(t.body.token);
    }
    const written = await eventsSince(head);
    expect(written.map((e) => e.type)).toEqual(expect.arrayContaining(['UserCreated', 'TokenIssued']));
    expect(written.every((e) => e.actor.id === 'admin' || e.type === 'SignedIn')).toBe(true);
    const text = JSON.stringify(written);
    for (const t of Object.values(tokens)) expect(text).not.toContain(t);
    expect((await call(bootstrapToken, 'POST', '/v1/users', { userId: 'bob', roles: ['auditor'] })).status).toBe(409);
    expect((await call(undefined, 'GET', '/v1/vms')).status).toBe(401);
    expect((await call('cairn_not-a-token-at-all-0000000000000000000000000', 'GET', '/v1/vms')).status).toBe(401);
  });
});

describe('roles on every route', () => {
  type Case = { method: 'GET' | 'POST' | 'DELETE'; path: string; body?: unknown; allowed: readonly string[] };
  const ALL = ['administrator', 'operator', 'restore-operator', 'auditor'];
  let rp: string;
  let cases: Record<string, () => Case>;

  beforeAll(async () => {
    rp = await restorePoint();
    const policy = (n: string) => ({
      name: `nightly-${n}`, selector: { names: ['web-1'] }, schedule: { cron: '0 2 * * *', timezone: 'UTC' },
      retention: { daily: 7, weekly: 0, monthly: 0, yearly: 0, last: 1 }, repository: 'default', keyRef: 'default', priority: 1,
    });
    let n = 0;
    const uniq = () => `${++n}-${randomUUID().slice(0, 6)}`;
    // One request per operation; the ids in paths need not exist (a 404 is "allowed", not 403).
    cases = {
      listVms: () => ({ method: 'GET', path: '/v1/vms', allowed: ALL }),
      getVm: () => ({ method: 'GET', path: '/v1/vms/vm1', allowed: ALL }),
      listRestorePoints: () => ({ method: 'GET', path: '/v1/restore-points', allowed: ALL }),
      getRestorePoint: () => ({ method: 'GET', path: `/v1/restore-points/${rp}`, allowed: ALL }),
      listReplicas: () => ({ method: 'GET', path: '/v1/replicas', allowed: ALL }),
      listTestRestores: () => ({ method: 'GET', path: '/v1/test-restores', allowed: ALL }),
      listJobs: () => ({ method: 'GET', path: '/v1/jobs', allowed: ALL }),
      getJob: () => ({ method: 'GET', path: '/v1/jobs/nope', allowed: ALL }),
      listPolicies: () => ({ method: 'GET', path: '/v1/policies', allowed: ALL }),
      getPolicy: () => ({ method: 'GET', path: '/v1/policies/nope', allowed: ALL }),
      auditTimeline: () => ({ method: 'GET', path: '/v1/audit?limit=5', allowed: ALL }),
      whoAmI: () => ({ method: 'GET', path: '/v1/whoami', allowed: ALL }),
      listUsers: () => ({ method: 'GET', path: '/v1/users', allowed: ['administrator'] }),
      listTokens: () => ({ method: 'GET', path: '/v1/tokens', allowed: ALL }),
      listApprovals: () => ({ method: 'GET', path: '/v1/approvals', allowed: ALL }),
      getApproval: () => ({ method: 'GET', path: '/v1/approvals/nope', allowed: ALL }),
      eventStream: () => ({ method: 'GET', path: '/v1/events/stream?after=0&follow=false', allowed: ALL }),
      verifyAuditChain: () => ({ method: 'GET', path: '/v1/audit/chain', allowed: ALL }),
      requestBackup: () => ({ method: 'POST', path: '/v1/backups', body: { vmId: 'vm1' }, allowed: ['administrator', 'operator'] }),
      createPolicy: () => ({ method: 'POST', path: '/v1/policies', body: policy(uniq()), allowed: ['administrator', 'operator'] }),
      updatePolicy: () => ({ method: 'POST', path: '/v1/policies/nope', body: policy(uniq()), allowed: ['administrator', 'operator'] }),
      pausePolicy: () => ({ method: 'POST', path: '/v1/policies/nope/pause', allowed: ['administrator', 'operator'] }),
      resumePolicy: () => ({ method: 'POST', path: '/v1/policies/nope/resume', allowed: ['administrator', 'operator'] }),
      deletePolicy: () => ({ method: 'DELETE', path: '/v1/policies/nope', allowed: ['administrator', 'operator'] }),
      restoreDisk: () => ({ method: 'POST', path: '/v1/restores', body: { restorePointId: rp, disk: 'vda', target: { kind: 'file', path: join(root, `r-${uniq()}.raw`) } }, allowed: ['administrator', 'operator', 'restore-operator'] }),
      // File-level restore: reading files inside a restore point needs `files` (never the auditor).
      listFiles: () => ({ method: 'GET', path: '/v1/restore-points/nope/files?path=/', allowed: ['administrator', 'operator', 'restore-operator'] }),
      statFile: () => ({ method: 'GET', path: '/v1/restore-points/nope/files/stat?path=/part1/etc', allowed: ['administrator', 'operator', 'restore-operator'] }),
      downloadFile: () => ({ method: 'GET', path: '/v1/restore-points/nope/files/content?path=/part1/etc/hosts', allowed: ['administrator', 'operator', 'restore-operator'] }),
      downloadFiles: () => ({ method: 'GET', path: '/v1/restore-points/nope/files/archive?path=/part1/etc&path=/part1/root', allowed: ['administrator', 'operator', 'restore-operator'] }),
      searchFiles: () => ({ method: 'GET', path: '/v1/files/search?pattern=*.xlsx', allowed: ['administrator', 'operator', 'restore-operator'] }),
      requestRestore: () => ({ method: 'POST', path: '/v1/restore-jobs', body: { restorePointId: rp, target: { kind: 'file', disk: 'vda', path: join(root, `rj-${uniq()}.raw`), format: 'raw', overwrite: false } }, allowed: ['administrator', 'operator', 'restore-operator'] }),
      getRestoreJob: () => ({ method: 'GET', path: '/v1/restore-jobs/nope', allowed: ALL }),
      startInstantRecovery: () => ({ method: 'POST', path: '/v1/instant-recoveries', body: { restorePointId: 'nope', vmName: `i${uniq()}`, start: false }, allowed: ['administrator', 'operator', 'restore-operator'] }),
      listInstantRecoveries: () => ({ method: 'GET', path: '/v1/instant-recoveries', allowed: ALL }),
      getInstantRecovery: () => ({ method: 'GET', path: '/v1/instant-recoveries/nope', allowed: ALL }),
      finishInstantRecovery: () => ({ method: 'POST', path: '/v1/instant-recoveries/nope/finish', body: {}, allowed: ['administrator', 'operator', 'restore-operator'] }),
      discardInstantRecovery: () => ({ method: 'POST', path: '/v1/instant-recoveries/nope/discard', allowed: ['administrator', 'operator', 'restore-operator'] }),
      createUser: () => ({ method: 'POST', path: '/v1/users', body: { userId: `u${uniq()}`, roles: ['auditor'] }, allowed: ['administrator'] }),
      setUserRoles: () => ({ method: 'POST', path: '/v1/users/nobody/roles', body: { roles: ['auditor'] }, allowed: ['administrator'] }),
      disableUser: () => ({ method: 'POST', path: '/v1/users/nobody/disable', body: {}, allowed: ['administrator'] }),
      addUserKey: () => ({ method: 'POST', path: '/v1/users/nobody/keys', body: { publicKey: `U${'A'.repeat(55)}` }, allowed: ['administrator'] }),
      revokeUserKey: () => ({ method: 'POST', path: `/v1/users/nobody/keys/U${'A'.repeat(55)}/revoke`, body: {}, allowed: ['administrator'] }),
      createToken: () => ({ method: 'POST', path: '/v1/tokens', body: { userId: 'aude', name: `t${uniq()}` }, allowed: ['administrator'] }),
      revokeToken: () => ({ method: 'POST', path: '/v1/tokens/nope/revoke', body: {}, allowed: ['administrator'] }),
      requestApproval: () => ({ method: 'POST', path: '/v1/approvals', body: { action: { kind: 'delete-restore-point', restorePointId: 'nope' } }, allowed: ['administrator'] }),
      requestRestorePointDeletion: () => ({ method: 'POST', path: '/v1/restore-points/nope/deletion', body: {}, allowed: ['administrator'] }),
      requestRepositoryDeletion: () => ({ method: 'POST', path: '/v1/repositories/nope/deletion', body: {}, allowed: ['administrator'] }),
      requestSiteLoss: () => ({ method: 'POST', path: '/v1/sites/nope/loss', body: {}, allowed: ['administrator'] }),
      // Every site's health is the hub's: a site's gateway answers 404 not_hub ("allowed", not 403).
      listSiteHealth: () => ({ method: 'GET', path: '/v1/sites/health', allowed: ALL }),
      listGlobalPolicies: () => ({ method: 'GET', path: '/v1/global-policies', allowed: ALL }),
      // The route lets every role in; the relayed command's own permission (RequestBackup: backup) is checked next and a refusal
      // recorded as AccessDenied; the site checks the signature (404 here for the allowed roles: a site relays only to itself).
      relayCommand: () => ({ method: 'POST', path: '/v1/sites/nope/commands', body: { command: { id: randomUUID(), name: 'RequestBackup', schemaVersion: 1, idempotencyKey: randomUUID(), actor: { kind: 'user', id: 'aude' }, site: 'nope', time: new Date().toISOString(), payload: { vmId: 'nope', mode: 'auto' } } }, allowed: ['administrator', 'operator'] }),
      approve: () => ({ method: 'POST', path: '/v1/approvals/nope/approve', allowed: ['administrator'] }),
      reject: () => ({ method: 'POST', path: '/v1/approvals/nope/reject', body: {}, allowed: ['administrator'] }),
    };
  });

  it('covers every authenticated route of the OpenAPI document', () => {
    const doc = gatewayOpenApiDocument() as { paths: Record<string, Record<string, { operationId: string; security?: unknown[] }>> };
    const ops = Object.values(doc.paths).flatMap((p) => Object.values(p)).filter((o) => !Array.isArray(o.security)).map((o) => o.operationId);
    expect(ops.sort()).toEqual(Object.keys(cases).sort());
  });

  for (const role of ['administrator', 'operator', 'restore-operator', 'auditor'] as const) {
    it(`${role}: allowed operations pass the gate, every other one is 403 and recorded as AccessDenied`, async () => {
      const head = await log.headPosition();
      const denied: string[] = [];
      for (const [op, make] of Object.entries(cases)) {
        const c = make();
        const r = await call(tokens[role], c.method, c.path, c.body);
        if (c.allowed.includes(role)) {
          expect({ op, status: r.status }).toEqual({ op, status: expect.not.toSatisfy((s: number) => s === 401 || s === 403 || s >= 500) as unknown });
        } else {
          expect({ op, status: r.status, code: r.body.code }).toEqual({ op, status: 403, code: 'forbidden' });
          denied.push(op);
        }
      }
      const refusals = (await eventsSince(head)).filter((e) => e.type === 'AccessDenied');
      const user = { administrator: 'bob', operator: 'olga', 'restore-operator': 'rita', auditor: 'aude' }[role];
      expect(refusals.map((e) => (e.data as { operation: string }).operation).sort()).toEqual(denied.sort());
      expect(refusals.every((e) => e.actor.id === user)).toBe(true);
    });
  }

  it('the auditor reads everything and changes nothing: only its refusals are written, nothing reaches a service', async () => {
    const head = await log.headPosition();
    const sent = reachedScheduler.length;
    const files = await import('node:fs/promises').then((f) => f.readdir(root));
    for (const [op, make] of Object.entries(cases)) {
      const c = make();
      const r = await call(tokens.auditor, c.method, c.path, c.body);
      // Reads it is allowed (every GET but the administrators' user list) answer; everything else is refused.
      if (c.method === 'GET' && c.allowed.includes('auditor')) expect({ op, status: r.status }).toEqual({ op, status: expect.toSatisfy((s: number) => s === 200 || s === 404) as unknown });
      else expect({ op, status: r.status }).toEqual({ op, status: 403 });
    }
    const written = await eventsSince(head);
    expect(written.filter((e) => e.type !== 'AccessDenied' && e.type !== 'SignedIn')).toEqual([]);
    expect(reachedScheduler.length).toBe(sent);
    expect(await import('node:fs/promises').then((f) => f.readdir(root))).toEqual(files);
  });

  it('commands carry the authenticated person as actor, and a restore records DiskRestored with it', async () => {
    const n = reachedScheduler.length;
    expect((await call(tokens.operator, 'POST', '/v1/backups', { vmId: 'vm1' })).status).toBe(202);
    expect(reachedScheduler[n]).toEqual({ name: 'RequestBackup', actor: { kind: 'user', id: 'olga' } });
    const head = await log.headPosition();
    const r = await call(tokens['restore-operator'], 'POST', '/v1/restores', { restorePointId: rp, disk: 'vda', target: { kind: 'file', path: join(root, 'rita.raw') } });
    expect(r.status).toBe(200);
    const restored = (await eventsSince(head)).filter((e) => e.type === 'DiskRestored');
    expect(restored).toEqual([expect.objectContaining({ actor: { kind: 'user', id: 'rita' }, data: expect.objectContaining({ restorePointId: rp, path: join(root, 'rita.raw') }) as unknown })]);
  });
});

describe('revocation and sign-in', () => {
  it('a revoked token stops working at once; a disabled user\'s tokens too', async () => {
    const t = await call(bootstrapToken, 'POST', '/v1/tokens', { userId: 'olga', name: 'to revoke' });
    const token = String(t.body.token);
    expect((await call(token, 'GET', '/v1/vms')).status).toBe(200);
    expect((await call(bootstrapToken, 'POST', `/v1/tokens/${String(t.body.tokenId)}/revoke`, { reason: 'laptop lost' })).status).toBe(200);
    const after = await call(token, 'GET', '/v1/vms');
    expect(after.status).toBe(401);
    expect(after.body.detail).toMatch(/revoked/);

    expect((await call(bootstrapToken, 'POST', '/v1/users', { userId: 'temp', roles: ['operator'] })).status).toBe(201);
    const tt = String((await call(bootstrapToken, 'POST', '/v1/tokens', { userId: 'temp', name: 'x' })).body.token);
    expect((await call(tt, 'GET', '/v1/vms')).status).toBe(200);
    expect((await call(bootstrapToken, 'POST', '/v1/users/temp/disable', {})).status).toBe(200);
    expect((await call(tt, 'GET', '/v1/vms')).status).toBe(401);
    const listed = (await call(tokens.auditor, 'GET', '/v1/tokens?userId=olga')).body.items!;
    expect(listed.find((x) => x.tokenId === t.body.tokenId)).toMatchObject({ revoked: true, revokedBy: 'admin' });
    expect(JSON.stringify(listed)).not.toMatch(/sha256|cairn_/);
  });

  it('records one SignedIn per token, not one per request', async () => {
    const t = await call(bootstrapToken, 'POST', '/v1/tokens', { userId: 'aude', name: 'sign-in count' });
    const head = await log.headPosition();
    for (let i = 0; i < 5; i++) expect((await call(String(t.body.token), 'GET', '/v1/vms')).status).toBe(200);
    const signIns = (await eventsSince(head)).filter((e) => e.type === 'SignedIn');
    expect(signIns).toEqual([expect.objectContaining({ actor: { kind: 'user', id: 'aude' }, data: expect.objectContaining({ method: 'token', tokenId: t.body.tokenId }) as unknown })]);
  });

  it('OIDC: a JWT signed by the provider\'s key signs in with its roles; a foreign key, wrong audience or expiry is 401', async () => {
    const jwt = (claims: Record<string, unknown>, opts: { key?: CryptoKey; aud?: string; exp?: string } = {}) => new SignJWT(claims)
      .setProtectedHeader({ alg: 'ES256', kid: 'test-key' }).setIssuer(issuer).setAudience(opts.aud ?? 'cairn')
      .setIssuedAt().setExpirationTime(opts.exp ?? '5m').setJti(randomUUID()).sign(opts.key ?? signingKey);
    const head = await log.headPosition();
    const auditorJwt = await jwt({ sub: 'carol@example.org', roles: ['auditor'] });
    expect((await call(auditorJwt, 'GET', '/v1/whoami')).body).toMatchObject({ actor: { id: 'carol@example.org' }, roles: ['auditor'] });
    expect((await call(auditorJwt, 'GET', '/v1/vms')).status).toBe(200);
    expect((await call(auditorJwt, 'POST', '/v1/backups', { vmId: 'vm1' })).status).toBe(403);
    const n = reachedScheduler.length;
    const operatorJwt = await jwt({ sub: 'dave', roles: ['operator', 'not-a-role'] });
    expect((await call(operatorJwt, 'POST', '/v1/backups', { vmId: 'vm1' })).status).toBe(202);
    expect(reachedScheduler[n]).toEqual({ name: 'RequestBackup', actor: { kind: 'user', id: 'dave' } });
    const written = await eventsSince(head);
    expect(written.filter((e) => e.type === 'SignedIn').map((e) => e.data)).toEqual([
      expect.objectContaining({ userId: 'carol@example.org', method: 'oidc', issuer, roles: ['auditor'] }),
      expect.objectContaining({ userId: 'dave', method: 'oidc', roles: ['operator'] }),
    ]);

    const foreign = (await generateKeyPair('ES256')).privateKey;
    expect((await call(await jwt({ sub: 'mallory', roles: ['administrator'] }, { key: foreign }), 'GET', '/v1/vms')).status).toBe(401);
    expect((await call(await jwt({ sub: 'mallory', roles: ['administrator'] }, { aud: 'other' }), 'GET', '/v1/vms')).status).toBe(401);
    expect((await call(await jwt({ sub: 'mallory', roles: ['administrator'] }, { exp: '-10m' }), 'GET', '/v1/vms')).status).toBe(401);
    const forged = `${auditorJwt.split('.')[0]}.${Buffer.from(JSON.stringify({ sub: 'mallory', roles: ['administrator'], iss: issuer, aud: 'cairn' })).toString('base64url')}.${auditorJwt.split('.')[2]}`;
    expect((await call(forged, 'GET', '/v1/vms')).status).toBe(401);
  });
});

describe('four-eyes: deleting a restore point', () => {
  it('waits for a second administrator, then happens; the requester cannot approve; both acts are in the audit trail', async () => {
    const rp = await restorePoint();
    const head = await log.headPosition();
    const req = await call(bootstrapToken, 'POST', `/v1/restore-points/${rp}/deletion`, { reason: 'contains leaked data' });
    expect(req.status).toBe(202);
    expect(req.body).toMatchObject({ status: 'pending', requestedBy: 'admin', action: { kind: 'delete-restore-point', restorePointId: rp } });
    const approvalId = String(req.body.approvalId);
    expect(await exists(rp)).toBe(true);

    const self = await call(bootstrapToken, 'POST', `/v1/approvals/${approvalId}/approve`);
    expect(self).toMatchObject({ status: 403, body: { code: 'four_eyes' } });
    expect((await call(tokens.operator, 'POST', `/v1/approvals/${approvalId}/approve`)).status).toBe(403);
    expect(await exists(rp)).toBe(true);
    expect((await call(tokens.auditor, 'GET', `/v1/approvals/${approvalId}`)).body).toMatchObject({ status: 'pending' });

    const ok = await call(tokens.administrator, 'POST', `/v1/approvals/${approvalId}/approve`);
    expect(ok).toMatchObject({ status: 200, body: { status: 'done', requestedBy: 'admin', approvedBy: 'bob' } });
    expect(await exists(rp)).toBe(false);
    expect((await call(tokens.administrator, 'POST', `/v1/approvals/${approvalId}/approve`)).status).toBe(409);

    // The log: request by admin, the refused self-approval, grant by bob, the deletion, done.
    const written = (await eventsSince(head)).filter((e) => e.type !== 'SignedIn');
    expect(written.map((e) => [e.type, e.actor.id])).toEqual([
      ['ApprovalRequested', 'admin'], ['AccessDenied', 'admin'], ['AccessDenied', 'olga'], ['ApprovalGranted', 'bob'], ['RestorePointDeleted', 'bob'], ['ApprovalExecuted', 'bob'],
    ]);
    expect(written[1]!.data).toMatchObject({ operation: 'approve', needed: 'four-eyes' });
    expect(written[4]!.data).toEqual({ restorePointId: rp, approvalId, requestedBy: 'admin', approvedBy: 'bob' });

    // The audit timeline (what `cairn audit` shows) and the audit bridge's hash chain.
    await catalogue.service.projector.waitForPosition(await log.headPosition());
    const timeline = (await call(tokens.auditor, 'GET', '/v1/audit?limit=500')).body.items!;
    const ours = timeline.filter((e) => e.correlationId === `approval-${approvalId}` || e.streamId === `approval-${approvalId}`);
    expect(ours.map((e) => [e.type, (e.actor as Actor).id])).toEqual(expect.arrayContaining([
      ['ApprovalRequested', 'admin'], ['ApprovalGranted', 'bob'], ['RestorePointDeleted', 'bob'],
    ]));
    expect((await call(tokens.auditor, 'GET', '/v1/audit?actor=bob&type=RestorePointDeleted')).body.items).toHaveLength(1);
    const ids = new Set(written.map((e) => e.id));
    const chain = await waitFor(async () => {
      const records = await readAuditChain(nc, auditStream(site));
      return records.filter((r) => ids.has(r.event.id)).length === ids.size ? records : undefined;
    }, { timeoutMs: 30_000, what: 'the audit chain to hold the four-eyes events' });
    expect(verifyChain(chain).ok).toBe(true);
    expect((await call(tokens.auditor, 'GET', `/v1/restore-points/${rp}`)).body).toMatchObject({ expiredAt: expect.any(String) as unknown });
  });

  it('a locked restore point is not deleted even when approved (409 locked); a rejected request never executes', async () => {
    const rp = await restorePoint();
    await repo.lockRestorePoint(rp, new Date(Date.now() + 3600_000));
    const approvalId = String((await call(bootstrapToken, 'POST', `/v1/restore-points/${rp}/deletion`, {})).body.approvalId);
    const r = await call(tokens.administrator, 'POST', `/v1/approvals/${approvalId}/approve`);
    expect(r).toMatchObject({ status: 409, body: { code: 'locked' } });
    expect(await exists(rp)).toBe(true);
    expect((await call(tokens.auditor, 'GET', `/v1/approvals/${approvalId}`)).body).toMatchObject({ status: 'failed', detail: expect.stringMatching(/locked/) as unknown });

    const rp2 = await restorePoint();
    const second = String((await call(tokens.administrator, 'POST', `/v1/restore-points/${rp2}/deletion`, {})).body.approvalId);
    expect((await call(bootstrapToken, 'POST', `/v1/approvals/${second}/reject`, { reason: 'no' })).status).toBe(200);
    expect((await call(bootstrapToken, 'POST', `/v1/approvals/${second}/approve`)).status).toBe(409);
    expect(await exists(rp2)).toBe(true);
  });

  it('two administrators approving at once: exactly one wins, the act happens once', async () => {
    await call(bootstrapToken, 'POST', '/v1/users', { userId: 'ann', roles: ['administrator'] });
    const ann = String((await call(bootstrapToken, 'POST', '/v1/tokens', { userId: 'ann', name: 'race' })).body.token);
    const rp = await restorePoint();
    const approvalId = String((await call(bootstrapToken, 'POST', `/v1/restore-points/${rp}/deletion`, {})).body.approvalId);
    const head = await log.headPosition();
    const [x, y] = await Promise.all([
      call(tokens.administrator, 'POST', `/v1/approvals/${approvalId}/approve`),
      call(ann, 'POST', `/v1/approvals/${approvalId}/approve`),
    ]);
    expect([x.status, y.status].sort()).toEqual([200, 409]);
    expect(await exists(rp)).toBe(false);
    const written = (await eventsSince(head)).map((e) => e.type);
    expect(written.filter((t) => t === 'ApprovalGranted')).toHaveLength(1);
    expect(written.filter((t) => t === 'RestorePointDeleted')).toHaveLength(1);
  });

  it('the data mover refuses a deletion sent straight over NATS without a valid two-person approval', async () => {
    const rp = await restorePoint();
    const bus = new CommandBus(nc, { site, actor: { kind: 'user', id: 'mallory' } });
    const noApproval = await bus.send('data-mover', 'DeleteRestorePoint', { restorePointId: rp, approvalId: randomUUID() });
    expect(noApproval).toMatchObject({ accepted: false, error: { code: 'approval_required' } });
    // A request "granted" by its own requester, written straight into the log.
    const approvalId = randomUUID();
    const streamId = `approval-${approvalId}`;
    const mallory: Actor = { kind: 'user', id: 'mallory' };
    await log.append(streamId, [
      newEvent('ApprovalRequested', { approvalId, action: { kind: 'delete-restore-point', restorePointId: rp }, requestedBy: 'mallory' }, { site, actor: mallory, streamId }),
      newEvent('ApprovalGranted', { approvalId, approvedBy: 'mallory' }, { site, actor: mallory, streamId }),
    ], { expectedRevision: 'no_stream' });
    expect(await bus.send('data-mover', 'DeleteRestorePoint', { restorePointId: rp, approvalId })).toMatchObject({ accepted: false, error: { code: 'approval_required' } });
    // An approval for another restore point does not delete this one.
    const other = String((await call(bootstrapToken, 'POST', `/v1/restore-points/${await restorePoint()}/deletion`, {})).body.approvalId);
    expect(await bus.send('data-mover', 'DeleteRestorePoint', { restorePointId: rp, approvalId: other })).toMatchObject({ accepted: false, error: { code: 'approval_required' } });
    expect(await exists(rp)).toBe(true);
  });
});

describe('the CLI', () => {
  it('manages users and tokens, asks for and approves a deletion, and `cairn audit` shows who did it', { timeout: 300_000 }, async () => {
    const api = (token: string) => ['--gateway', gateway.url, '--token', token];
    const run = async (args: string[], expectCode = 0) => {
      const r = await cli(args, { CAIRN_DATA: '/nonexistent-cairn-data' });
      expect({ args: args.filter((a) => !a.startsWith('cairn_') && a !== bootstrapToken), code: r.code, stderr: r.stderr }).toMatchObject({ code: expectCode });
      return r;
    };
    await run(['user', 'add', 'carl', '--role', 'administrator', ...api(bootstrapToken)]);
    const created = JSON.parse((await run(['--json', 'token', 'create', '--user', 'carl', '--name', 'cli test', ...api(bootstrapToken)])).stdout) as { token: string; tokenId: string };
    expect(JSON.parse((await run(['--json', 'whoami', ...api(created.token)])).stdout)).toMatchObject({ actor: { id: 'carl' }, roles: ['administrator'] });
    // An auditor's token cannot add users (a refusal is exit 7, with the reason; README exit codes).
    const refused = await run(['user', 'add', 'eve', '--role', 'administrator', ...api(tokens.auditor!)], 7);
    expect(refused.stderr).toMatch(/admin permission/);

    const rp = await restorePoint();
    const asked = JSON.parse((await run(['--json', 'restore-point', 'delete', rp, '--reason', 'cli', ...api(bootstrapToken)])).stdout) as { approvalId: string };
    const self = await run(['approval', 'approve', asked.approvalId, ...api(bootstrapToken)], 7);
    expect(self.stderr).toMatch(/second administrator/);
    expect(await exists(rp)).toBe(true);
    await run(['approval', 'approve', asked.approvalId, ...api(created.token)]);
    expect(await exists(rp)).toBe(false);

    await run(['token', 'revoke', created.tokenId, ...api(bootstrapToken)]);
    const revoked = await run(['whoami', ...api(created.token)], 7);
    expect(revoked.stderr).toMatch(/revoked/);

    await catalogue.service.projector.waitForPosition(await log.headPosition());
    const audit = JSON.parse((await run(['--json', 'audit', '--actor', 'carl', '--nats', natsUrl, '--site', site])).stdout) as Array<{ type: string; data: Record<string, unknown> }>;
    expect(audit.map((e) => e.type)).toEqual(expect.arrayContaining(['SignedIn', 'ApprovalGranted', 'RestorePointDeleted', 'ApprovalExecuted']));
    expect(audit.find((e) => e.type === 'RestorePointDeleted')!.data).toMatchObject({ restorePointId: rp, requestedBy: 'admin', approvedBy: 'carl' });
  });
});

describe('secrets', () => {
  it('no token, bootstrap or issued, appears in the gateway\'s log lines, even at debug level', async () => {
    const lines: string[] = [];
    const chatty = pino({ level: 'debug' }, { write: (l: string) => { lines.push(l); } });
    const second = await startGateway({ nc, log, site, port: 0, token: bootstrapToken, logger: chatty, timeoutMs: 10_000, authFailureLimit: 1_000_000 });
    try {
      const call2 = async (token: string, method: 'GET' | 'POST', path: string, body?: unknown) => {
        const res = await fetch(`${second.url}${path}`, {
          method, headers: { Authorization: `Bearer ${token}`, ...(body ? { 'Content-Type': 'application/json' } : {}) }, ...(body ? { body: JSON.stringify(body) } : {}),
        });
        return { status: res.status, body: await res.json() as Record<string, unknown> };
      };
      const issued = await call2(bootstrapToken, 'POST', '/v1/tokens', { userId: 'aude', name: 'logged' });
      expect(issued.status).toBe(201);
      const token = String(issued.body.token);
      expect(await call2(token, 'GET', '/v1/vms')).toMatchObject({ status: 200 });
      expect((await call2(token, 'POST', '/v1/backups', { vmId: 'vm1' })).status).toBe(403);
      await call2(bootstrapToken, 'POST', `/v1/tokens/${String(issued.body.tokenId)}/revoke`, {});
      expect((await call2(token, 'GET', '/v1/vms')).status).toBe(401);
      expect((await call2(`${token}x`, 'GET', '/v1/vms')).status).toBe(401);
      expect(lines.length).toBeGreaterThan(3);
      const text = lines.join('');
      for (const secret of [bootstrapToken, token, ...Object.values(tokens)]) expect(text).not.toContain(secret);
      expect(text).not.toMatch(/cairn_[A-Za-z0-9_-]{20,}/);
    } finally {
      await second.close();
    }
  });
});
