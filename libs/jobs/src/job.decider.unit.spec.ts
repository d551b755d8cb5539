import { describe, expect, it } from 'vitest';
import { newEvent, type KnownEvent } from '@cairn/contracts';
import { decideJob, evolveJob, initialJobState, jobDecider, jobStateAsSent, nextJobStep, JobRefusedError, type JobCommand, type JobState } from './job.decider.ts';
import { deciderSpec } from './testing/index.ts';

const meta = { site: 'a', actor: { kind: 'service' as const, id: 'test' }, streamId: 'job-j1' };
const at = (iso: string) => ({ ...meta, time: iso });

function given(events: KnownEvent[]): JobState {
  return events.reduce(evolveJob, initialJobState());
}
function when(state: JobState, command: JobCommand) {
  return decideJob(command, state);
}

const requested = newEvent('JobRequested', { jobId: 'j1', vmId: 'vm1', policyId: null, mode: 'auto', trigger: 'manual' }, at('2026-01-01T00:00:00Z'));
// An older log's start: JobStarted v1 (no snapshot), then SnapshotRequested. Written today: startedV2.
const started = newEvent('JobStarted', { jobId: 'j1', attempt: 1 }, at('2026-01-01T00:00:01Z'));
const snapReq = newEvent('SnapshotRequested', { jobId: 'j1', vmId: 'vm1', snapshotId: 's1' }, at('2026-01-01T00:00:01Z'));
const startedV2 = newEvent('JobStarted', { jobId: 'j1', attempt: 1, snapshot: { vmId: 'vm1', snapshotId: 's1' } }, at('2026-01-01T00:00:01Z'));
const taken = newEvent('SnapshotTaken', { jobId: 'j1', snapshotId: 's1', nbd: { socket: '/tmp/x', exports: [{ disk: 'd0', exportName: 'e', sizeBytes: 1, mode: 'full', reason: 'no parent' }] } }, at('2026-01-01T00:00:02Z'));
const queued = newEvent('TransferQueued', { jobId: 'j1', snapshotId: 's1', queue: 'transfers' }, at('2026-01-01T00:00:03Z'));
const committed = newEvent('RestorePointCommitted', { jobId: 'j1', vmId: 'vm1', restorePointId: 'rp1', parentId: null, disks: [{ name: 'd0', sizeBytes: 1, bytesRead: 10, bytesStored: 5, chunksNew: 1, chunksReused: 0 }] }, at('2026-01-01T00:01:00Z'));
const released = newEvent('SnapshotReleased', { jobId: 'j1', snapshotId: 's1', cause: 'job_ended' }, at('2026-01-01T00:01:01Z'));

describe('job decider', () => {
  it('a request on an empty stream records the job; the same slot again records nothing', () => {
    expect(when(given([]), { kind: 'request', data: requested.data })).toEqual([{ type: 'JobRequested', data: requested.data }]);
    expect(when(given([requested]), { kind: 'request', data: requested.data })).toEqual([]);
  });

  it('walks the phases: start, snapshot, transfer, release, complete', () => {
    const now = new Date('2026-01-01T00:00:05Z');
    expect(nextJobStep(given([requested]), now)).toEqual({ kind: 'start' });
    // One event: the attempt and the snapshot it asks for.
    expect(when(given([requested]), { kind: 'start', snapshotId: 's1' })).toEqual([
      { type: 'JobStarted', data: { jobId: 'j1', attempt: 1, snapshot: { vmId: 'vm1', snapshotId: 's1' } } },
    ]);
    expect(nextJobStep(given([requested, startedV2]), now)).toEqual({ kind: 'requestSnapshot', snapshotId: 's1', vmId: 'vm1' });
    expect(nextJobStep(given([requested, started, snapReq]), now)).toEqual({ kind: 'requestSnapshot', snapshotId: 's1', vmId: 'vm1' });
    expect(nextJobStep(given([requested, started, snapReq, taken]), now)).toEqual({ kind: 'queueTransfer' });
    expect(nextJobStep(given([requested, started, snapReq, taken, queued]), now)).toEqual({ kind: 'none' });
    // Work nobody took for a while is published again.
    expect(nextJobStep(given([requested, started, snapReq, taken, queued]), new Date('2026-01-01T00:05:00Z'))).toEqual({ kind: 'queueTransfer' });
    expect(nextJobStep(given([requested, started, snapReq, taken, queued, committed]), now)).toEqual({ kind: 'release', snapshotId: 's1', success: true });
    const done = given([requested, started, snapReq, taken, queued, committed, released]);
    expect(nextJobStep(done, now)).toEqual({ kind: 'complete' });
    expect(when(done, { kind: 'complete', durationMs: 61_000 })).toEqual([{ type: 'JobCompleted', data: { jobId: 'j1', restorePointId: 'rp1', bytesRead: 10, bytesStored: 5, durationMs: 61_000 } }]);
  });

  it("folds an older log's JobStarted v1 and SnapshotRequested to the state of one JobStarted v2", () => {
    const { lastEventId: a, ...old } = given([requested, started, snapReq, taken]);
    const { lastEventId: b, ...now } = given([requested, startedV2, taken]);
    expect(old).toEqual(now);
    expect([a, b]).toEqual([taken.id, taken.id]);
    // A start already recorded either way is not recorded again.
    expect(when(given([requested, started, snapReq]), { kind: 'start', snapshotId: 's2' })).toEqual([]);
    expect(when(given([requested, startedV2]), { kind: 'start', snapshotId: 's2' })).toEqual([]);
  });

  it('fails a phase that runs past its timeout, then still releases the snapshot', () => {
    const s = given([requested, started, snapReq]);
    const step = nextJobStep(s, new Date('2026-01-01T01:00:00Z'), { snapshot: 60_000, transfer: 60_000, release: 60_000, requeue: 30_000 });
    expect(step).toMatchObject({ kind: 'fail', phase: 'snapshot' });
    const failedAfterTaken = given([requested, started, snapReq, taken, queued,
      newEvent('JobFailed', { jobId: 'j1', phase: 'transfer', reason: 'mover lost', retryable: false }, at('2026-01-01T00:02:00Z'))]);
    expect(nextJobStep(failedAfterTaken, new Date())).toEqual({ kind: 'release', snapshotId: 's1', success: false });
  });

  it('refuses commands on a job that does not exist or has ended', () => {
    expect(() => when(given([]), { kind: 'start', snapshotId: 's' })).toThrow(JobRefusedError);
    const cancelled = given([requested, newEvent('JobCancelled', { jobId: 'j1', reason: 'operator' }, at('2026-01-01T00:00:02Z'))]);
    expect(() => when(cancelled, { kind: 'start', snapshotId: 's' })).toThrow(/has ended/);
    expect(when(cancelled, { kind: 'cancel', reason: 'again' })).toEqual([]);
  });

  describe("the coordinator's facts (given/when/then)", () => {
    const spec = deciderSpec(jobDecider);
    const failed = newEvent('JobFailed', { jobId: 'j1', phase: 'transfer', reason: 'x', retryable: false }, at('2026-01-01T00:02:00Z'));

    it('records the view the job asked for, once', () => {
      spec.given([requested, started, snapReq]).when({ kind: 'recordSnapshot', data: taken.data }).then([{ type: 'SnapshotTaken', data: taken.data }]);
      spec.given([requested, started, snapReq, taken]).when({ kind: 'recordSnapshot', data: taken.data }).thenNothing();
      spec.given([requested, started, snapReq, taken]).when({ kind: 'recordSnapshotFailure', snapshotId: 's1', reason: 'late' }).thenNothing();
    });

    it('refuses a view of a snapshot the job did not ask for, or for a job that asked for none', () => {
      spec.given([requested, started, snapReq]).when({ kind: 'recordSnapshot', data: { ...taken.data, snapshotId: 's2' } }).thenRefuses(/asked for snapshot s1, not s2/);
      spec.given([requested]).when({ kind: 'recordSnapshot', data: taken.data }).thenRefuses(JobRefusedError);
      spec.given([]).when({ kind: 'recordRelease', snapshotId: 's1', cause: 'job_ended' }).thenRefuses(JobRefusedError);
    });

    it('records the release once, also after the job ended (the view is still given back)', () => {
      spec.given([requested, started, snapReq, taken, queued, failed]).when({ kind: 'recordRelease', snapshotId: 's1', cause: 'job_ended' })
        .then([{ type: 'SnapshotReleased', data: { jobId: 'j1', snapshotId: 's1', cause: 'job_ended' } }]);
      spec.given([requested, started, snapReq, taken, queued, committed, released]).when({ kind: 'recordRelease', snapshotId: 's1', cause: 'lease_expired' }).thenNothing();
    });

    it('decides on the job as the sender left it the same as on the stream it folded', () => {
      const asSent = jobStateAsSent({ jobId: 'j1', snapshotId: 's1' });
      const folded = given([requested, started, snapReq]);
      for (const c of [{ kind: 'recordSnapshot', data: taken.data }, { kind: 'recordSnapshotFailure', snapshotId: 's1', reason: 'r' }, { kind: 'recordRelease', snapshotId: 's1', cause: 'job_ended' }] as JobCommand[]) {
        expect(decideJob(c, asSent)).toEqual(decideJob(c, folded));
      }
      const queuedAsSent = jobStateAsSent({ jobId: 'j1', snapshotId: 's1', transferQueued: true });
      expect(decideJob({ kind: 'startTransfer', worker: 'm' }, queuedAsSent)).toEqual(decideJob({ kind: 'startTransfer', worker: 'm' }, given([requested, started, snapReq, taken, queued])));
    });
  });
});
