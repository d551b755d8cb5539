// The backup job aggregate (stream `job-<jobId>`): its state folded from the log, the
// commands the scheduler, coordinator and data mover decide on it, and the process
// manager's next step. Pure: no I/O, no clock (time comes in as an argument).
import type { EventDataMap, KnownEvent, JobPhase } from '@cairn/contracts';
import type { Decider, Draft } from './decider.ts';

type Data<K extends keyof EventDataMap> = EventDataMap[K];

export type JobStatus = 'none' | 'requested' | 'running' | 'completed' | 'failed' | 'cancelled';

export interface JobState {
  readonly status: JobStatus;
  readonly jobId?: string;
  readonly request?: Data<'JobRequested'>;
  readonly attempt: number;
  readonly phase: JobPhase | null;
  /** Time of the last event: when the current phase began. */
  readonly phaseSince?: string;
  readonly requestedAt?: string;
  readonly snapshot?: {
    readonly snapshotId: string;
    readonly taken?: Data<'SnapshotTaken'>;
    readonly failed?: string;
    readonly released: boolean;
  };
  readonly transfer?: { readonly queuedAt: string; readonly worker?: string };
  readonly committed?: Data<'RestorePointCommitted'>;
  readonly failure?: { readonly phase: JobPhase; readonly reason: string };
  /** Id of the last event folded: the cause of whatever the process manager does next. */
  readonly lastEventId?: string;
}

export const initialJobState = (): JobState => ({ status: 'none', attempt: 0, phase: null });

const terminal = (s: JobStatus) => s === 'completed' || s === 'failed' || s === 'cancelled';
export const isTerminal = (state: JobState): boolean => terminal(state.status);

export function evolveJob(state: JobState, event: KnownEvent): JobState {
  const next = evolveJobData(state, event);
  return next === state ? state : { ...next, lastEventId: event.id };
}

function evolveJobData(state: JobState, event: KnownEvent): JobState {
  const at = event.time;
  switch (event.type) {
    case 'JobRequested':
      return { ...state, status: 'requested', jobId: event.data.jobId, request: event.data, phase: 'schedule', phaseSince: at, requestedAt: at };
    case 'JobStarted': {
      const started: JobState = { ...state, status: 'running', attempt: event.data.attempt, phaseSince: at };
      const snap = event.data.snapshot;
      return snap ? { ...started, phase: 'snapshot', snapshot: { snapshotId: snap.snapshotId, released: false } } : started;
    }
    // Written after a v1 JobStarted (older logs): the same state as a v2 JobStarted's snapshot.
    case 'SnapshotRequested':
      return { ...state, phase: 'snapshot', phaseSince: at, snapshot: { snapshotId: event.data.snapshotId, released: false } };
    case 'SnapshotTaken':
      return { ...state, phaseSince: at, snapshot: { snapshotId: event.data.snapshotId, taken: event.data, released: false } };
    case 'SnapshotFailed':
      return { ...state, phaseSince: at, snapshot: { snapshotId: event.data.snapshotId, failed: event.data.reason, released: true } };
    case 'TransferQueued':
      return { ...state, phase: 'transfer', phaseSince: at, transfer: { queuedAt: at } };
    case 'TransferStarted':
      return { ...state, phase: 'transfer', phaseSince: at, transfer: { queuedAt: state.transfer?.queuedAt ?? at, worker: event.data.worker } };
    case 'RestorePointCommitted':
      return { ...state, phase: 'release', phaseSince: at, committed: event.data };
    case 'SnapshotReleased':
      return state.snapshot ? { ...state, phaseSince: at, snapshot: { ...state.snapshot, released: true } } : state;
    case 'JobCompleted':
      return { ...state, status: 'completed', phaseSince: at };
    case 'JobFailed':
      return { ...state, status: 'failed', phaseSince: at, failure: { phase: event.data.phase, reason: event.data.reason } };
    case 'JobCancelled':
      return { ...state, status: 'cancelled', phaseSince: at, failure: { phase: state.phase ?? 'schedule', reason: event.data.reason } };
    default:
      return state;
  }
}

export type JobCommand =
  | { readonly kind: 'request'; readonly data: Data<'JobRequested'> }
  | { readonly kind: 'start'; readonly snapshotId: string }
  | { readonly kind: 'queueTransfer'; readonly queue: string }
  | { readonly kind: 'startTransfer'; readonly worker: string }
  // The snapshot coordinator's facts: the view it opened (or could not), and its release.
  | { readonly kind: 'recordSnapshot'; readonly data: Data<'SnapshotTaken'> }
  | { readonly kind: 'recordSnapshotFailure'; readonly snapshotId: string; readonly reason: string }
  | { readonly kind: 'recordRelease'; readonly snapshotId: string; readonly cause: Data<'SnapshotReleased'>['cause'] }
  | { readonly kind: 'commit'; readonly data: Data<'RestorePointCommitted'> }
  | { readonly kind: 'complete'; readonly durationMs: number }
  | { readonly kind: 'fail'; readonly phase: JobPhase; readonly reason: string; readonly retryable: boolean }
  | { readonly kind: 'cancel'; readonly reason: string };

export class JobRefusedError extends Error {
  override readonly name = 'JobRefusedError';
  constructor(message: string, readonly code: 'not_found' | 'conflict' | 'ended') {
    super(message);
  }
}

export function decideJob(command: JobCommand, state: JobState): readonly Draft[] {
  const jobId = state.jobId;
  if (isSnapshotFact(command)) return decideSnapshotFact(command, state);
  if (command.kind === 'request') {
    if (state.status === 'none') return [{ type: 'JobRequested', data: command.data }];
    // The same slot asked again (a second scheduler, a retried request): nothing new.
    if (state.request?.vmId === command.data.vmId && state.request.slot === command.data.slot) return [];
    throw new JobRefusedError(`job ${command.data.jobId} already exists for another request`, 'conflict');
  }
  if (!jobId || state.status === 'none') throw new JobRefusedError('no such job', 'not_found');
  if (terminal(state.status)) {
    if (command.kind === 'cancel' || command.kind === 'fail') return [];
    throw new JobRefusedError(`job ${jobId} has ended (${state.status})`, 'ended');
  }
  switch (command.kind) {
    case 'start':
      if (state.status !== 'requested') return [];
      return [{ type: 'JobStarted', data: { jobId, attempt: state.attempt + 1, snapshot: { vmId: state.request!.vmId, snapshotId: command.snapshotId } } }];
    case 'queueTransfer':
      if (!state.snapshot?.taken || state.transfer) return [];
      return [{ type: 'TransferQueued', data: { jobId, snapshotId: state.snapshot.snapshotId, queue: command.queue } }];
    case 'startTransfer':
      if (!state.transfer || state.committed) return [];
      return [{ type: 'TransferStarted', data: { jobId, worker: command.worker } }];
    case 'commit':
      if (state.committed) return [];
      return [{ type: 'RestorePointCommitted', data: command.data }];
    case 'complete':
      if (!state.committed || !state.snapshot?.released) return [];
      return [{
        type: 'JobCompleted',
        data: {
          jobId,
          restorePointId: state.committed.restorePointId,
          bytesRead: state.committed.disks.reduce((n, d) => n + d.bytesRead, 0),
          bytesStored: state.committed.disks.reduce((n, d) => n + d.bytesStored, 0),
          durationMs: command.durationMs,
        },
      }];
    case 'fail':
      return [{ type: 'JobFailed', data: { jobId, phase: command.phase, reason: command.reason, retryable: command.retryable } }];
    case 'cancel':
      return [{ type: 'JobCancelled', data: { jobId, reason: command.reason } }];
  }
}

/**
 * The coordinator's facts are recorded whatever the job's status: a view opened for a job that
 * was cancelled meanwhile still has to be known, so that it is released.
 */
type SnapshotFact = Extract<JobCommand, { kind: 'recordSnapshot' | 'recordSnapshotFailure' | 'recordRelease' }>;
const isSnapshotFact = (c: JobCommand): c is SnapshotFact => c.kind === 'recordSnapshot' || c.kind === 'recordSnapshotFailure' || c.kind === 'recordRelease';

function decideSnapshotFact(command: SnapshotFact, state: JobState): readonly Draft[] {
  const snapshotId = command.kind === 'recordSnapshot' ? command.data.snapshotId : command.snapshotId;
  const snap = state.snapshot;
  if (!state.jobId || !snap) throw new JobRefusedError(`job ${state.jobId ?? '?'} asked for no snapshot`, 'not_found');
  if (snap.snapshotId !== snapshotId) throw new JobRefusedError(`job ${state.jobId} asked for snapshot ${snap.snapshotId}, not ${snapshotId}`, 'conflict');
  switch (command.kind) {
    case 'recordSnapshot':
      return snap.taken || snap.failed ? [] : [{ type: 'SnapshotTaken', data: command.data }];
    case 'recordSnapshotFailure':
      return snap.taken || snap.failed ? [] : [{ type: 'SnapshotFailed', data: { jobId: state.jobId, snapshotId, reason: command.reason } }];
    case 'recordRelease':
      return snap.released ? [] : [{ type: 'SnapshotReleased', data: { jobId: state.jobId, snapshotId, cause: command.cause } }];
  }
}

/**
 * The job as the receiver of a command knows it from what the sender put in the command, at
 * the revision the sender saw: running, with the snapshot it asked for (taken or not) and the
 * transfer it queued. Decisions on it hold as long as the stream is still at that revision
 * (`handleCommand`'s `known`): an append there proves nothing happened in between.
 */
export function jobStateAsSent(facts: {
  readonly jobId: string;
  readonly snapshotId: string;
  readonly taken?: Data<'SnapshotTaken'>;
  readonly transferQueued?: boolean;
}): JobState {
  return {
    status: 'running', jobId: facts.jobId, attempt: 1,
    phase: facts.transferQueued ? 'transfer' : 'snapshot',
    snapshot: { snapshotId: facts.snapshotId, ...(facts.taken ? { taken: facts.taken } : {}), released: false },
    ...(facts.transferQueued ? { transfer: { queuedAt: '' } } : {}),
  };
}

export const jobDecider: Decider<JobCommand, KnownEvent, JobState> = {
  decide: decideJob,
  evolve: evolveJob,
  initialState: initialJobState,
};

/** Phase time limits, in milliseconds. */
export interface JobTimeouts {
  readonly snapshot: number;
  readonly transfer: number;
  readonly release: number;
  /** Queued work no mover took within this long is published again. */
  readonly requeue: number;
}

export const DEFAULT_TIMEOUTS: JobTimeouts = { snapshot: 10 * 60_000, transfer: 12 * 3600_000, release: 10 * 60_000, requeue: 60_000 };

/** What the process manager does next for a job (one step; it is asked again after each event). */
export type JobStep =
  | { readonly kind: 'none' }
  | { readonly kind: 'start' }
  | { readonly kind: 'requestSnapshot'; readonly snapshotId: string; readonly vmId: string }
  | { readonly kind: 'queueTransfer' }
  | { readonly kind: 'release'; readonly snapshotId: string; readonly success: boolean }
  | { readonly kind: 'complete' }
  | { readonly kind: 'fail'; readonly phase: JobPhase; readonly reason: string };

export function nextJobStep(state: JobState, now: Date, timeouts: JobTimeouts = DEFAULT_TIMEOUTS): JobStep {
  const snap = state.snapshot;
  if (terminal(state.status)) {
    // A job that ended still owes the hypervisor its view back.
    if (snap?.taken && !snap.released) return { kind: 'release', snapshotId: snap.snapshotId, success: state.status === 'completed' };
    return { kind: 'none' };
  }
  if (state.status === 'requested') return { kind: 'start' };
  if (state.status !== 'running' || !snap) return { kind: 'none' };
  const age = now.getTime() - Date.parse(state.phaseSince ?? state.requestedAt ?? now.toISOString());
  if (snap.failed) return { kind: 'fail', phase: 'snapshot', reason: `snapshot failed: ${snap.failed}` };
  if (!snap.taken) {
    if (age > timeouts.snapshot) return { kind: 'fail', phase: 'snapshot', reason: `no snapshot within ${timeouts.snapshot / 1000} s` };
    return { kind: 'requestSnapshot', snapshotId: snap.snapshotId, vmId: state.request!.vmId };
  }
  if (!state.transfer) return { kind: 'queueTransfer' };
  // Queued but never taken (the work message was lost with a scheduler that died between
  // recording and publishing it): publish again; movers skip work already committed.
  if (!state.transfer.worker && !state.committed && age > timeouts.requeue) return { kind: 'queueTransfer' };
  if (!state.committed) {
    if (age > timeouts.transfer) return { kind: 'fail', phase: 'transfer', reason: `no progress of the transfer within ${timeouts.transfer / 1000} s` };
    return { kind: 'none' };
  }
  if (!snap.released) {
    if (age > timeouts.release) return { kind: 'fail', phase: 'release', reason: `snapshot not released within ${timeouts.release / 1000} s` };
    return { kind: 'release', snapshotId: snap.snapshotId, success: true };
  }
  return { kind: 'complete' };
}
