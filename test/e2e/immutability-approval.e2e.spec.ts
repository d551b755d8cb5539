// Immutable policies and the four-eyes acts that weaken immutability, end to end with the real
// scheduler, data mover (directory repositories), catalogue and gateway on a real nats-server:
// - a restore point of an immutable policy is locked, by the data mover's identity, until the end
//   of its retention period, and an approved deletion cannot remove it;
// - turning immutability off waits for a second administrator (never the requester), then only
//   later restore points are left unlocked; UpdatePolicy over NATS cannot do it alone;
// - deleting a repository needs a granted delete-repository approval, is refused while a lock is
//   live (naming the lock's end), and otherwise removes everything, recorded with both people.
import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { immutabilityLockUntil, newEvent, type Actor, type KnownEvent } from '@cairn/contracts';
import { createJetStreamEventLog, type JetStreamEventLog } from '@cairn/eventlog';
import { CommandBus } from '@cairn/messaging';
import { DirectoryBackend, initRepository, openRepository, RepositoryDeletedError, type Repository } from '@cairn/repository';
import { useHarness, waitFor } from '@cairn/testing';
import { startCatalogue, type RunningCatalogue } from '@cairn/catalogue';
import { startScheduler } from '@cairn/scheduler';
import { startDataMover, type RunningDataMover } from '@cairn/data-mover';
import { startGateway, type RunningGateway } from '@cairn/gateway';
import { pino } from 'pino';
import { cli, gatewayCall } from './e2e-helpers.ts';

const site = 'site-imm';
const admin = 'immutability-bootstrap-0123456789';
const h = useHarness();
const logger = pino({ level: 'silent' });
const TEST: Actor = { kind: 'service', id: 'immutability-e2e' };
let nc: NatsConnection;
let natsUrl: string;
let log: JetStreamEventLog;
let catalogue: RunningCatalogue;
let gateway: RunningGateway;
let mover: RunningDataMover;
let base: string;
const repos: Record<string, Repository> = {};
const tokens: Record<string, string> = {};

const call = (token: string, method: 'GET' | 'POST', path: string, body?: unknown) => gatewayCall(gateway.url, token, method, path, body);

const fields = (immutable: boolean, daily = 7) => ({
  name: 'immutable-nightly', selector: { names: ['web-1'] }, schedule: { cron: '0 2 * * *', timezone: 'UTC' },
  retention: { daily, weekly: 2, monthly: 0, yearly: 0, last: 3 }, repository: 'default', keyRef: 'default', priority: 1, immutable,
});

async function settled() {
  await catalogue.service.projector.waitForPosition(await log.headPosition());
}

async function policyNow(policyId: string) {
  await settled();
  return (await call(tokens.olga!, 'GET', `/v1/policies/${policyId}`)).body as { version: number; immutable?: boolean };
}

async function eventsSince(position: bigint): Promise<KnownEvent[]> {
  const out: KnownEvent[] = [];
  for await (const r of log.readAll({ fromPosition: position })) out.push(r.event);
  return out.filter((e) => e.type !== 'SignedIn');
}

async function streamEvents(streamId: string): Promise<KnownEvent[]> {
  const out: KnownEvent[] = [];
  for await (const r of log.readStream(streamId)) out.push(r.event);
  return out;
}

/**
 * A backup of `policyId` whose restore point is committed, then its transfer work handed to the
 * data mover: the work a mover gets again when the one that committed died before acknowledging
 * it, which must still leave the restore point locked when the policy is immutable.
 */
const jobOf = new Map<string, string>();

async function redeliver(jobId: string, policyId: string | null, repository = 'default') {
  return mover.mover.transfer({
    jobId, vmId: 'vm1', vmName: 'web-1', snapshotId: `snap-${jobId}`, policyId, repository, mode: 'full',
    nbd: { socket: '/nonexistent', exports: [] } as never,
  });
}

async function committedBackup(policyId: string | null, repository = 'default'): Promise<{ restorePointId: string; committedAt: Date }> {
  const jobId = randomUUID();
  const w = await repos[repository]!.writeRestorePoint({
    vm: { id: 'vm1', name: 'web-1' }, disks: [{ name: 'vda', sizeBytes: 65536, extents: [{ offset: 0, data: Buffer.alloc(65536, 7) }] }], labels: { jobId },
  });
  const d = w.disks[0]!;
  const streamId = `job-${jobId}`;
  const meta = { site, actor: TEST, streamId, correlationId: jobId };
  const commit = newEvent('RestorePointCommitted', {
    restorePointId: w.restorePointId, jobId, vmId: 'vm1', parentId: null,
    disks: [{ name: d.name, sizeBytes: d.sizeBytes, bytesRead: d.bytesRead, bytesStored: d.bytesStored, chunksNew: d.chunksNew, chunksReused: d.chunksReused }],
  }, meta);
  await log.append(streamId, [newEvent('JobRequested', { jobId, vmId: 'vm1', policyId, mode: 'full', trigger: 'manual' }, meta), commit], { expectedRevision: 'no_stream' });
  jobOf.set(w.restorePointId, jobId);
  expect(await redeliver(jobId, policyId, repository)).toBe('skipped');
  return { restorePointId: w.restorePointId, committedAt: new Date(commit.time) };
}

beforeAll(async () => {
  base = await h.tmpDir();
  const nats = await h.nats();
  natsUrl = nats.url;
  nc = await connect({ servers: nats.url });
  h.onClose(() => nc.drain());
  log = await createJetStreamEventLog({ nc, site });
  h.onClose(() => log.close());
  await log.append('vm-vm1', [newEvent('VmDiscovered', { vmId: 'vm1', name: 'web-1', hypervisor: { kind: 'qemu', host: 'h1' }, tags: [], disks: [{ name: 'vda', sizeBytes: 65536 }] }, { site, actor: TEST, streamId: 'vm-vm1' })], { expectedRevision: 'no_stream' });
  catalogue = await startCatalogue({ nc, site, dataDir: ':memory:', log, logger });
  h.onClose(() => catalogue.close());
  for (const name of ['default', 'spare']) {
    repos[name] = await initRepository(new DirectoryBackend(join(base, name), { createRoot: true }), { passphrase: 'pw', kdf: { N: 1024 } });
    h.onClose(() => repos[name]!.close());
  }
  mover = await startDataMover({ nc, log, site, repositories: new Map(Object.entries(repos)), restoreRoots: [join(base, 'restores')], logger, runDir: join(base, 'run') });
  h.onClose(() => mover.close());
  const scheduler = await startScheduler({ nc, log, config: { site, repositories: ['default', 'spare'] }, logger });
  h.onClose(() => scheduler.close());
  gateway = await startGateway({ nc, log, site, port: 0, token: admin, logger, timeoutMs: 10_000, longTimeoutMs: 30_000 });
  h.onClose(() => gateway.close());
  for (const [userId, role] of [['olga', 'operator'], ['bob', 'administrator']] as const) {
    expect((await call(admin, 'POST', '/v1/users', { userId, roles: [role] })).status).toBe(201);
    tokens[userId] = String((await call(admin, 'POST', '/v1/tokens', { userId, name: 'e2e' })).body.token);
  }
});

afterAll(async () => { await gateway?.close(); });

describe('immutable policies', () => {
  let policyId: string;
  let locked: string;
  let lockedUntil: Date;

  it('a restore point of an immutable policy is locked by the data mover until the end of its retention', async () => {
    const created = await call(tokens.olga!, 'POST', '/v1/policies', fields(true));
    expect(created.status).toBe(201);
    policyId = String(created.body.policyId);
    expect(await policyNow(policyId)).toMatchObject({ immutable: true });
    const { restorePointId, committedAt } = await committedBackup(policyId);
    locked = restorePointId;
    // Retention daily 7, weekly 2: the longest a point can be kept is two weeks after it.
    lockedUntil = immutabilityLockUntil(fields(true).retention, committedAt)!;
    expect(lockedUntil.getTime() - committedAt.getTime()).toBe(14 * 86_400_000);
    expect((await repos.default!.restorePointLockedUntil(restorePointId))?.toISOString()).toBe(lockedUntil.toISOString());
    const lockEvents = (await streamEvents(`restorepoint-${restorePointId}`)).filter((e) => e.type === 'RestorePointLocked');
    expect(lockEvents).toHaveLength(1);
    expect(lockEvents[0]).toMatchObject({ actor: { kind: 'service', id: `data-mover@${site}` }, data: { restorePointId, retainUntil: lockedUntil.toISOString() } });
    // The same work again (another redelivery): the lock holds already, nothing more is recorded.
    await redeliver(jobOf.get(restorePointId)!, policyId);
    expect((await streamEvents(`restorepoint-${restorePointId}`)).filter((e) => e.type === 'RestorePointLocked')).toHaveLength(1);
  });

  it('a backup transferred over NBD (real qemu-nbd) is locked right at its commit', { timeout: 60_000 }, async () => {
    const run = promisify(execFile);
    const image = join(base, 'disk.qcow2');
    await run('qemu-img', ['create', '-f', 'qcow2', image, String(4 * 1024 * 1024)]);
    await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 0 1048576', image]);
    const socket = join(base, 'nbd.sock');
    const server = spawn('qemu-nbd', ['-r', '-f', 'qcow2', '-t', '-e', '4', '-x', 'vda', '--socket', socket, image], { stdio: 'ignore' });
    h.onClose(() => server.kill('SIGKILL'));
    await waitFor(() => run('nbdinfo', [`nbd+unix:///vda?socket=${socket}`]).then(() => true), { what: 'qemu-nbd' });
    const jobId = randomUUID();
    const snapshotId = `snap-${jobId}`;
    const nbd = { socket, exports: [{ disk: 'vda', exportName: 'vda', sizeBytes: 4 * 1024 * 1024, mode: 'full' as const, reason: 'first backup' }] };
    const streamId = `job-${jobId}`;
    const meta = { site, actor: TEST, streamId, correlationId: jobId };
    await log.append(streamId, [
      newEvent('JobRequested', { jobId, vmId: 'vm1', policyId, mode: 'full', trigger: 'manual' }, meta),
      newEvent('JobStarted', { jobId, attempt: 1 }, meta),
      newEvent('SnapshotRequested', { jobId, vmId: 'vm1', snapshotId }, meta),
      newEvent('SnapshotTaken', { jobId, snapshotId, nbd }, meta),
      newEvent('TransferQueued', { jobId, snapshotId, queue: 'transfers' }, meta),
    ], { expectedRevision: 'no_stream' });
    const before = Date.now();
    expect(await mover.mover.transfer({ jobId, vmId: 'vm1', vmName: 'web-1', snapshotId, policyId, repository: 'default', mode: 'full', nbd })).toBe('committed');
    server.kill('SIGTERM');
    const commit = (await streamEvents(streamId)).find((e) => e.type === 'RestorePointCommitted');
    const restorePointId = commit?.type === 'RestorePointCommitted' ? commit.data.restorePointId : '';
    const until = await repos.default!.restorePointLockedUntil(restorePointId);
    expect(until!.getTime()).toBeGreaterThanOrEqual(immutabilityLockUntil(fields(true).retention, new Date(before))!.getTime());
    expect(until!.getTime()).toBeLessThanOrEqual(immutabilityLockUntil(fields(true).retention, new Date())!.getTime());
    expect((await streamEvents(`restorepoint-${restorePointId}`)).map((e) => [e.type, e.actor.id])).toEqual([['RestorePointLocked', `data-mover@${site}`]]);
  });

  it('an approved deletion of the locked restore point is refused; it stays', async () => {
    const asked = await call(tokens.bob!, 'POST', `/v1/restore-points/${locked}/deletion`, { reason: 'try' });
    expect(asked.status).toBe(202);
    const approved = await call(admin, 'POST', `/v1/approvals/${String(asked.body.approvalId)}/approve`);
    expect(approved).toMatchObject({ status: 409, body: { code: 'locked' } });
    expect(String(approved.body.detail)).toContain(lockedUntil.toISOString());
    expect((await call(admin, 'GET', `/v1/approvals/${String(asked.body.approvalId)}`)).body).toMatchObject({ status: 'failed' });
    expect((await repos.default!.listRestorePoints()).some((p) => p.id === locked)).toBe(true);
  });

  it('an immutable policy needs a retention by time', async () => {
    const r = await call(tokens.olga!, 'POST', '/v1/policies', { ...fields(true), name: 'last-only', retention: { daily: 0, weekly: 0, monthly: 0, yearly: 0, last: 5 } });
    expect(r).toMatchObject({ status: 400, body: { code: 'invalid_command' } });
    expect(JSON.stringify(r.body)).toMatch(/immutable needs a retention by time/);
  });

  it('UpdatePolicy over NATS cannot turn immutability off without a granted disable-immutability approval', async () => {
    const bus = new CommandBus(nc, { site, actor: { kind: 'user', id: 'mallory' } });
    const policy = { ...fields(false), policyId };
    expect(await bus.send('scheduler', 'UpdatePolicy', { policy })).toMatchObject({ accepted: false, error: { code: 'approval_required' } });
    // A granted approval of another kind (shorten-retention) for exactly this policy is not enough.
    const approvalId = randomUUID();
    const streamId = `approval-${approvalId}`;
    const [m, n]: Actor[] = [{ kind: 'user', id: 'mallory' }, { kind: 'user', id: 'nick' }];
    await log.append(streamId, [
      newEvent('ApprovalRequested', { approvalId, action: { kind: 'shorten-retention', policyId, policy }, requestedBy: 'mallory' }, { site, actor: m!, streamId }),
      newEvent('ApprovalGranted', { approvalId, approvedBy: 'nick' }, { site, actor: n!, streamId }),
    ], { expectedRevision: 'no_stream' });
    expect(await bus.send('scheduler', 'UpdatePolicy', { policy, approvalId })).toMatchObject({ accepted: false, error: { code: 'approval_required' } });
    // Nor is a shorter lock period (daily 7 weekly 2 → daily 7 weekly 0) without one.
    expect(await bus.send('scheduler', 'UpdatePolicy', { policy: { ...policy, immutable: true, retention: { ...policy.retention, weekly: 0 } } }))
      .toMatchObject({ accepted: false, error: { code: 'approval_required' } });
    expect(await policyNow(policyId)).toMatchObject({ immutable: true });
  });

  it('turning immutability off waits for a second administrator, then applies to later restore points only', async () => {
    const head = await log.headPosition();
    const asked = await call(tokens.bob!, 'POST', `/v1/policies/${policyId}`, fields(false));
    expect(asked).toMatchObject({ status: 202, body: { status: 'pending', requestedBy: 'bob', action: { kind: 'disable-immutability', policyId } } });
    const approvalId = String(asked.body.approvalId);
    expect(await policyNow(policyId)).toMatchObject({ immutable: true });
    // The requester cannot approve; an operator cannot either.
    expect(await call(tokens.bob!, 'POST', `/v1/approvals/${approvalId}/approve`)).toMatchObject({ status: 403, body: { code: 'four_eyes' } });
    expect((await call(tokens.olga!, 'POST', `/v1/approvals/${approvalId}/approve`)).status).toBe(403);
    // Still immutable meanwhile: a backup now is locked.
    const during = await committedBackup(policyId);
    expect(await repos.default!.restorePointLockedUntil(during.restorePointId)).toBeDefined();
    expect(await call(admin, 'POST', `/v1/approvals/${approvalId}/approve`)).toMatchObject({ status: 200, body: { status: 'done', approvedBy: 'admin' } });
    expect(await policyNow(policyId)).toMatchObject({ immutable: false });
    const types = (await eventsSince(head)).filter((e) => e.streamId.startsWith('approval-') || e.streamId.startsWith('policy-')).map((e) => [e.type, e.actor.id]);
    expect(types).toEqual([
      ['ApprovalRequested', 'bob'], ['AccessDenied', 'bob'], ['AccessDenied', 'olga'], ['ApprovalGranted', 'admin'], ['PolicyUpdated', 'admin'], ['ApprovalExecuted', 'admin'],
    ].filter(([t]) => t !== 'AccessDenied'));
    // A later backup is not locked; the earlier locks stay as they were.
    const after = await committedBackup(policyId);
    expect(await repos.default!.restorePointLockedUntil(after.restorePointId)).toBeUndefined();
    expect((await streamEvents(`restorepoint-${after.restorePointId}`)).some((e) => e.type === 'RestorePointLocked')).toBe(false);
    expect((await repos.default!.restorePointLockedUntil(locked))?.toISOString()).toBe(lockedUntil.toISOString());
    // Turning it on again needs nobody's approval.
    expect((await call(tokens.olga!, 'POST', `/v1/policies/${policyId}`, fields(true))).status).toBe(200);
    expect(await policyNow(policyId)).toMatchObject({ immutable: true });
  });

  it('the CLI: cairn policy immutable off asks for an approval; retention changes keep immutability', { timeout: 120_000 }, async () => {
    const api = ['--gateway', gateway.url, '--token', tokens.olga!];
    const env = { CAIRN_DATA: '/nonexistent-cairn-data' };
    const longer = await cli(['policy', 'retention', policyId, '--keep-daily', '9', ...api], env);
    expect(longer).toMatchObject({ code: 0, stdout: expect.stringMatching(/updated/) as unknown });
    expect(await policyNow(policyId)).toMatchObject({ immutable: true });
    const off = await cli(['--json', 'policy', 'immutable', policyId, 'off', ...api], env);
    expect(off.code).toBe(0);
    expect(JSON.parse(off.stdout)).toMatchObject({ status: 'pending', requestedBy: 'olga', action: { kind: 'disable-immutability', policyId } });
    expect(await policyNow(policyId)).toMatchObject({ immutable: true });
  });
});

describe('deleting a repository', () => {
  it('DeleteRepository over NATS is refused without a granted approval', async () => {
    const bus = new CommandBus(nc, { site, actor: { kind: 'user', id: 'mallory' } });
    expect(await bus.send('data-mover', 'DeleteRepository', { repository: 'spare', approvalId: randomUUID() }))
      .toMatchObject({ accepted: false, error: { code: 'approval_required' } });
    // Asked and "granted" by the same person: refused.
    const approvalId = randomUUID();
    const streamId = `approval-${approvalId}`;
    const m: Actor = { kind: 'user', id: 'mallory' };
    await log.append(streamId, [
      newEvent('ApprovalRequested', { approvalId, action: { kind: 'delete-repository', repository: 'spare' }, requestedBy: 'mallory' }, { site, actor: m, streamId }),
      newEvent('ApprovalGranted', { approvalId, approvedBy: 'mallory' }, { site, actor: m, streamId }),
    ], { expectedRevision: 'no_stream' });
    expect(await bus.send('data-mover', 'DeleteRepository', { repository: 'spare', approvalId }))
      .toMatchObject({ accepted: false, error: { code: 'approval_required' } });
    expect(await repos.spare!.listRestorePoints()).toBeDefined();
  });

  it('is refused while a lock is live, naming the latest lock end', async () => {
    const asked = await call(tokens.bob!, 'POST', '/v1/repositories/default/deletion', { reason: 'decommission' });
    expect(asked).toMatchObject({ status: 202, body: { status: 'pending', action: { kind: 'delete-repository', repository: 'default' } } });
    const approved = await call(admin, 'POST', `/v1/approvals/${String(asked.body.approvalId)}/approve`);
    expect(approved).toMatchObject({ status: 409, body: { code: 'locked' } });
    const latest = await repos.default!.latestLock();
    expect(String(approved.body.detail)).toContain(latest!.toISOString());
    expect((await repos.default!.listRestorePoints()).length).toBeGreaterThan(0);
  });

  it('with no live lock: waits for a second administrator, then everything goes, both recorded', { timeout: 120_000 }, async () => {
    const { restorePointId } = await committedBackup(null, 'spare');
    const head = await log.headPosition();
    const api = (token: string) => ['--gateway', gateway.url, '--token', token];
    const env = { CAIRN_DATA: '/nonexistent-cairn-data' };
    const asked = await cli(['--json', 'repo', 'delete', 'spare', '--reason', 'retired', ...api(tokens.bob!)], env);
    expect(asked.code).toBe(0);
    const approvalId = String((JSON.parse(asked.stdout) as { approvalId: string }).approvalId);
    const self = await cli(['approval', 'approve', approvalId, ...api(tokens.bob!)], env);
    expect(self.code).not.toBe(0);
    expect(self.stderr).toMatch(/second administrator/);
    expect((await repos.spare!.listRestorePoints()).map((p) => p.id)).toContain(restorePointId);
    const repositoryId = repos.spare!.repositoryId;
    const done = await cli(['--json', 'approval', 'approve', approvalId, ...api(admin)], env);
    expect(done.code).toBe(0);
    expect(JSON.parse(done.stdout)).toMatchObject({ status: 'done', approvedBy: 'admin', requestedBy: 'bob' });
    // Nothing is left in the repository's directory but empty folders and the `deleted` marker,
    // which tells whoever opens the location later what happened and by whom.
    const files = (await readdir(join(base, 'spare'), { recursive: true, withFileTypes: true })).filter((e) => e.isFile());
    expect(files.map((f) => f.name)).toEqual(['deleted']);
    expect(JSON.parse(await readFile(join(base, 'spare', 'deleted'), 'utf8'))).toMatchObject({ repositoryId: repos.spare!.repositoryId, approvalId, requestedBy: 'bob', approvedBy: 'admin' });
    for (const reopen of [
      () => openRepository(new DirectoryBackend(join(base, 'spare')), { passphrase: 'pw' }),
      () => initRepository(new DirectoryBackend(join(base, 'spare')), { passphrase: 'pw', kdf: { N: 1024 } }),
    ]) {
      const e = await reopen().then(() => undefined, (err: unknown) => err);
      expect(e).toBeInstanceOf(RepositoryDeletedError);
      expect((e as Error).message).toMatch(/was deleted at .* \(requested by bob, approved by admin/);
    }
    const deleted = (await streamEvents(`repository-${repositoryId}`)).find((e) => e.type === 'RepositoryDeleted');
    expect(deleted).toMatchObject({ actor: { id: 'admin' }, data: { repository: 'spare', repositoryId, approvalId, requestedBy: 'bob', approvedBy: 'admin', restorePointsDeleted: 1 } });
    expect((await eventsSince(head)).filter((e) => e.streamId === `approval-${approvalId}` || e.type === 'RepositoryDeleted').map((e) => [e.type, e.actor.id])).toEqual([
      ['ApprovalRequested', 'bob'], ['AccessDenied', 'bob'], ['ApprovalGranted', 'admin'], ['RepositoryDeleted', 'admin'], ['ApprovalExecuted', 'admin'],
    ].filter(([t]) => t !== 'AccessDenied'));
    // The data mover says the repository is gone, and its rounds (GC, retention) pass it by.
    expect(mover.health()).toMatchObject({ deletedRepositories: { spare: expect.stringContaining(approvalId) as unknown } });
    await mover.mover.collectGarbage(0);
    await mover.mover.expire(restorePointId, 'spare');
    const again = await committedBackup(null, 'default');
    expect(again.restorePointId).toBeDefined();
    // In the audit trail with both people.
    await settled();
    const audit = await cli(['--json', 'audit', '--nats', natsUrl, '--site', site], env);
    expect(audit.code).toBe(0);
    const entries = JSON.parse(audit.stdout) as Array<{ type: string; actor: { id: string } | string; data: Record<string, unknown> }>;
    expect(entries.find((e) => e.type === 'RepositoryDeleted')?.data).toMatchObject({ repository: 'spare', requestedBy: 'bob', approvedBy: 'admin' });
    expect(entries.some((e) => e.type === 'ApprovalRequested' && e.data.approvalId === approvalId)).toBe(true);
  });

  it('a second deletion of a deleted repository says it is gone', async () => {
    const asked = await call(tokens.bob!, 'POST', '/v1/repositories/spare/deletion', {});
    const r = await call(admin, 'POST', `/v1/approvals/${String(asked.body.approvalId)}/approve`);
    expect(r).toMatchObject({ status: 404 });
    expect(String(r.body.detail)).toMatch(/was deleted already/);
    await waitFor(async () => ((await call(admin, 'GET', `/v1/approvals/${String(asked.body.approvalId)}`)).body.status === 'failed' ? true : undefined), { what: 'the failed approval' });
  });
});
