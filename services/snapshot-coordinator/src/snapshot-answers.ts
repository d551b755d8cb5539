// What the coordinator answered for snapshots that are no longer open, so that a repeated
// RequestSnapshot or ReleaseSnapshot is answered as the first one was. Its two commands keep no
// replies in the command reply store (four replicated KV writes per backup job): an open view is
// found by its snapshot id in the view records, and a view that is gone is found here.
// In memory and bounded (the oldest answers go first): after a restart, or long after, a repeat
// is decided again, against the job's stream, which refuses to record anything twice.
import type { SnapshotCommandError } from './snapshot-coordinator.service.ts';

/** `null`: the command succeeded; else the refusal it was answered with. */
export type Answer = SnapshotCommandError | null;

interface Entry { readonly jobId: string; request?: Answer; release?: { readonly answer: Answer; readonly success: boolean } }

export class SnapshotAnswers {
  readonly #entries = new Map<string, Entry>();

  constructor(private readonly capacity = 65_536) {}

  /** What RequestSnapshot of this snapshot for this job answered, if remembered. */
  request(snapshotId: string, jobId: string): Answer | undefined {
    const e = this.#entries.get(snapshotId);
    return e?.jobId === jobId ? e.request : undefined;
  }

  /**
   * What ReleaseSnapshot of this snapshot with this outcome answered (a release the lease reaper
   * made: whatever the outcome), if remembered. A different outcome is another command: not
   * answered from here.
   */
  release(snapshotId: string, jobId: string, success: boolean): Answer | undefined {
    const e = this.#entries.get(snapshotId);
    if (e?.jobId !== jobId || !e.release) return undefined;
    return e.release.answer || e.release.success === success ? e.release.answer : undefined;
  }

  rememberRequest(snapshotId: string, jobId: string, answer: Answer): void {
    this.#entry(snapshotId, jobId).request = answer;
  }

  rememberRelease(snapshotId: string, jobId: string, answer: Answer, success: boolean): void {
    this.#entry(snapshotId, jobId).release = { answer, success };
  }

  get size(): number { return this.#entries.size; }

  #entry(snapshotId: string, jobId: string): Entry {
    let e = this.#entries.get(snapshotId);
    if (!e || e.jobId !== jobId) {
      e = { jobId };
      this.#entries.delete(snapshotId);
      this.#entries.set(snapshotId, e);
      if (this.#entries.size > this.capacity) this.#entries.delete(this.#entries.keys().next().value!);
    }
    return e;
  }
}
