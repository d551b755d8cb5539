// What the bridge needs of a destination: accept a batch of events, or throw so the batch
// is sent again. `send` resolves only once the destination has the batch (as far as its
// protocol can tell): the bridge saves its checkpoint after that, never before.
import type { Recorded } from '@cairn/eventlog';

export interface AuditTarget {
  /** Also the checkpoint key suffix: letters, digits, `-`, `_`. */
  readonly name: string;
  send(records: readonly Recorded[]): Promise<void>;
  close(): Promise<void>;
}

/** A refusal worth reporting with its HTTP status (the bridge retries every failure). */
export class TargetRejectedError extends Error {
  constructor(readonly target: string, readonly status: number, body: string) {
    super(`${target}: answered ${status}${body ? `: ${body.slice(0, 200)}` : ''}`);
    this.name = 'TargetRejectedError';
  }
}

/** POSTs a body; resolves on 2xx, throws TargetRejectedError otherwise, or the network error. */
export async function postBody(
  target: string, url: string, headers: Record<string, string>, body: string, timeoutMs: number,
): Promise<void> {
  const res = await fetch(url, { method: 'POST', headers, body, signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  if (res.status < 200 || res.status >= 300) throw new TargetRejectedError(target, res.status, text);
}
