import { describe, expect, it } from 'vitest';
import { startGate, type StartGateInput } from './start-gate.ts';

const free: StartGateInput = { outsideWindow: false, vmBusy: false, runningOnHost: 0, maxJobsPerHost: 2, runningOnRepository: 0, maxJobsPerRepository: 3 };

describe('start gate', () => {
  it('starts when the window, the VM, its host and its repository all have room', () => {
    expect(startGate(free)).toEqual({ start: true });
    expect(startGate({ ...free, runningOnHost: 1, runningOnRepository: 2 })).toEqual({ start: true });
  });

  it('waits for a full repository, even when the host has room', () => {
    expect(startGate({ ...free, runningOnRepository: 3 })).toEqual({ start: false, waitFor: 'repository' });
    expect(startGate({ ...free, runningOnRepository: 3, maxJobsPerRepository: 4 })).toEqual({ start: true });
  });

  it('a repository without a limit of its own never holds a job back', () => {
    expect(startGate({ ...free, runningOnRepository: 500, maxJobsPerRepository: undefined })).toEqual({ start: true });
  });

  it('waits for a full host, a busy VM or the window, in that order of what it names', () => {
    expect(startGate({ ...free, runningOnHost: 2 })).toEqual({ start: false, waitFor: 'host' });
    expect(startGate({ ...free, runningOnHost: 2, vmBusy: true })).toEqual({ start: false, waitFor: 'vm' });
    expect(startGate({ ...free, vmBusy: true, outsideWindow: true })).toEqual({ start: false, waitFor: 'window' });
    expect(startGate({ ...free, runningOnHost: undefined, maxJobsPerHost: 1 })).toEqual({ start: true });
  });
});
