import { describe, expect, it } from 'vitest';
import { InvalidEventError, compileEventChecksWhenIdle, compileQueuedEventChecks, newEvent, validateEvent, type EventDataMap } from '../index.ts';

// validate.ts checks a type's first events interpreted and compiles its schema after a few:
// the verdict and the problems must not depend on which of the two ran.
const meta = { site: 'site-a', actor: { kind: 'service' as const, id: 'scheduler@site-a' }, streamId: 'job-tier' };

function problems(value: unknown): string[] {
  try {
    validateEvent(value);
  } catch (e) {
    expect(e).toBeInstanceOf(InvalidEventError);
    return [(e as InvalidEventError).code, ...(e as InvalidEventError).problems.map((p) => `${p.path} ${p.message}`)];
  }
  return [];
}

describe('event validation before and after its schema is compiled', () => {
  it('gives the same verdict and problems on the first check and the fiftieth', () => {
    const data: EventDataMap['JobRequested'] = { jobId: 'tier', vmId: 'vm1', policyId: null, mode: 'auto', trigger: 'manual' };
    const good = JSON.parse(JSON.stringify(newEvent('JobRequested', data, meta))) as Record<string, unknown>;
    const bad = { ...good, id: 'nope', data: { ...data, mode: 'fast', extra: 1 } };
    const wrongFormat = { ...good, time: 'yesterday' };
    const first = [problems(good), problems(bad), problems(wrongFormat)];
    expect(first[0]).toEqual([]);
    expect(first[1]![0]).toBe('schema_mismatch');
    expect(first[1]!.length).toBeGreaterThan(2);
    expect(first[2]![0]).toBe('schema_mismatch');
    for (let i = 0; i < 50; i++) expect([problems(good), problems(bad), problems(wrongFormat)]).toEqual(first);
  });
});

describe('event checks compiled when the process is quiet', () => {
  it('queues each type at its first check and compiles the queue at once, verdicts unchanged', () => {
    expect(compileQueuedEventChecks()).toBe(0); // not asked for: nothing queued
    compileEventChecksWhenIdle(60_000);
    const data: EventDataMap['JobCompleted'] = { jobId: 'idle', restorePointId: 'rp1', bytesRead: 10, bytesStored: 5, durationMs: 3 };
    const good = JSON.parse(JSON.stringify(newEvent('JobCompleted', data, { ...meta, streamId: 'job-idle' }))) as Record<string, unknown>;
    const bad = { ...good, data: { ...data, jobId: 7 } };
    const before = [problems(good), problems(bad), problems(good)];
    expect(compileQueuedEventChecks()).toBe(1); // one type, queued once
    expect(compileQueuedEventChecks()).toBe(0);
    expect([problems(good), problems(bad), problems(good)]).toEqual(before);
  });
});
