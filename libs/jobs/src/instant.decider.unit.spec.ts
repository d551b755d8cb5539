import { describe, expect, it } from 'vitest';
import { newEvent, type KnownEvent } from '@cairn/contracts';
import { deciderSpec } from './testing/decider-spec.ts';
import { instantDecider, InstantCommandRejected, instantView } from './instant.decider.ts';

const meta = { site: 'local', actor: { kind: 'service' as const, id: 'test' }, streamId: 'instant-i1', correlationId: 'i1', causationId: null };
const ev = (type: string, data: unknown) => newEvent(type as never, data as never, meta) as KnownEvent;
const plan = {
  instantId: 'i1', restorePointId: 'rp1', repository: 'default', vmName: 'web', dir: '/r/vms/web', worker: 'w1', uuid: 'u', macs: {}, start: true,
  disks: [{ disk: 'disk0', sizeBytes: 1024, exportName: 'disk0', overlay: '/r/vms/web/disk0.overlay.qcow2', node: 'disk0-fmt' }], config: { kind: 'qemu' },
};
const serving = { exporterPid: 10, exportSocket: '/r/vms/web/export.sock', started: true, pid: 11, qmpSocket: '/r/vms/web/qmp.sock', serialLog: '/r/vms/web/serial.log', startScript: '/r/vms/web/start.sh', durationMs: 5 };
const target = [{ disk: 'disk0', path: '/r/vms/web/disk0.raw', format: 'raw' as const }];
const started = ev('InstantRecoveryStarted', plan);
const served = ev('InstantServing', { instantId: 'i1', ...serving });
const mirroring = ev('InstantMirroring', { instantId: 'i1', worker: 'w1', disks: target });
const spec = deciderSpec(instantDecider);

describe('instant recovery decider', () => {
  it('start, serve, mirror, finish', () => {
    spec.given([]).when({ kind: 'start', plan }).then([{ type: 'InstantRecoveryStarted', data: plan }]);
    spec.given([started]).when({ kind: 'serve', serving }).then([{ type: 'InstantServing', data: { instantId: 'i1', ...serving } }]);
    spec.given([started, served]).when({ kind: 'mirror', worker: 'w1', disks: target }).then([{ type: 'InstantMirroring', data: { instantId: 'i1', worker: 'w1', disks: target } }]);
    spec.given([started, served, mirroring]).when({ kind: 'finish', disks: [{ ...target[0]!, sizeBytes: 1024 }], durationMs: 9 })
      .then([{ type: 'InstantFinished', data: { instantId: 'i1', disks: [{ ...target[0]!, sizeBytes: 1024 }], durationMs: 9 } }]);
  });

  it('the same start again is nothing; another under the same id is refused', () => {
    spec.given([started]).when({ kind: 'start', plan }).thenNothing();
    spec.given([started]).when({ kind: 'start', plan: { ...plan, vmName: 'other' } }).thenRefuses(InstantCommandRejected);
  });

  it('a mover that died mid-mirror: the next one mirrors again to the same place, not elsewhere', () => {
    spec.given([started, served, mirroring]).when({ kind: 'mirror', worker: 'w2', disks: target }).then([{ type: 'InstantMirroring', data: { instantId: 'i1', worker: 'w2', disks: target } }]);
    spec.given([started, served, mirroring]).when({ kind: 'mirror', worker: 'w2', disks: [{ ...target[0]!, path: '/elsewhere.raw' }] }).thenRefuses(/already mirroring/);
  });

  it('discard: refused once finished or while mirroring; allowed after a failed start; once only', () => {
    const finished = ev('InstantFinished', { instantId: 'i1', disks: [], durationMs: 1 });
    spec.given([started, served, mirroring, finished]).when({ kind: 'discard', removed: [] }).thenRefuses(/finished/);
    spec.given([started, served, mirroring]).when({ kind: 'discard', removed: [] }).thenRefuses(/mirroring/);
    const failed = ev('InstantFailed', { instantId: 'i1', step: 'serve', reason: 'no exporter', vmRunning: false });
    spec.given([started, failed]).when({ kind: 'discard', removed: ['pid 10'] }).then([{ type: 'InstantDiscarded', data: { instantId: 'i1', removed: ['pid 10'] } }]);
    spec.given([started, ev('InstantDiscarded', { instantId: 'i1', removed: [] })]).when({ kind: 'discard', removed: [] }).thenNothing();
  });

  it('a failed mirror leaves the session serving (finish again or discard)', () => {
    const failed = ev('InstantFailed', { instantId: 'i1', step: 'mirror', reason: 'ENOSPC', vmRunning: true });
    let s = instantDecider.initialState();
    for (const e of [started, served, mirroring, failed]) s = instantDecider.evolve(s, e);
    expect(s.status).toBe('serving');
    expect(instantView(s)).toMatchObject({ state: 'serving', failure: { step: 'mirror', reason: 'ENOSPC' }, pid: 11, exporterPid: 10 });
    spec.given([started, served, mirroring, failed]).when({ kind: 'mirror', worker: 'w1', disks: target }).then([{ type: 'InstantMirroring', data: { instantId: 'i1', worker: 'w1', disks: target } }]);
  });
});
