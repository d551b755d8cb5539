// The restore job aggregate (stream `restore-<restoreId>`): requested by an operator, started
// by a data mover with the plan it decided once (source, files), progress, each disk written,
// then completed or failed. A redelivery after a mover died starts it again with the same plan
// and skips the disks already written. Pure: no I/O, no clock.
import type { Actor, EventDataMap, KnownEvent, RestoreFailureCode, RestoreJobView, RestorePlannedDisk, RestorePlannedVm } from '@cairn/contracts';
import type { Decider, Draft } from './decider.ts';

type Data<K extends keyof EventDataMap> = EventDataMap[K];

export type RestoreStatus = 'none' | 'requested' | 'running' | 'completed' | 'failed';

export interface RestorePlan {
  readonly source: 'local' | 'replica';
  readonly sourceLocation: string;
  readonly disks: readonly RestorePlannedDisk[];
  readonly vm?: RestorePlannedVm;
}

export interface RestoreState {
  readonly status: RestoreStatus;
  readonly request?: Data<'RestoreRequested'>;
  /** Who asked for it: the actor of DiskRestored (who restored what, to where). */
  readonly requester?: Actor;
  readonly requestedAt?: string;
  /** Set by the first RestoreStarted; every later attempt follows it. */
  readonly plan?: RestorePlan;
  readonly attempts: number;
  readonly worker?: string;
  /** Disks written and renamed to their final name: name → size. */
  readonly written: ReadonlyMap<string, number>;
  /** Latest coarse progress recorded in the log. */
  readonly progress?: { readonly disk: string; readonly bytesDone: number; readonly bytesTotal: number };
  readonly completed?: Data<'RestoreCompleted'>;
  readonly failure?: { readonly code: RestoreFailureCode; readonly reason: string };
  readonly endedAt?: string;
  readonly lastEventId?: string;
}

export const initialRestoreState = (): RestoreState => ({ status: 'none', attempts: 0, written: new Map() });

export const isRestoreOver = (s: RestoreState): boolean => s.status === 'completed' || s.status === 'failed';

export type RestoreCommand =
  | { readonly kind: 'request'; readonly data: Data<'RestoreRequested'> }
  /** `plan` is used only on the first start; later starts repeat the recorded one. */
  | { readonly kind: 'start'; readonly worker: string; readonly plan?: RestorePlan }
  | { readonly kind: 'progress'; readonly disk: string; readonly bytesDone: number; readonly bytesTotal: number }
  | { readonly kind: 'diskWritten'; readonly disk: string; readonly sizeBytes: number; readonly actorPath: string }
  | { readonly kind: 'complete'; readonly durationMs: number; readonly vm?: Data<'RestoreCompleted'>['vm'] }
  | { readonly kind: 'fail'; readonly code: RestoreFailureCode; readonly reason: string };

/** A command that makes no sense in the job's state (a bug or a stale caller), with the reason. */
export class RestoreCommandRejected extends Error {}

function evolveData(state: RestoreState, event: KnownEvent): RestoreState {
  switch (event.type) {
    case 'RestoreRequested':
      return { ...state, status: 'requested', request: event.data, requester: event.actor, requestedAt: event.time };
    case 'RestoreStarted':
      return {
        ...state, status: 'running', attempts: event.data.attempt, worker: event.data.worker,
        plan: state.plan ?? { source: event.data.source, sourceLocation: event.data.sourceLocation, disks: event.data.disks, ...(event.data.vm ? { vm: event.data.vm } : {}) },
      };
    case 'RestoreProgressed':
      return { ...state, progress: { disk: event.data.disk, bytesDone: event.data.bytesDone, bytesTotal: event.data.bytesTotal } };
    case 'DiskRestored': {
      const written = new Map(state.written);
      written.set(event.data.disk, event.data.sizeBytes);
      return { ...state, written };
    }
    case 'RestoreCompleted':
      return { ...state, status: 'completed', completed: event.data, endedAt: event.time };
    case 'RestoreFailed':
      return { ...state, status: 'failed', failure: { code: event.data.code, reason: event.data.reason }, endedAt: event.time };
    default:
      return state;
  }
}

export function evolveRestore(state: RestoreState, event: KnownEvent): RestoreState {
  const next = evolveData(state, event);
  return next === state ? state : { ...next, lastEventId: event.id };
}

export function decideRestore(command: RestoreCommand, state: RestoreState): readonly Draft[] {
  const id = state.request?.restoreId;
  switch (command.kind) {
    case 'request':
      if (state.status !== 'none') {
        // The same request again (a retried command) changes nothing; another one under this id is refused.
        if (JSON.stringify(state.request) === JSON.stringify(command.data)) return [];
        throw new RestoreCommandRejected(`restore ${command.data.restoreId} exists with another request`);
      }
      return [{ type: 'RestoreRequested', data: command.data }];
    case 'start': {
      if (state.status === 'none' || !id) throw new RestoreCommandRejected('no such restore job');
      if (isRestoreOver(state)) return [];
      const plan = state.plan ?? command.plan;
      if (!plan) throw new RestoreCommandRejected(`restore ${id} has no plan yet: the first start must carry one`);
      return [{
        type: 'RestoreStarted',
        data: { restoreId: id, worker: command.worker, attempt: state.attempts + 1, source: plan.source, sourceLocation: plan.sourceLocation, disks: [...plan.disks], ...(plan.vm ? { vm: plan.vm } : {}) },
      }];
    }
    case 'progress':
      if (state.status !== 'running' || !id) return [];
      return [{ type: 'RestoreProgressed', data: { restoreId: id, disk: command.disk, bytesDone: command.bytesDone, bytesTotal: command.bytesTotal } }];
    case 'diskWritten': {
      if (state.status !== 'running' || !id || !state.request) throw new RestoreCommandRejected('restore job is not running');
      if (state.written.has(command.disk)) return [];
      if (!state.plan?.disks.some((d) => d.disk === command.disk)) throw new RestoreCommandRejected(`disk ${command.disk} is not in the plan of restore ${id}`);
      return [{
        type: 'DiskRestored',
        data: { restoreId: id, restorePointId: state.request.restorePointId, disk: command.disk, target: state.plan.vm ? 'vm-disk' : 'file', path: command.actorPath.slice(0, 4096), sizeBytes: command.sizeBytes },
      }];
    }
    case 'complete': {
      if (state.status !== 'running' || !id || !state.plan) throw new RestoreCommandRejected('restore job is not running');
      const missing = state.plan.disks.filter((d) => !state.written.has(d.disk)).map((d) => d.disk);
      if (missing.length) throw new RestoreCommandRejected(`restore ${id} cannot complete: ${missing.join(', ')} not written`);
      return [{
        type: 'RestoreCompleted',
        data: { restoreId: id, disks: state.plan.disks.map((d) => ({ disk: d.disk, path: d.path, sizeBytes: state.written.get(d.disk) ?? d.sizeBytes })), attempts: state.attempts, durationMs: command.durationMs, ...(command.vm ? { vm: command.vm } : {}) },
      }];
    }
    case 'fail':
      if (state.status === 'none' || !id || isRestoreOver(state)) return [];
      return [{ type: 'RestoreFailed', data: { restoreId: id, code: command.code, reason: command.reason.slice(0, 4096) } }];
  }
}

export const restoreDecider: Decider<RestoreCommand, KnownEvent, RestoreState> = {
  decide: decideRestore,
  evolve: evolveRestore,
  initialState: initialRestoreState,
};

/** The job as the API and the CLI show it; undefined when it was never requested. */
export function restoreJobView(state: RestoreState): RestoreJobView | undefined {
  if (state.status === 'none' || !state.request) return undefined;
  const disks = state.plan?.disks.map((d) => ({ disk: d.disk, path: d.path, sizeBytes: state.written.get(d.disk) ?? d.sizeBytes, written: state.written.has(d.disk) })) ?? [];
  return {
    restoreId: state.request.restoreId, state: state.status, restorePointId: state.request.restorePointId,
    ...(state.requestedAt ? { requestedAt: state.requestedAt } : {}), ...(state.endedAt ? { endedAt: state.endedAt } : {}),
    attempts: state.attempts, ...(state.worker ? { worker: state.worker } : {}), ...(state.plan ? { source: state.plan.source } : {}),
    ...(disks[0] ? { path: disks[0].path } : {}), sizeBytes: disks.reduce((n, d) => n + d.sizeBytes, 0), durationMs: state.completed?.durationMs ?? 0,
    disks, ...(state.progress ? { progress: { ...state.progress } } : {}), ...(state.failure ? { failure: { ...state.failure } } : {}),
    ...(state.completed?.vm ? { vm: state.completed.vm } : {}),
  };
}
