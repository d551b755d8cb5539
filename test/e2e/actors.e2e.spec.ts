// Actors along a job: a backup asked through the gateway by an operator is recorded with that
// person as the actor of JobRequested (caused by the command); the scheduler's own steps and the
// commands it sends on (RequestSnapshot to the coordinator) carry its service identity, in the
// job's correlation, each caused by the event or command before, so every event of the job
// leads back to the person. Real nats-server, JetStream log, catalogue, scheduler and gateway;
// the snapshot coordinator is a fake that records the command's actor and refuses it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { newEvent, type Actor } from '@cairn/contracts';
import { createJetStreamEventLog, type JetStreamEventLog } from '@cairn/eventlog';
import { CommandFailedError, JetStreamServer } from '@cairn/messaging';
import { useHarness, waitFor } from '@cairn/testing';
import { startCatalogue, type RunningCatalogue } from '@cairn/catalogue';
import { startScheduler } from '@cairn/scheduler';
import { startGateway, type RunningGateway } from '@cairn/gateway';
import { pino } from 'pino';
import { gatewayCall } from './e2e-helpers.ts';

const site = 'site-actors';
const admin = 'actors-bootstrap-0123456789';
const h = useHarness();
const logger = pino({ level: 'silent' });
let nc: NatsConnection;
let log: JetStreamEventLog;
let gateway: RunningGateway;
let catalogue: RunningCatalogue;
const snapshotCommands: Array<{ actor: Actor; commandId: string }> = [];

const call = (token: string, method: 'GET' | 'POST', path: string, body?: unknown) => gatewayCall(gateway.url, token, method, path, body);

beforeAll(async () => {
  const nats = await h.nats();
  nc = await connect({ servers: nats.url });
  h.onClose(() => nc.drain());
  log = await createJetStreamEventLog({ nc, site });
  h.onClose(() => log.close());
  await log.append('vm-vm1', [newEvent('VmDiscovered', {
    vmId: 'vm1', name: 'web-1', hypervisor: { kind: 'qemu', host: 'h1' }, tags: [], disks: [{ name: 'vda', sizeBytes: 1 << 20 }],
  }, { site, actor: { kind: 'service', id: 'snapshot-coordinator@site-actors' }, streamId: 'vm-vm1' })], { expectedRevision: 'no_stream' });
  catalogue = await startCatalogue({ nc, site, dataDir: ':memory:', log, logger });
  h.onClose(() => catalogue.close());
  const coordinator = new JetStreamServer({ connection: nc, site, actor: { kind: 'service', id: 'fake-coordinator' } });
  coordinator.addCommandHandler('snapshot-coordinator', 'RequestSnapshot', async (_p, ctx) => {
    snapshotCommands.push({ actor: ctx.actor, commandId: ctx.command.id });
    throw new CommandFailedError('conflict', 'test: no snapshot here');
  });
  coordinator.addCommandHandler('snapshot-coordinator', 'ReleaseSnapshot', async () => undefined);
  await new Promise<void>((resolve, reject) => { void coordinator.listen((e?: unknown) => (e ? reject(e) : resolve())); });
  h.onClose(() => coordinator.close());
  const scheduler = await startScheduler({ nc, log, config: { site, repositories: ['default'] }, logger });
  h.onClose(() => scheduler.close());
  gateway = await startGateway({ nc, log, site, port: 0, token: admin, logger, timeoutMs: 10_000 });
  h.onClose(() => gateway.close());
});

afterAll(async () => { await gateway?.close(); });

describe('actors along a job', () => {
  it('the person who asked is the actor of JobRequested; every later event is the scheduler\'s, correlated and caused', async () => {
    expect((await call(admin, 'POST', '/v1/users', { userId: 'olga', roles: ['operator'] })).status).toBe(201);
    const token = String((await call(admin, 'POST', '/v1/tokens', { userId: 'olga', name: 'e2e' })).body.token);
    const accepted = await call(token, 'POST', '/v1/backups', { vmId: 'vm1' });
    expect(accepted.status).toBe(202);
    const jobId = String(accepted.body.jobId);

    const events = await waitFor(async () => {
      const out = [];
      for await (const r of log.readStream(`job-${jobId}`)) out.push(r.event);
      return out.some((e) => e.type === 'JobFailed') ? out : undefined;
    }, { timeoutMs: 60_000, what: `job ${jobId} to end` });

    const scheduler = { kind: 'service', id: `scheduler@${site}` };
    expect(events[0]).toMatchObject({ type: 'JobRequested', actor: { kind: 'user', id: 'olga' }, correlationId: jobId });
    expect(events[0]!.causationId).toEqual(expect.any(String)); // the RequestBackup command
    for (const e of events.slice(1)) {
      expect({ type: e.type, actor: e.actor, correlationId: e.correlationId }).toEqual({ type: e.type, actor: scheduler, correlationId: jobId });
      expect(e.causationId, `${e.type} is caused by something`).toEqual(expect.any(String));
    }
    expect(events.map((e) => e.type)).toEqual(expect.arrayContaining(['JobRequested', 'JobStarted', 'JobFailed']));
    // The command the scheduler sent on carries its own identity.
    expect(snapshotCommands.length).toBeGreaterThan(0);
    expect(snapshotCommands.every((c) => c.actor.kind === 'service' && c.actor.id === scheduler.id)).toBe(true);
    // The audit timeline finds the job by its requester.
    await catalogue.service.projector.waitForPosition(await log.headPosition());
    const byOlga = (await call(admin, 'GET', `/v1/audit?actor=olga&correlationId=${jobId}`)).body.items as Array<{ type: string }>;
    expect(byOlga.map((e) => e.type)).toEqual(['JobRequested']);
  });
});
