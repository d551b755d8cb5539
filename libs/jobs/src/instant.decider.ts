// The instant recovery session aggregate (stream `instant-<instantId>`): started with its plan
// (directory, disks with their exports and overlays, identity), serving (exporter and VM up),
// mirroring to local storage (again after a mover died mid-mirror), then finished (pivoted) or
// discarded; a failed step is recorded with whether the VM still runs. Pure: no I/O, no clock.
import type { EventDataMap, InstantStep, InstantView, KnownEvent } from '@cairn/contracts';
import type { Decider, Draft } from './decider.ts';

type Data<K extends keyof EventDataMap> = EventDataMap[K];

export type InstantStatus = 'none' | 'starting' | 'serving' | 'mirroring' | 'finished' | 'discarded' | 'failed';

export interface InstantState {
  readonly status: InstantStatus;
  readonly plan?: Data<'InstantRecoveryStarted'>;
  readonly startedAt?: string;
  readonly serving?: Data<'InstantServing'>;
  readonly mirroring?: Data<'InstantMirroring'>;
  readonly finished?: Data<'InstantFinished'>;
  readonly failure?: { readonly step: InstantStep; readonly reason: string; readonly vmRunning: boolean };
  /** The status before a failure: a failed mirror leaves the session serving. */
  readonly before?: InstantStatus;
  readonly endedAt?: string;
  readonly lastEventId?: string;
}

export const initialInstantState = (): InstantState => ({ status: 'none' });

/** Finished or discarded: nothing runs from the repository any more. */
export const isInstantOver = (s: InstantState): boolean => s.status === 'finished' || s.status === 'discarded';

export type InstantCommand =
  | { readonly kind: 'start'; readonly plan: Data<'InstantRecoveryStarted'> }
  | { readonly kind: 'serve'; readonly serving: Omit<Data<'InstantServing'>, 'instantId'> }
  | { readonly kind: 'mirror'; readonly worker: string; readonly disks: Data<'InstantMirroring'>['disks'] }
  | { readonly kind: 'finish'; readonly disks: Data<'InstantFinished'>['disks']; readonly durationMs: number }
  | { readonly kind: 'discard'; readonly removed: readonly string[] }
  | { readonly kind: 'fail'; readonly step: InstantStep; readonly reason: string; readonly vmRunning: boolean };

/** A command the session's state does not allow, with the reason (conflict). */
export class InstantCommandRejected extends Error {}

function evolveData(state: InstantState, event: KnownEvent): InstantState {
  switch (event.type) {
    case 'InstantRecoveryStarted':
      return { ...state, status: 'starting', plan: event.data, startedAt: event.time };
    case 'InstantServing':
      return { ...state, status: 'serving', serving: event.data };
    case 'InstantMirroring':
      return { ...state, status: 'mirroring', mirroring: event.data };
    case 'InstantFinished':
      return { ...state, status: 'finished', finished: event.data, endedAt: event.time };
    case 'InstantDiscarded':
      return { ...state, status: 'discarded', endedAt: event.time };
    case 'InstantFailed': {
      const failure = { step: event.data.step, reason: event.data.reason, vmRunning: event.data.vmRunning };
      // A mirror that failed leaves the VM on its overlays: still serving, finish again or discard.
      if (event.data.step === 'mirror' && event.data.vmRunning) return { ...state, status: 'serving', failure };
      return { ...state, status: 'failed', failure, before: state.status };
    }
    default:
      return state;
  }
}

export function evolveInstant(state: InstantState, event: KnownEvent): InstantState {
  const next = evolveData(state, event);
  return next === state ? state : { ...next, lastEventId: event.id };
}

export function decideInstant(command: InstantCommand, state: InstantState): readonly Draft[] {
  const id = state.plan?.instantId;
  switch (command.kind) {
    case 'start':
      if (state.status !== 'none') {
        if (JSON.stringify(state.plan) === JSON.stringify(command.plan)) return [];
        throw new InstantCommandRejected(`instant recovery ${command.plan.instantId} exists already`);
      }
      return [{ type: 'InstantRecoveryStarted', data: command.plan }];
    case 'serve':
      if (state.status !== 'starting' || !id) throw new InstantCommandRejected(`instant recovery ${id ?? ''} is ${state.status}, not starting`);
      return [{ type: 'InstantServing', data: { instantId: id, ...command.serving } }];
    case 'mirror':
      if (!id) throw new InstantCommandRejected('no such instant recovery');
      // Again while mirroring: a mover that died mid-mirror left QEMU's mirror jobs running; the next one takes them over.
      if (state.status !== 'serving' && state.status !== 'mirroring') throw new InstantCommandRejected(`instant recovery ${id} is ${state.status}: only a serving one can be finished`);
      if (state.status === 'mirroring' && JSON.stringify(state.mirroring?.disks) !== JSON.stringify(command.disks)) {
        throw new InstantCommandRejected(`instant recovery ${id} is already mirroring to ${state.mirroring?.disks.map((d) => d.path).join(', ')}`);
      }
      return [{ type: 'InstantMirroring', data: { instantId: id, worker: command.worker, disks: [...command.disks] } }];
    case 'finish':
      if (state.status === 'finished') return [];
      if (state.status !== 'mirroring' || !id) throw new InstantCommandRejected(`instant recovery ${id ?? ''} is ${state.status}, not mirroring`);
      return [{ type: 'InstantFinished', data: { instantId: id, disks: [...command.disks], durationMs: command.durationMs } }];
    case 'discard':
      if (!id) throw new InstantCommandRejected('no such instant recovery');
      if (state.status === 'discarded') return [];
      if (state.status === 'finished') throw new InstantCommandRejected(`instant recovery ${id} is finished: its VM runs from local disks now and is not discarded`);
      if (state.status === 'mirroring') throw new InstantCommandRejected(`instant recovery ${id} is mirroring: wait for it to finish, or stop the mirror first`);
      return [{ type: 'InstantDiscarded', data: { instantId: id, removed: command.removed.slice(0, 256).map((r) => r.slice(0, 4200)) } }];
    case 'fail':
      if (!id || isInstantOver(state)) return [];
      return [{ type: 'InstantFailed', data: { instantId: id, step: command.step, reason: command.reason.slice(0, 4096), vmRunning: command.vmRunning } }];
  }
}

export const instantDecider: Decider<InstantCommand, KnownEvent, InstantState> = {
  decide: decideInstant,
  evolve: evolveInstant,
  initialState: initialInstantState,
};

/** The session as the CLI and the API show it, before the live figures (overlay size, mirror progress) are added. */
export function instantView(state: InstantState): InstantView | undefined {
  const p = state.plan;
  if (state.status === 'none' || !p) return undefined;
  const s = state.serving;
  const target = new Map((state.finished?.disks ?? state.mirroring?.disks ?? []).map((d) => [d.disk, d.path]));
  return {
    instantId: p.instantId, state: state.status, restorePointId: p.restorePointId, vmName: p.vmName, dir: p.dir,
    ...(state.startedAt ? { startedAt: state.startedAt } : {}), ...(state.endedAt ? { endedAt: state.endedAt } : {}),
    running: false,
    ...(s?.pid ? { pid: s.pid } : {}), ...(s ? { exporterPid: s.exporterPid, qmpSocket: s.qmpSocket, serialLog: s.serialLog } : {}),
    overlayBytes: 0,
    disks: p.disks.map((d) => ({ disk: d.disk, sizeBytes: d.sizeBytes, overlay: d.overlay, ...(target.has(d.disk) ? { path: target.get(d.disk)! } : {}) })),
    ...(state.failure ? { failure: { step: state.failure.step, reason: state.failure.reason } } : {}),
  };
}
