import { describe, expect, it } from 'vitest';
import type { JobRequested, JobStarted, KnownEvent } from '@cairn/contracts';
import { handleCommand, fold, type Decider } from './decider.ts';
import { InMemoryEventLog } from './in-memory-event-log.adapter.ts';
import { WrongExpectedRevisionError } from './errors.ts';
import type { AppendOptions, AppendResult } from './event-log.port.ts';
import type { CairnEvent } from '@cairn/contracts';

type State = { status: 'none' | 'requested' | 'started'; attempts: number };
type Command = { kind: 'request'; jobId: string } | { kind: 'start'; jobId: string };
type Event = JobRequested | JobStarted;

const job: Decider<Command, Event, State> = {
  initialState: () => ({ status: 'none', attempts: 0 }),
  evolve: (s, e) => (e.type === 'JobRequested' ? { ...s, status: 'requested' } : { status: 'started', attempts: e.data.attempt }),
  decide: (c, s) => {
    if (c.kind === 'request') {
      return s.status === 'none' ? [{ type: 'JobRequested', data: { jobId: c.jobId, vmId: 'vm-1', policyId: null, mode: 'auto', trigger: 'manual' } }] : [];
    }
    if (s.status === 'none') throw new Error('not requested');
    return [{ type: 'JobStarted', data: { jobId: c.jobId, attempt: s.attempts + 1 } }];
  },
};
const meta = { site: 'site-a', actor: { kind: 'user' as const, id: 'ops' } };

/** Fault injection: another writer slips in (a copy of the event) before the next `racesLeft` appends. */
class RacingLog extends InMemoryEventLog {
  racesLeft = 0;
  override async append(streamId: string, events: readonly CairnEvent[], options: AppendOptions): Promise<AppendResult> {
    if (this.racesLeft > 0) {
      this.racesLeft--;
      await super.append(streamId, [{ ...events[0]!, id: crypto.randomUUID() }], { expectedRevision: 'any' });
    }
    return super.append(streamId, events, options);
  }
}

describe('handleCommand', () => {
  it('reads, folds, decides and appends at the revision it read', async () => {
    const log = new InMemoryEventLog('site-a');
    const a = await handleCommand(log, 'job-1', job, { kind: 'request', jobId: '1' }, { meta });
    expect(a.events.map((e) => e.type)).toEqual(['JobRequested']);
    expect(a.revision).toBe(0n);
    const b = await handleCommand(log, 'job-1', job, { kind: 'start', jobId: '1' }, { meta });
    expect(b.state).toEqual({ status: 'started', attempts: 1 });
    expect(b.events[0]!.correlationId).toBe('job-1');
    const none = await handleCommand(log, 'job-1', job, { kind: 'request', jobId: '1' }, { meta });
    expect(none.events).toEqual([]);
    expect(none.revision).toBe(1n);
    const all: KnownEvent[] = [];
    for await (const r of log.readStream('job-1')) all.push(r.event);
    expect(fold(job, all as Event[])).toEqual(b.state);
  });

  it('decides again after a conflict, and gives up after maxRetries', async () => {
    const log = new RacingLog('site-a');
    await handleCommand(log, 'job-3', job, { kind: 'request', jobId: '3' }, { meta });
    log.racesLeft = 2;
    const ok = await handleCommand(log, 'job-3', job, { kind: 'start', jobId: '3' }, { meta });
    expect(ok.retries).toBe(2);
    // decided on the state that includes both intruders: attempt 3
    expect(ok.state).toEqual({ status: 'started', attempts: 3 });
    log.racesLeft = 100;
    await expect(handleCommand(log, 'job-3', job, { kind: 'start', jobId: '3' }, { meta, maxRetries: 2 })).rejects.toBeInstanceOf(WrongExpectedRevisionError);
    expect(log.racesLeft).toBe(97);
  });

  it('surfaces a refusal from decide without writing', async () => {
    const log = new InMemoryEventLog('site-a');
    await expect(handleCommand(log, 'job-5', job, { kind: 'start', jobId: '5' }, { meta })).rejects.toThrow('not requested');
    expect(await log.headPosition()).toBe(0n);
  });

  it('decides on a known state and revision without reading; reads and decides again only when the stream moved on', async () => {
    class CountingLog extends RacingLog {
      reads = 0;
      override readStream(...a: Parameters<InMemoryEventLog['readStream']>) { this.reads++; return super.readStream(...a); }
    }
    const log = new CountingLog('site-a');
    const requested = await handleCommand(log, 'job-7', job, { kind: 'request', jobId: '7' }, { meta, known: { state: job.initialState(), revision: -1n } });
    expect(log.reads).toBe(0);
    const started = await handleCommand(log, 'job-7', job, { kind: 'start', jobId: '7' }, { meta, known: { state: requested.state, revision: requested.revision } });
    expect(log.reads).toBe(0);
    expect(started.state).toEqual({ status: 'started', attempts: 1 });
    // Stale knowledge: another writer appended since; the append conflicts, the stream is read once.
    log.racesLeft = 1;
    const again = await handleCommand(log, 'job-7', job, { kind: 'start', jobId: '7' }, { meta, known: { state: started.state, revision: started.revision } });
    expect(log.reads).toBeGreaterThan(0); // (the adapter also reads to tell a repeat from a conflict)
    expect(again.retries).toBe(1);
    expect(again.state).toEqual({ status: 'started', attempts: 3 });
  });
});
