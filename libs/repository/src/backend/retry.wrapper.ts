// Retries transient backend failures with exponential backoff and jitter, and bounds every
// call with a timeout so a hung connection becomes a transient error instead of a stuck job.
// Permanent errors (not found, bad key, access denied, disk full) pass through at once.
import { BackendError, type Backend, type ObjectInfo } from './backend.ts';

export interface RetryOptions {
  /** Total attempts per call, first included (default 5). */
  attempts?: number;
  /** Backoff before the 2nd attempt; doubles each time (default 250 ms). */
  baseDelayMs?: number;
  /** Cap on one backoff (default 15 s). */
  maxDelayMs?: number;
  /** Per attempt; a call still pending after this fails transiently (default 120 s, 0 = none).
   *  The abandoned call may still complete in the background: puts are atomic, so this is safe,
   *  but a retried `ifNotExists` put may then answer `false` for an object its own first
   *  attempt wrote. */
  timeoutMs?: number;
  /** Injected for tests: uniform [0,1) and the backoff sleep. */
  random?: () => number;
  sleep?: (ms: number) => Promise<void>;
  /** Called before each backoff (logging, metrics). */
  onRetry?: (info: { op: string; key: string | undefined; attempt: number; delayMs: number; error: BackendError }) => void;
}

/** Backoff before attempt `attempt + 1`: half fixed, half jitter, so that many clients that
 *  failed together do not retry together, yet the wait never collapses to zero. */
export function backoffDelay(attempt: number, baseDelayMs: number, maxDelayMs: number, random: () => number): number {
  const ceiling = Math.min(maxDelayMs, baseDelayMs * 2 ** (attempt - 1));
  return ceiling / 2 + random() * (ceiling / 2);
}

export function withRetry(inner: Backend, options: RetryOptions = {}): Backend {
  const attempts = Math.max(1, options.attempts ?? 5);
  const baseDelayMs = options.baseDelayMs ?? 250;
  const maxDelayMs = options.maxDelayMs ?? 15_000;
  const timeoutMs = options.timeoutMs ?? 120_000;
  const random = options.random ?? Math.random;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));

  const timed = <T>(op: string, key: string | undefined, call: () => Promise<T>): Promise<T> => {
    if (timeoutMs <= 0) return call();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new BackendError(`${op}${key ? ` ${key}` : ''} on ${inner.location} timed out after ${timeoutMs} ms`, true, key)),
        timeoutMs,
      );
    });
    return Promise.race([call(), timeout]).finally(() => clearTimeout(timer));
  };

  /** Waits before the next attempt, or throws the error if it must not be retried. */
  const afterFailure = async (op: string, key: string | undefined, attempt: number, e: unknown): Promise<void> => {
    if (!(e instanceof BackendError) || !e.transient) throw e;
    if (attempt >= attempts) {
      throw new BackendError(`${e.message} (gave up after ${attempts} attempts)`, true, e.key ?? key, { cause: e });
    }
    const delayMs = backoffDelay(attempt, baseDelayMs, maxDelayMs, random);
    options.onRetry?.({ op, key, attempt, delayMs, error: e });
    await sleep(delayMs);
  };

  const retried = async <T>(op: string, key: string | undefined, call: () => Promise<T>): Promise<T> => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await timed(op, key, call);
      } catch (e) {
        await afterFailure(op, key, attempt, e);
      }
    }
  };

  return {
    location: inner.location,
    put: (key, data, opts) => retried('put', key, () => inner.put(key, data, opts)),
    get: (key) => retried('get', key, () => inner.get(key)),
    getRange: (key, offset, length) => retried('getRange', key, () => inner.getRange(key, offset, length)),
    stat: (key) => retried('stat', key, () => inner.stat(key)),
    exists: (key) => retried('exists', key, () => inner.exists(key)),
    delete: (key) => retried('delete', key, () => inner.delete(key)),
    async *list(prefix: string): AsyncIterable<ObjectInfo> {
      // A listing that fails midway starts over; keys already yielded are skipped, so the
      // caller still sees each key once. (The set costs memory proportional to the listing.)
      const seen = new Set<string>();
      for (let attempt = 1; ; attempt++) {
        const it = inner.list(prefix)[Symbol.asyncIterator]();
        let failure: { error: unknown } | undefined;
        try {
          for (;;) {
            const step = await timed('list', undefined, () => it.next());
            if (step.done) return;
            if (seen.has(step.value.key)) continue;
            seen.add(step.value.key);
            yield step.value;
          }
        } catch (e) {
          failure = { error: e };
        } finally {
          // Also runs when the caller stops early. Not awaited: after a timeout the inner
          // iterator may still be stuck in next().
          void it.return?.()?.catch(() => undefined);
        }
        await afterFailure('list', undefined, attempt, failure.error);
      }
    },
    flush: (group) => retried('flush', undefined, () => inner.flush(group)),
    ...(inner.removeDebris ? { removeDebris: (ms: number) => inner.removeDebris!(ms) } : {}),
    // A local file its reader cannot read is read again through `get`, which retries.
    ...(inner.localPath ? { localPath: (key: string) => inner.localPath!(key) } : {}),
    close: () => inner.close?.() ?? Promise.resolve(),
  };
}
