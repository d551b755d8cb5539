// The gateway end to end over HTTP, with a real nats-server, the JetStream event log, a running
// catalogue, and a fake scheduler registered on the command bus: authentication, queries,
// validation at the edge (problem JSON), and commands turned into 202/201 with their ids.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { newEvent, type CairnEvent, type EventDataMap, type EventType } from '@cairn/contracts';
import { createJetStreamEventLog, type JetStreamEventLog } from '@cairn/eventlog';
import { CommandFailedError, JetStreamServer, type CommandContext } from '@cairn/messaging';
import { useHarness } from '@cairn/testing';
import { startCatalogue } from '@cairn/catalogue';
import { gatewayOpenApiText, startGateway, type RunningGateway } from '@cairn/gateway';
import { pino } from 'pino';

const site = 'site-e2e';
const token = 'test-token-0123456789abcdef';
const h = useHarness();
const logger = pino({ level: 'silent' });
let nc: NatsConnection;
let log: JetStreamEventLog;
let gateway: RunningGateway;
const received: { name: string; payload: unknown; actor: unknown; traceparent: string | undefined; key: string }[] = [];

function ev<K extends EventType>(type: K, data: EventDataMap[K], streamId: string): CairnEvent {
  return newEvent(type, data, { site, streamId, actor: { kind: 'service', id: 'test' } });
}

async function call(path: string, init: RequestInit & { auth?: string | false } = {}) {
  const headers = new Headers(init.headers);
  if (init.auth !== false) headers.set('Authorization', `Bearer ${init.auth ?? token}`);
  if (init.body !== undefined && !headers.has('Content-Type')) headers.set('Content-Type', 'application/json');
  const res = await fetch(`${gateway.url}${path}`, { ...init, headers });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) as Record<string, unknown> : undefined };
}

beforeAll(async () => {
  const nats = await h.nats();
  nc = await connect({ servers: nats.url });
  h.onClose(() => nc.drain());
  log = await createJetStreamEventLog({ nc, site });
  h.onClose(() => log.close());
  await log.append('vm-vm1', [ev('VmDiscovered', { vmId: 'vm1', name: 'web-1', hypervisor: { kind: 'qemu', host: 'h1' }, tags: [], disks: [{ name: 'vda', sizeBytes: 1 << 20 }] }, 'vm-vm1')], { expectedRevision: 'no_stream' });
  await log.append('job-j1', [ev('JobRequested', { jobId: 'j1', vmId: 'vm1', policyId: null, mode: 'full', trigger: 'manual' }, 'job-j1')], { expectedRevision: 'no_stream' });

  const catalogue = await startCatalogue({ nc, site, dataDir: ':memory:', log, logger });
  h.onClose(() => catalogue.close());
  await catalogue.service.projector.waitForPosition(await log.headPosition());

  // A fake scheduler: accepts backups of known VMs, refuses the rest, creates policies.
  const scheduler = new JetStreamServer({ connection: nc, site, actor: { kind: 'service', id: 'fake-scheduler' } });
  const record = (name: string) => (payload: unknown, ctx: CommandContext) => {
    received.push({ name, payload, actor: ctx.actor, traceparent: ctx.trace?.traceparent, key: ctx.idempotencyKey });
  };
  scheduler.addCommandHandler('scheduler', 'RequestBackup', async (payload, ctx) => {
    record('RequestBackup')(payload, ctx);
    if ((payload as { vmId: string }).vmId === 'ghost') throw new CommandFailedError('not_found', 'no VM ghost on this site');
    return { jobId: 'job-from-fake' };
  });
  scheduler.addCommandHandler('scheduler', 'CreatePolicy', async (payload, ctx) => {
    record('CreatePolicy')(payload, ctx);
    return { policyId: 'p-new' };
  });
  await new Promise<void>((resolve, reject) => { void scheduler.listen((e?: unknown) => (e ? reject(e) : resolve())); });
  h.onClose(() => scheduler.close());

  gateway = await startGateway({ nc, site, port: 0, token, logger, bodyLimitBytes: 4096, timeoutMs: 3000, longTimeoutMs: 3000 });
  h.onClose(() => gateway.close());
});

afterAll(async () => { await gateway?.close(); });

describe('gateway: authentication', () => {
  it('refuses a request without the token with 401 problem JSON', async () => {
    const r = await call('/v1/vms', { auth: false });
    expect(r.status).toBe(401);
    expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(r.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(r.body).toMatchObject({ status: 401, title: 'Unauthorized', instance: '/v1/vms' });
  });

  it('refuses a wrong token', async () => {
    expect((await call('/v1/jobs', { auth: 'not-the-token-at-all' })).status).toBe(401);
  });

  it('serves health and the OpenAPI document without a token', async () => {
    // The wrong tokens just tried leave an AuthFailed event the catalogue projects a moment
    // later: health reports that lag until it has.
    let health = await call('/health', { auth: false });
    for (let i = 0; i < 100 && (health.body?.catalogue as { lag?: number } | undefined)?.lag !== 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      health = await call('/health', { auth: false });
    }
    expect(health).toMatchObject({ status: 200, body: { status: 'ok', site, nats: 'connected', catalogue: { reachable: true, lag: 0 } } });
    const doc = await call('/openapi.json', { auth: false });
    expect(doc.status).toBe(200);
    expect(JSON.parse(gatewayOpenApiText())).toEqual(doc.body);
    expect(Object.keys(doc.body?.paths as object)).toEqual(expect.arrayContaining(['/v1/vms', '/v1/jobs/{jobId}', '/v1/backups']));
  });
});

describe('gateway: catalogue queries', () => {
  it('returns catalogue data', async () => {
    const vms = await call('/v1/vms');
    expect(vms.status).toBe(200);
    expect(vms.body).toMatchObject({ items: [{ vmId: 'vm1', name: 'web-1', disks: [{ name: 'vda' }] }] });
    const jobs = await call('/v1/jobs?state=requested&limit=5');
    expect(jobs.body).toMatchObject({ items: [{ jobId: 'j1', state: 'requested' }] });
    const job = await call('/v1/jobs/j1');
    expect(job.body).toMatchObject({ jobId: 'j1', phases: [{ phase: 'schedule', state: 'running' }], events: [{ type: 'JobRequested' }] });
    const audit = await call('/v1/audit?correlationId=job-j1');
    expect((audit.body?.items as unknown[]).length).toBe(1);
  });

  it('answers 404 problem JSON for an unknown id and 400 for a bad query string', async () => {
    expect(await call('/v1/jobs/nope')).toMatchObject({ status: 404, body: { status: 404, code: 'not_found' } });
    const bad = await call('/v1/jobs?limit=many&colour=red');
    expect(bad.status).toBe(400);
    expect(bad.body?.errors).toEqual(expect.arrayContaining([expect.objectContaining({ path: expect.stringMatching(/^query\//) })]));
  });

  it('answers 404 problem JSON for an unknown route', async () => {
    expect(await call('/v1/nothing-here')).toMatchObject({ status: 404, body: { status: 404 } });
  });
});

describe('gateway: commands', () => {
  it('POST /v1/backups with an invalid body is a 400 problem listing the fields, and sends nothing', async () => {
    const before = received.length;
    const r = await call('/v1/backups', { method: 'POST', body: JSON.stringify({ vmId: 'not an id!', mode: 'sometimes', extra: 1 }) });
    expect(r.status).toBe(400);
    expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    const paths = (r.body?.errors as { path: string }[]).map((e) => e.path);
    expect(paths).toEqual(expect.arrayContaining(['body/vmId', 'body/mode']));
    expect(received.length).toBe(before);
  });

  it('refuses malformed JSON, a missing body, a non-JSON body and an oversized body', async () => {
    expect((await call('/v1/backups', { method: 'POST', body: '{"vmId":' })).status).toBe(400);
    expect((await call('/v1/backups', { method: 'POST' })).status).toBe(400);
    const text = await call('/v1/backups', { method: 'POST', body: 'vmId=vm1', headers: { 'Content-Type': 'text/plain' } });
    expect(text).toMatchObject({ status: 415, body: { status: 415 } });
    const big = await call('/v1/backups', { method: 'POST', body: JSON.stringify({ vmId: 'vm1', pad: 'x'.repeat(10_000) }) });
    expect(big).toMatchObject({ status: 413, body: { status: 413 } });
  });

  it('POST /v1/backups sends RequestBackup and answers 202 with the job id', async () => {
    const traceId = 'a'.repeat(32);
    const r = await call('/v1/backups', {
      method: 'POST', body: JSON.stringify({ vmId: 'vm1' }),
      headers: { 'Idempotency-Key': 'backup-vm1-1', traceparent: `00-${traceId}-${'b'.repeat(16)}-01` },
    });
    expect(r.status).toBe(202);
    expect(r.body).toEqual({ jobId: 'job-from-fake', href: '/v1/jobs/job-from-fake' });
    expect(r.headers.get('location')).toBe('/v1/jobs/job-from-fake');
    const sent = received.at(-1)!;
    expect(sent).toMatchObject({ name: 'RequestBackup', payload: { vmId: 'vm1', mode: 'auto' }, actor: { kind: 'user', id: 'admin' }, key: 'backup-vm1-1' });
    expect(sent.traceparent?.split('-')[1]).toBe(traceId);
  });

  it('a refusal by the scheduler becomes a problem with its status', async () => {
    const r = await call('/v1/backups', { method: 'POST', body: JSON.stringify({ vmId: 'ghost', mode: 'full' }) });
    expect(r).toMatchObject({ status: 404, body: { code: 'not_found', detail: expect.stringContaining('no VM ghost') } });
  });

  it('POST /v1/policies sends CreatePolicy and answers 201 with the policy id', async () => {
    const policy = {
      name: 'nightly', selector: { names: ['web-1'] }, schedule: { cron: '0 2 * * *', timezone: 'UTC' },
      retention: { daily: 7, weekly: 4, monthly: 0, yearly: 0, last: 3 }, repository: 'local', keyRef: 'default', priority: 5,
    };
    const r = await call('/v1/policies', { method: 'POST', body: JSON.stringify(policy) });
    expect(r).toMatchObject({ status: 201, body: { policyId: 'p-new', href: '/v1/policies/p-new' } });
    expect(received.at(-1)).toMatchObject({ name: 'CreatePolicy', payload: policy });
  });

  it('a command nobody answers is a 503 problem that says what to start', async () => {
    const r = await call('/v1/restores', { method: 'POST', body: JSON.stringify({ restorePointId: 'rp1', disk: 'vda', target: { kind: 'file', path: '/tmp/x.raw' } }) });
    expect(r).toMatchObject({ status: 503, body: { code: 'unavailable', detail: expect.stringContaining('data-mover') } });
  });
});
