// Whether a requested backup may start now: pure, from what the scheduler counts. A job that may
// not start stays requested (queued, never failed) and is looked at again.

export interface StartGateInput {
  /** A scheduled job outside its policy's backup window. */
  readonly outsideWindow: boolean;
  /** Another backup of the same VM is in flight. */
  readonly vmBusy: boolean;
  /** Jobs running now on the VM's hypervisor host (undefined: the host is not known yet). */
  readonly runningOnHost: number | undefined;
  readonly maxJobsPerHost: number;
  /** Jobs running now that write to the job's repository. */
  readonly runningOnRepository: number;
  /** Absent: the repository has no limit of its own. */
  readonly maxJobsPerRepository: number | undefined;
}

export type StartGate = { readonly start: true } | { readonly start: false; readonly waitFor: 'window' | 'vm' | 'host' | 'repository' };

export function startGate(i: StartGateInput): StartGate {
  if (i.outsideWindow) return { start: false, waitFor: 'window' };
  if (i.vmBusy) return { start: false, waitFor: 'vm' };
  if (i.runningOnHost !== undefined && i.runningOnHost >= i.maxJobsPerHost) return { start: false, waitFor: 'host' };
  if (i.maxJobsPerRepository !== undefined && i.runningOnRepository >= i.maxJobsPerRepository) return { start: false, waitFor: 'repository' };
  return { start: true };
}
