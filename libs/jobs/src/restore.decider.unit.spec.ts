import { describe, expect, it } from 'vitest';
import { newEvent, type KnownEvent } from '@cairn/contracts';
import { decideRestore, evolveRestore, initialRestoreState, RestoreCommandRejected, type RestoreCommand, type RestorePlan, type RestoreState } from './restore.decider.ts';

const request = {
  restoreId: 'r1', restorePointId: 'rp1', repository: 'default', ownTarget: false,
  target: { kind: 'file' as const, disk: 'disk0', path: '/restores/a.raw', format: 'raw' as const, overwrite: false },
};
const plan: RestorePlan = { source: 'local', sourceLocation: '/repo', disks: [{ disk: 'disk0', path: '/restores/a.raw', partialPath: '/restores/a.raw.cairn-restore-r1', format: 'raw', sizeBytes: 4096 }] };
const meta = { site: 'local', actor: { kind: 'service' as const, id: 'test' }, streamId: 'restore-r1', correlationId: 'r1', causationId: null };

/** Given these commands (each decided on the state the previous ones left), the state. */
function given(...commands: RestoreCommand[]): RestoreState {
  let state = initialRestoreState();
  for (const c of commands) {
    for (const d of decideRestore(c, state)) state = evolveRestore(state, newEvent(d.type as never, d.data as never, meta) as KnownEvent);
  }
  return state;
}

describe('restore decider', () => {
  it('request, start with a plan, disk written, complete', () => {
    const s = given({ kind: 'request', data: request }, { kind: 'start', worker: 'w1', plan }, { kind: 'diskWritten', disk: 'disk0', sizeBytes: 4096, actorPath: '/restores/a.raw' });
    expect(decideRestore({ kind: 'complete', durationMs: 5 }, s)).toEqual([{ type: 'RestoreCompleted', data: { restoreId: 'r1', disks: [{ disk: 'disk0', path: '/restores/a.raw', sizeBytes: 4096 }], attempts: 1, durationMs: 5 } }]);
  });

  it('the same request twice is one job; another request under the same id is refused', () => {
    const s = given({ kind: 'request', data: request });
    expect(decideRestore({ kind: 'request', data: request }, s)).toEqual([]);
    expect(() => decideRestore({ kind: 'request', data: { ...request, restorePointId: 'rp2' } }, s)).toThrow(RestoreCommandRejected);
  });

  it('a redelivery repeats the first plan (a new one is ignored) and counts the attempt', () => {
    const s = given({ kind: 'request', data: request }, { kind: 'start', worker: 'w1', plan });
    const other: RestorePlan = { ...plan, source: 'replica', sourceLocation: '/elsewhere' };
    const [d] = decideRestore({ kind: 'start', worker: 'w2', plan: other }, s);
    expect(d).toMatchObject({ type: 'RestoreStarted', data: { worker: 'w2', attempt: 2, source: 'local', sourceLocation: '/repo' } });
  });

  it('the first start needs a plan; completing before every disk is written is refused', () => {
    const s = given({ kind: 'request', data: request });
    expect(() => decideRestore({ kind: 'start', worker: 'w1' }, s)).toThrow(/no plan/);
    const running = given({ kind: 'request', data: request }, { kind: 'start', worker: 'w1', plan });
    expect(() => decideRestore({ kind: 'complete', durationMs: 1 }, running)).toThrow(/disk0 not written/);
  });

  it('a disk written twice is recorded once; nothing happens after the end', () => {
    const s = given({ kind: 'request', data: request }, { kind: 'start', worker: 'w1', plan }, { kind: 'diskWritten', disk: 'disk0', sizeBytes: 4096, actorPath: '/restores/a.raw' });
    expect(decideRestore({ kind: 'diskWritten', disk: 'disk0', sizeBytes: 4096, actorPath: '/restores/a.raw' }, s)).toEqual([]);
    const failed = given({ kind: 'request', data: request }, { kind: 'fail', code: 'conflict', reason: 'exists' });
    expect(failed.status).toBe('failed');
    expect(decideRestore({ kind: 'start', worker: 'w1', plan }, failed)).toEqual([]);
    expect(decideRestore({ kind: 'fail', code: 'failed', reason: 'again' }, failed)).toEqual([]);
  });
});
