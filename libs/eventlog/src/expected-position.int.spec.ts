// Appends that expect a revision together with its event's position, as a command's sender
// passed them along (the scheduler to the coordinator and the movers), on real JetStream: the
// writer publishes expecting that position as the subject's last without reading the stream's
// head first; when the stream moved on, the server refuses it, the writer reads the head and
// decides again, and nothing is lost, doubled or given a wrong revision.
import { describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { KnownEvent } from '@cairn/contracts';
import { useHarness } from '@cairn/testing';
import { jobDecider, initialJobState } from '@cairn/jobs';
import { handleCommand } from './decider.ts';
import { WrongExpectedRevisionError } from './errors.ts';
import { JetStreamEventLog } from './jetstream-event-log.adapter.ts';

const h = useHarness();
const meta = { site: 'hint', actor: { kind: 'service' as const, id: 'writer' } };

/** Three clients of one server (a sender and two writers that never read the stream) and a count of head reads. */
async function clients() {
  const server = await h.nats();
  const logs: JetStreamEventLog[] = [];
  const conns: NatsConnection[] = [];
  for (let i = 0; i < 3; i++) {
    const nc = await connect({ servers: server.url });
    h.onClose(() => nc.close());
    conns.push(nc);
    logs.push(await JetStreamEventLog.open({ nc, site: 'hint' }));
  }
  // Every message get a client asks the server for (head reads and reads by sequence).
  const gets: string[] = [];
  conns[0]!.subscribe('$JS.API.STREAM.MSG.GET.>', { callback: (_e, m) => { gets.push(new TextDecoder().decode(m.data)); } });
  await conns[0]!.flush();
  const settle = async () => { for (const nc of conns) await nc.flush(); };
  return { sender: logs[0]!, b: logs[1]!, c: logs[2]!, gets, settle };
}

async function stream(log: JetStreamEventLog, streamId: string): Promise<Array<{ type: string; revision: bigint; id: string }>> {
  const out: Array<{ type: string; revision: bigint; id: string }> = [];
  for await (const r of log.readStream(streamId)) out.push({ type: (r.event as KnownEvent).type, revision: r.revision, id: r.event.id });
  return out;
}

const taken = (jobId: string, snapshotId: string) => ({ jobId, snapshotId, nbd: { socket: '/x', exports: [{ disk: 'd0', exportName: 'e', sizeBytes: 1, mode: 'full' as const, reason: 'first' }] } });

async function startedJob(sender: JetStreamEventLog, jobId: string) {
  const r0 = await handleCommand(sender, `job-${jobId}`, jobDecider, { kind: 'request', data: { jobId, vmId: 'vm1', policyId: null, mode: 'auto', trigger: 'manual' } }, { meta, known: { state: initialJobState(), revision: -1n } });
  return handleCommand(sender, `job-${jobId}`, jobDecider, { kind: 'start', snapshotId: `s-${jobId}` }, { meta, known: { state: r0.state, revision: r0.revision } });
}

describe('appends expecting a revision with its position (real JetStream)', () => {
  it('a writer given the revision and its position appends without reading the head', async () => {
    const { sender, b, c, gets, settle } = await clients();
    const started = await startedJob(sender, 'j1');
    await settle();
    gets.length = 0;
    const r = await handleCommand(b, 'job-j1', jobDecider, { kind: 'recordSnapshot', data: taken('j1', 's-j1') }, {
      meta, known: { state: started.state, revision: started.revision, position: started.position },
    });
    await settle();
    expect(r.events.map((e) => e.type)).toEqual(['SnapshotTaken']);
    expect(r.retries).toBe(0);
    expect(gets).toEqual([]);
    // Without the position, the same append by a client that never saw the stream reads its head.
    const other = await startedJob(sender, 'j1b');
    await settle();
    gets.length = 0;
    await handleCommand(c, 'job-j1b', jobDecider, { kind: 'recordSnapshot', data: taken('j1b', 's-j1b') }, { meta, known: { state: other.state, revision: other.revision } });
    await settle();
    expect(gets.filter((g) => g.includes('last_by_subj'))).toHaveLength(1);
    const events = await stream(sender, 'job-j1');
    expect(events.map((e) => e.type)).toEqual(['JobRequested', 'JobStarted', 'SnapshotTaken']);
    expect(events.map((e) => e.revision)).toEqual([0n, 1n, 2n]);
  });

  it('two writers given the same revision and position race: the loser is refused, reads the head, decides again; nothing lost or doubled', async () => {
    const { sender, b, c } = await clients();
    const started = await startedJob(sender, 'j2');
    const known = { state: started.state, revision: started.revision, position: started.position };
    // Without retries: exactly one append expecting that position lands, the other is a conflict at the revision read.
    const settled = await Promise.allSettled([
      handleCommand(b, 'job-j2', jobDecider, { kind: 'recordSnapshot', data: taken('j2', 's-j2') }, { meta, known, maxRetries: 0 }),
      handleCommand(c, 'job-j2', jobDecider, { kind: 'cancel', reason: 'operator' }, { meta, known, maxRetries: 0 }),
    ]);
    expect(settled.filter((s) => s.status === 'fulfilled')).toHaveLength(1);
    const lost = (settled.find((s) => s.status === 'rejected') as PromiseRejectedResult).reason as WrongExpectedRevisionError;
    expect(lost).toBeInstanceOf(WrongExpectedRevisionError);
    expect(lost.message).toContain('2');
    const once = await stream(sender, 'job-j2');
    expect(once.map((e) => e.revision)).toEqual([0n, 1n, 2n]);

    // With retries, on a new job: both cancel; one JobCancelled lands on the position, the other
    // is refused by the server, reads the stream, finds the job cancelled and appends nothing.
    const s3 = await startedJob(sender, 'j3');
    const k3 = { state: s3.state, revision: s3.revision, position: s3.position };
    const results = await Promise.all([b, c].map((log, i) => handleCommand(log, 'job-j3', jobDecider, { kind: 'cancel', reason: `operator ${i}` }, { meta, known: k3 })));
    expect(results.filter((r) => r.events.length > 0 && r.retries === 0)).toHaveLength(1);
    expect(results.filter((r) => r.events.length === 0 && r.retries === 1)).toHaveLength(1);
    const events = await stream(sender, 'job-j3');
    expect(events.filter((e) => e.type === 'JobCancelled')).toHaveLength(1);
    expect(events.map((e) => e.revision)).toEqual(events.map((_, i) => BigInt(i)));
    expect(new Set(events.map((e) => e.id)).size).toBe(events.length);

    // A position that is no longer the stream's last (a stale command) is refused by the server:
    // the writer reads the head and decides on what it finds, at the right revision.
    const s4 = await startedJob(sender, 'j4');
    const stale = { state: s4.state, revision: s4.revision, position: s4.position };
    await handleCommand(sender, 'job-j4', jobDecider, { kind: 'recordSnapshot', data: taken('j4', 's-j4') }, { meta, known: { state: s4.state, revision: s4.revision } });
    const late = await handleCommand(c, 'job-j4', jobDecider, { kind: 'cancel', reason: 'late' }, { meta, known: stale });
    expect(late.retries).toBe(1);
    const j4 = await stream(sender, 'job-j4');
    expect(j4.map((e) => e.type).slice(2)).toEqual(['SnapshotTaken', ...late.events.map((e) => e.type)]);
    expect(j4.map((e) => e.revision)).toEqual(j4.map((_, i) => BigInt(i)));
  });
});
