import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Controller, Module, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Ctx, Payload } from '@nestjs/microservices';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Kvm, type KV } from '@nats-io/kv';
import { Refusal, commandSubject, type CommandPayloadMap, type KnownEvent } from '@cairn/contracts';
import { useHarness, waitFor } from '@cairn/testing';
import { CommandBus } from './command-bus.ts';
import { CommandHandler, JetStreamHandler } from './decorators.ts';
import { CommandFailedError, CommandNoRespondersError, CommandTimeoutError, MessageTooLargeError, NonRetryableError } from './errors.ts';
import type { CommandContext, JetStreamContext } from './handler-context.ts';
import { JetStreamClient } from './jetstream-client.ts';
import { JetStreamServer } from './jetstream.server.ts';
import { ACTOR, EVENTS, SITE, deadLetters, jobStarted, jobSubject, openSite, type TestSite } from './testing/site.ts';

const MAX_BYTES = 16 * 1024;

async function countKeys(kv: KV): Promise<number> {
  let n = 0;
  for await (const _ of await kv.keys()) n++;
  return n;
}
const calls: Array<{ payload: unknown; actor: string; key: string; traceparent?: string }> = [];
const events: KnownEvent[] = [];
const JOB = `j${randomUUID().slice(0, 8)}`;
let slowRelease: (() => void) | undefined;

@Controller()
class SchedulerCommands {
  @CommandHandler('scheduler', 'RequestBackup')
  requestBackup(@Payload() payload: CommandPayloadMap['RequestBackup'], @Ctx() ctx: CommandContext) {
    calls.push({ payload, actor: ctx.actor.id, key: ctx.idempotencyKey, ...(ctx.trace ? { traceparent: ctx.trace.traceparent } : {}) });
    return { jobId: `job-for-${payload.vmId}-${calls.length}` };
  }

  @CommandHandler('scheduler', 'CancelJob')
  async cancelJob(@Payload() payload: CommandPayloadMap['CancelJob']) {
    if (payload.jobId === 'slow') await new Promise<void>((r) => { slowRelease = r; });
    if (payload.jobId === 'boom') throw new Error('database exploded');
    // A rule's refusal (what services throw): the caller's error, with no try/catch in the handler.
    if (payload.jobId === 'ended') throw new Refusal('conflict', 'job ended has ended', { jobId: 'ended' });
    throw new CommandFailedError('not_found', `no job ${payload.jobId}`, { jobId: payload.jobId });
  }

  @JetStreamHandler({ stream: EVENTS, durable: 'nest-jobs', filterSubject: jobSubject(JOB), ackWaitMs: 2000, backoffMs: [50] })
  onJobEvent(@Payload() event: KnownEvent, @Ctx() ctx: JetStreamContext) {
    const attempt = event.type === 'JobStarted' ? event.data.attempt : 0;
    if (attempt === 2) throw new NonRetryableError('attempt 2 is refused');
    if (attempt === 3 && ctx.deliveryCount === 1) throw new Error('flaky');
    events.push(event);
  }
}

const releases: string[] = [];

/** A handler idempotent by the snapshot id in its payload: no reply store. */
@Controller()
class CoordinatorCommands {
  @CommandHandler('snapshot-coordinator', 'ReleaseSnapshot', { replyStore: false })
  releaseSnapshot(@Payload() payload: CommandPayloadMap['ReleaseSnapshot']) {
    releases.push(payload.snapshotId);
    return undefined;
  }
}

@Module({ controllers: [SchedulerCommands, CoordinatorCommands] })
class SchedulerModule {}

describe('commands and the Nest transport', () => {
  const h = useHarness();
  let site: TestSite;
  let app: INestMicroservice;
  let nc: NatsConnection;
  let bus: CommandBus;

  beforeAll(async () => {
    const nats = await h.nats();
    site = await openSite(nats.url);
    h.onClose(() => site.nc.close());
    app = await NestFactory.createMicroservice(SchedulerModule, {
      strategy: new JetStreamServer({ servers: nats.url, site: SITE, actor: ACTOR, maxMessageBytes: MAX_BYTES }),
      logger: ['error'],
    });
    await app.listen();
    nc = await connect({ servers: nats.url });
    bus = new CommandBus(nc, { site: SITE, actor: { kind: 'user', id: 'alice' }, maxMessageBytes: MAX_BYTES });
  });

  afterAll(async () => {
    await app?.close();
    await nc?.close();
  });

  it('accepts a valid command and returns the typed result', async () => {
    const traceId = '0af7651916cd43dd8448eb211c80319c';
    const reply = await bus.send('scheduler', 'RequestBackup', { vmId: 'vm-1', mode: 'auto' }, { trace: { traceparent: `00-${traceId}-b7ad6b7169203331-01` } });
    expect(reply).toEqual({ accepted: true, result: { jobId: expect.stringMatching(/^job-for-vm-1-/) } });
    expect(calls.at(-1)).toMatchObject({ payload: { vmId: 'vm-1', mode: 'auto' }, actor: 'alice' });
    expect(calls.at(-1)!.traceparent).toMatch(new RegExp(`^00-${traceId}-`));
  });

  it('rejects an invalid payload with the problems, without running the handler', async () => {
    const before = calls.length;
    const reply = await bus.send('scheduler', 'RequestBackup', { vmId: '', mode: 'sometimes' } as never);
    expect(reply.accepted).toBe(false);
    if (reply.accepted) return;
    expect(reply.error.code).toBe('invalid_command');
    const problems = (reply.error.details as { problems: Array<{ path: string }> }).problems.map((p) => p.path);
    expect(problems).toEqual(expect.arrayContaining(['/payload/vmId', '/payload/mode']));
    expect(calls.length).toBe(before);
    const newer = await bus.send('scheduler', 'RequestBackup', { vmId: 'vm-1', mode: 'auto' }, { schemaVersion: 9 });
    expect(newer).toMatchObject({ accepted: false, error: { code: 'unknown_command', details: { problems: [{ path: '/schemaVersion' }] } } });
    expect(calls.length).toBe(before);
  });

  it('answers the same idempotency key with the first reply, running the handler once', async () => {
    const before = calls.length;
    const key = `backup-vm-2-${randomUUID()}`;
    const first = await bus.send('scheduler', 'RequestBackup', { vmId: 'vm-2', mode: 'full' }, { idempotencyKey: key });
    const second = await bus.send('scheduler', 'RequestBackup', { vmId: 'vm-2', mode: 'full' }, { idempotencyKey: key });
    expect(second).toEqual(first);
    expect(calls.length).toBe(before + 1);
    const conflict = await bus.send('scheduler', 'RequestBackup', { vmId: 'vm-3', mode: 'full' }, { idempotencyKey: key });
    expect(conflict).toMatchObject({ accepted: false, error: { code: 'idempotency_conflict' } });
  });

  it('a route without a reply store runs its handler for every repeat and writes nothing to the store', async () => {
    const kv = await new Kvm(nc).open('cairn_command_replies');
    const keysBefore = await countKeys(kv);
    const key = `release-${randomUUID()}`;
    const cmd = { jobId: 'j1', snapshotId: key, outcome: 'success' } as const;
    expect(await bus.send('snapshot-coordinator', 'ReleaseSnapshot', cmd, { idempotencyKey: key })).toEqual({ accepted: true });
    expect(await bus.send('snapshot-coordinator', 'ReleaseSnapshot', cmd, { idempotencyKey: key })).toEqual({ accepted: true });
    expect(releases.filter((r) => r === key)).toHaveLength(2);
    expect(await countKeys(kv)).toBe(keysBefore);
    // An invalid one is still refused before the handler.
    expect(await bus.send('snapshot-coordinator', 'ReleaseSnapshot', { jobId: '', snapshotId: key } as never)).toMatchObject({ accepted: false, error: { code: 'invalid_command' } });
  });

  it('maps handler errors to codes; a repeated key while the first is running is in_progress', async () => {
    expect(await bus.send('scheduler', 'CancelJob', { jobId: 'nope' }))
      .toEqual({ accepted: false, error: { code: 'not_found', message: 'no job nope', details: { jobId: 'nope' } } });
    expect(await bus.send('scheduler', 'CancelJob', { jobId: 'boom' }))
      .toMatchObject({ accepted: false, error: { code: 'internal', message: 'database exploded' } });
    expect(await bus.send('scheduler', 'CancelJob', { jobId: 'ended' }))
      .toEqual({ accepted: false, error: { code: 'conflict', message: 'job ended has ended', details: { jobId: 'ended' } } });
    const key = randomUUID();
    const slow = bus.send('scheduler', 'CancelJob', { jobId: 'slow' }, { idempotencyKey: key });
    await waitFor(() => slowRelease, { what: 'slow handler running' });
    expect(await bus.send('scheduler', 'CancelJob', { jobId: 'slow' }, { idempotencyKey: key }))
      .toMatchObject({ accepted: false, error: { code: 'in_progress' } });
    slowRelease!();
    expect(await slow).toMatchObject({ accepted: false, error: { code: 'not_found' } });
  });

  it('refuses an oversize command on both sides with a clear error', async () => {
    const big = { vmId: 'vm-1', mode: 'auto', policyId: 'p'.repeat(MAX_BYTES) } as const;
    await expect(bus.send('scheduler', 'RequestBackup', big)).rejects.toThrow(MessageTooLargeError);
    await expect(bus.send('scheduler', 'RequestBackup', big)).rejects.toThrow(/over the limit of 16384 bytes/);
    // A sender with a higher limit reaches the server, which refuses it.
    const lax = new CommandBus(nc, { site: SITE, actor: ACTOR, maxMessageBytes: 10 * MAX_BYTES });
    expect(await lax.send('scheduler', 'RequestBackup', big))
      .toMatchObject({ accepted: false, error: { code: 'payload_too_large', details: { maxBytes: MAX_BYTES } } });
  });

  it('answers malformed JSON with invalid_command and keeps serving', async () => {
    const msg = await nc.request(commandSubject(SITE, 'scheduler', 'RequestBackup'), '{"oops', { timeout: 2000 });
    expect(msg.json()).toMatchObject({ accepted: false, error: { code: 'invalid_command' } });
    expect((await bus.send('scheduler', 'RequestBackup', { vmId: 'vm-9', mode: 'auto' })).accepted).toBe(true);
  });

  it('throws typed errors when nobody answers or the reply is late', async () => {
    await expect(bus.send('data-mover', 'RestoreDisk', { restorePointId: 'rp1', disk: 'sda', target: { kind: 'file', path: '/tmp/x' } }))
      .rejects.toBeInstanceOf(CommandNoRespondersError);
    const silent = nc.subscribe(commandSubject(SITE, 'silent', 'CancelJob'));
    await nc.flush();
    await expect(bus.send('silent', 'CancelJob', { jobId: 'x' }, { timeoutMs: 200 })).rejects.toBeInstanceOf(CommandTimeoutError);
    silent.unsubscribe();
  });

  it('binds @JetStreamHandler methods of a Nest controller to a durable consumer', async () => {
    const e = jobStarted(JOB);
    await new JetStreamClient(site.nc).publishEvent(e);
    await waitFor(() => events.length === 1, { what: 'Nest handler received the event' });
    expect(events[0]).toEqual(e);
  });

  it('sees through Nest\'s exception filter: NonRetryableError dead-letters, a plain error retries', async () => {
    const client = new JetStreamClient(site.nc);
    const refused = { ...jobStarted(JOB), data: { jobId: JOB, attempt: 2 } };
    const flaky = { ...jobStarted(JOB), data: { jobId: JOB, attempt: 3 } };
    await client.publishEvent(refused);
    await client.publishEvent(flaky);
    await waitFor(() => events.some((x) => x.id === flaky.id), { what: 'flaky event handled on redelivery' });
    const [dl] = await waitFor(async () => { const d = await deadLetters(site, 'nest-jobs'); return d.length === 1 ? d : undefined; }, { what: 'dead letter' });
    expect(dl!.data.reason).toBe('handler_rejected: attempt 2 is refused');
    expect(dl!.causationId).toBe(refused.id);
  });
});
