// Four-eyes on shortening a policy's retention, end to end with the real scheduler: a longer
// retention is applied at once; a shorter one changes nothing until an administrator other than
// the requester approves, and then exactly the requested policy is applied, by the approver.
// UpdatePolicy sent straight over NATS cannot shorten retention without such an approval.
// Real nats-server, JetStream log, catalogue, scheduler and gateway.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { newEvent, type Actor } from '@cairn/contracts';
import { createJetStreamEventLog, type JetStreamEventLog } from '@cairn/eventlog';
import { CommandBus } from '@cairn/messaging';
import { useHarness, waitFor } from '@cairn/testing';
import { startCatalogue, type RunningCatalogue } from '@cairn/catalogue';
import { startScheduler } from '@cairn/scheduler';
import { startGateway, type RunningGateway } from '@cairn/gateway';
import { pino } from 'pino';
import { cli, gatewayCall } from './e2e-helpers.ts';

const site = 'site-ret';
const admin = 'retention-bootstrap-0123456789';
const h = useHarness();
const logger = pino({ level: 'silent' });
let nc: NatsConnection;
let log: JetStreamEventLog;
let catalogue: RunningCatalogue;
let gateway: RunningGateway;
const tokens: Record<string, string> = {};

const call = (token: string, method: 'GET' | 'POST', path: string, body?: unknown) => gatewayCall(gateway.url, token, method, path, body);

const retention = (daily: number, last = 3) => ({ daily, weekly: 0, monthly: 0, yearly: 0, last });
const fields = (daily: number) => ({
  name: 'nightly', selector: { names: ['web-1'] }, schedule: { cron: '0 2 * * *', timezone: 'UTC' },
  retention: retention(daily), repository: 'default', keyRef: 'default', priority: 1,
});

async function policyNow(policyId: string) {
  await catalogue.service.projector.waitForPosition(await log.headPosition());
  return (await call(tokens.olga!, 'GET', `/v1/policies/${policyId}`)).body as { version: number; retention: { daily: number } };
}

async function typesSince(position: bigint) {
  const out: Array<[string, string]> = [];
  for await (const r of log.readAll({ fromPosition: position })) out.push([r.event.type, r.event.actor.id]);
  return out.filter(([t]) => t !== 'SignedIn');
}

beforeAll(async () => {
  const nats = await h.nats();
  nc = await connect({ servers: nats.url });
  h.onClose(() => nc.drain());
  log = await createJetStreamEventLog({ nc, site });
  h.onClose(() => log.close());
  catalogue = await startCatalogue({ nc, site, dataDir: ':memory:', log, logger });
  h.onClose(() => catalogue.close());
  const scheduler = await startScheduler({ nc, log, config: { site, repositories: ['default'] }, logger });
  h.onClose(() => scheduler.close());
  gateway = await startGateway({ nc, log, site, port: 0, token: admin, logger, timeoutMs: 10_000 });
  h.onClose(() => gateway.close());
  for (const [userId, role] of [['olga', 'operator'], ['bob', 'administrator']] as const) {
    expect((await call(admin, 'POST', '/v1/users', { userId, roles: [role] })).status).toBe(201);
    tokens[userId] = String((await call(admin, 'POST', '/v1/tokens', { userId, name: 'e2e' })).body.token);
  }
});

afterAll(async () => { await gateway?.close(); });

describe('four-eyes: shortening a policy\'s retention', () => {
  let policyId: string;

  it('a longer retention is applied at once, by the operator', async () => {
    const created = await call(tokens.olga!, 'POST', '/v1/policies', fields(7));
    expect(created.status).toBe(201);
    policyId = String(created.body.policyId);
    expect((await call(tokens.olga!, 'POST', `/v1/policies/${policyId}`, fields(14))).status).toBe(200);
    expect(await policyNow(policyId)).toMatchObject({ version: 2, retention: { daily: 14 } });
  });

  it('a shorter one waits for an administrator other than the requester, then exactly it is applied', async () => {
    const head = await log.headPosition();
    const asked = await call(tokens.olga!, 'POST', `/v1/policies/${policyId}`, fields(2));
    expect(asked).toMatchObject({ status: 202, body: { status: 'pending', requestedBy: 'olga', action: { kind: 'shorten-retention', policyId } } });
    const approvalId = String(asked.body.approvalId);
    expect(await policyNow(policyId)).toMatchObject({ version: 2, retention: { daily: 14 } });
    // The operator cannot approve (not an administrator); nothing changed.
    expect((await call(tokens.olga!, 'POST', `/v1/approvals/${approvalId}/approve`)).status).toBe(403);
    expect(await call(tokens.bob!, 'POST', `/v1/approvals/${approvalId}/approve`)).toMatchObject({ status: 200, body: { status: 'done', approvedBy: 'bob' } });
    expect(await policyNow(policyId)).toMatchObject({ version: 3, retention: { daily: 2 } });
    expect(await typesSince(head)).toEqual([
      ['ApprovalRequested', 'olga'], ['AccessDenied', 'olga'], ['ApprovalGranted', 'bob'], ['PolicyUpdated', 'bob'], ['ApprovalExecuted', 'bob'],
    ]);
  });

  it('the administrator who asked cannot approve their own shortening', async () => {
    const asked = await call(tokens.bob!, 'POST', `/v1/policies/${policyId}`, fields(1));
    expect(asked.status).toBe(202);
    const self = await call(tokens.bob!, 'POST', `/v1/approvals/${String(asked.body.approvalId)}/approve`);
    expect(self).toMatchObject({ status: 403, body: { code: 'four_eyes' } });
    expect(await policyNow(policyId)).toMatchObject({ version: 3, retention: { daily: 2 } });
    expect((await call(admin, 'POST', `/v1/approvals/${String(asked.body.approvalId)}/approve`)).status).toBe(200);
    await waitFor(async () => ((await policyNow(policyId)).retention.daily === 1 ? true : undefined), { what: 'the approved policy in the catalogue' });
  });

  it('UpdatePolicy over NATS cannot shorten retention without a granted approval for exactly that policy', async () => {
    const bus = new CommandBus(nc, { site, actor: { kind: 'user', id: 'mallory' } });
    const policy = { ...fields(0), policyId };
    expect(await bus.send('scheduler', 'UpdatePolicy', { policy })).toMatchObject({ accepted: false, error: { code: 'approval_required' } });
    // Approved for another retention: not this one.
    const approvalId = randomUUID();
    const streamId = `approval-${approvalId}`;
    const [m, n]: Actor[] = [{ kind: 'user', id: 'mallory' }, { kind: 'user', id: 'nick' }];
    await log.append(streamId, [
      newEvent('ApprovalRequested', { approvalId, action: { kind: 'shorten-retention', policyId, policy: { ...fields(1), policyId } }, requestedBy: 'mallory' }, { site, actor: m!, streamId }),
      newEvent('ApprovalGranted', { approvalId, approvedBy: 'nick' }, { site, actor: n!, streamId }),
    ], { expectedRevision: 'no_stream' });
    expect(await bus.send('scheduler', 'UpdatePolicy', { policy, approvalId })).toMatchObject({ accepted: false, error: { code: 'approval_required' } });
    expect(await policyNow(policyId)).toMatchObject({ retention: { daily: 1 } });
  });
});

describe('the CLI', () => {
  it('cairn policy retention: longer at once, shorter asks for an approval', { timeout: 120_000 }, async () => {
    const policyId = String((await call(tokens.olga!, 'POST', '/v1/policies', { ...fields(5), name: 'cli' })).body.policyId);
    const api = ['--gateway', gateway.url, '--token', tokens.olga!];
    const longer = await cli(['policy', 'retention', policyId, '--keep-daily', '9', ...api], { CAIRN_DATA: '/nonexistent-cairn-data' });
    expect(longer).toMatchObject({ code: 0, stdout: expect.stringMatching(/updated/) as unknown });
    expect(await policyNow(policyId)).toMatchObject({ retention: { daily: 9, last: 3 } });
    const shorter = await cli(['--json', 'policy', 'retention', policyId, '--keep-last', '1', ...api], { CAIRN_DATA: '/nonexistent-cairn-data' });
    expect(shorter.code).toBe(0);
    expect(JSON.parse(shorter.stdout)).toMatchObject({ status: 'pending', requestedBy: 'olga', action: { kind: 'shorten-retention', policyId } });
    expect(await policyNow(policyId)).toMatchObject({ retention: { daily: 9, last: 3 } });
  });
});
