import { describe, expect, it } from 'vitest';
import {
  EVENT_SCHEMAS, InvalidEventError, checkEvent, latestVersion, newEvent, parseEvent, upcast, validateEvent,
  payloadPreview, type EventDataMap,
} from '../index.ts';

const meta = { site: 'site-a', actor: { kind: 'service' as const, id: 'scheduler@site-a' }, streamId: 'job-j1' };

function rejects(fn: () => unknown): InvalidEventError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(InvalidEventError);
    return e as InvalidEventError;
  }
  throw new Error('expected InvalidEventError');
}

describe('event registry', () => {
  it('builds and validates a JobRequested at its current version', () => {
    const data: EventDataMap['JobRequested'] = { jobId: 'j1', vmId: 'vm1', policyId: null, mode: 'auto', trigger: 'manual' };
    const e = newEvent('JobRequested', data, meta);
    expect(e.schemaVersion).toBe(latestVersion('JobRequested'));
    expect(e.correlationId).toBe('job-j1');
    expect(e.causationId).toBeNull();
    const back = validateEvent(JSON.parse(JSON.stringify(e)));
    expect(back).toEqual(e);
  });

  it('validates a SnapshotTaken with either a socket or host and port', () => {
    const exports = [{ disk: 'vda', exportName: 'vda', sizeBytes: 1 << 30, mode: 'incremental' as const, reason: 'bitmap cairn-3', dirtyBitmapContext: 'qemu:dirty-bitmap:cairn-3' }];
    validateEvent(newEvent('SnapshotTaken', { jobId: 'j1', snapshotId: 's1', nbd: { socket: '/run/x.sock', exports } }, meta));
    validateEvent(newEvent('SnapshotTaken', { jobId: 'j1', snapshotId: 's1', nbd: { host: '127.0.0.1', port: 10809, exports } }, meta));
    const err = rejects(() => validateEvent({ ...newEvent('SnapshotTaken', { jobId: 'j1', snapshotId: 's1', nbd: { socket: '/s', exports } }, meta), data: { jobId: 'j1', snapshotId: 's1', nbd: { exports } } }));
    expect(err.code).toBe('schema_mismatch');
  });

  it('lists every problem of a bad event with its path', () => {
    const good = newEvent('JobRequested', { jobId: 'j1', vmId: 'vm1', policyId: 'p1', mode: 'full', trigger: 'schedule' }, meta);
    const err = rejects(() => validateEvent({ ...good, id: 'nope', data: { ...good.data, mode: 'fast', extra: 1 } }));
    expect(err.code).toBe('schema_mismatch');
    const paths = err.problems.map((p) => p.path);
    expect(paths).toContain('/id');
    expect(paths).toContain('/data/mode');
    expect(paths).toContain('/data/extra');
    expect(err.message).toContain('JobRequested v1');
  });

  it('upcasts JobFailed v1 (step, error) to v2 (phase, reason) on read', () => {
    const v1 = {
      ...newEvent('JobCancelled', { jobId: 'j1', reason: 'x' }, meta),
      type: 'JobFailed', schemaVersion: 1, data: { jobId: 'j1', step: 'snapshot', error: 'qmp timeout' },
    };
    expect(checkEvent(v1).schemaVersion).toBe(1);
    const e = validateEvent(v1);
    expect(e.schemaVersion).toBe(2);
    expect(e.type).toBe('JobFailed');
    if (e.type !== 'JobFailed') throw new Error('narrowing');
    expect(e.data).toEqual({ jobId: 'j1', phase: 'snapshot', reason: 'qmp timeout', retryable: false });
    expect(upcast(e)).toBe(e);
    // a v1 event must have the v1 shape: v2 fields under v1 are refused
    expect(rejects(() => validateEvent({ ...v1, data: e.data })).code).toBe('schema_mismatch');
  });

  it('reads JobStarted v1 (an older log, its snapshot asked in a SnapshotRequested) as v2 without a snapshot', () => {
    const v1 = { ...newEvent('JobStarted', { jobId: 'j1', attempt: 2 }, meta), schemaVersion: 1 };
    expect(checkEvent(v1).schemaVersion).toBe(1);
    const e = validateEvent(v1);
    expect(e.schemaVersion).toBe(2);
    expect(e.data).toEqual({ jobId: 'j1', attempt: 2 });
    // v2 with the snapshot it asks for; under v1 that shape is refused
    const v2 = newEvent('JobStarted', { jobId: 'j1', attempt: 1, snapshot: { vmId: 'vm1', snapshotId: 's1' } }, meta);
    expect(validateEvent(v2).data).toEqual(v2.data);
    expect(rejects(() => validateEvent({ ...v2, schemaVersion: 1 })).code).toBe('schema_mismatch');
  });

  it('refuses unknown types, future versions, garbage and wrong streams with a clear code', () => {
    const good = newEvent('JobStarted', { jobId: 'j1', attempt: 1 }, meta);
    expect(rejects(() => validateEvent({ ...good, type: 'JobExploded' })).code).toBe('unknown_type');
    const future = rejects(() => validateEvent({ ...good, schemaVersion: 7 }));
    expect(future.code).toBe('unknown_version');
    expect(future.message).toContain('newer than this build knows');
    expect(rejects(() => parseEvent('{not json')).code).toBe('malformed_json');
    expect(rejects(() => validateEvent([1, 2])).code).toBe('not_an_object');
    expect(rejects(() => validateEvent({ ...good, streamId: 'vm-1' })).code).toBe('wrong_stream');
  });

  it('has a current data schema for every type and only known categories', () => {
    for (const [type, def] of Object.entries(EVENT_SCHEMAS)) {
      expect(def.type).toBe(type);
      expect(def.categories.length).toBeGreaterThan(0);
    }
  });

  it('keeps at most 1 KiB of a dead-lettered payload', () => {
    const preview = payloadPreview(new Uint8Array(5000).fill(65));
    expect(Buffer.from(preview, 'base64').length).toBe(1024);
    validateEvent(newEvent('MessageDeadLettered', {
      consumer: 'catalogue', subject: 'cairn.site-a.evt.job.job-1', reason: 'bad', deliveries: 5,
      payloadPreview: preview, payloadBytes: 5000, headers: { 'Nats-Msg-Id': ['x'] },
    }, { ...meta, streamId: 'deadletter-catalogue' }));
  });
});
