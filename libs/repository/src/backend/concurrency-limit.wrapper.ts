// Caps the number of backend calls in flight (a semaphore), so a wide pipeline cannot open
// hundreds of S3 connections or file handles at once.
import type { Backend, ObjectInfo } from './backend.ts';
import { Semaphore } from '../concurrency/semaphore.ts';

export { Semaphore };

export function withConcurrencyLimit(inner: Backend, options: { limit: number }): Backend {
  const sem = new Semaphore(options.limit);
  return {
    location: inner.location,
    put: (key, data, opts) => sem.run(() => inner.put(key, data, opts)),
    get: (key) => sem.run(() => inner.get(key)),
    getRange: (key, offset, length) => sem.run(() => inner.getRange(key, offset, length)),
    stat: (key) => sem.run(() => inner.stat(key)),
    exists: (key) => sem.run(() => inner.exists(key)),
    delete: (key) => sem.run(() => inner.delete(key)),
    async *list(prefix: string): AsyncIterable<ObjectInfo> {
      // A permit per page pull, not for the whole listing: a caller that reads objects
      // while it lists must not deadlock against its own listing.
      const it = inner.list(prefix)[Symbol.asyncIterator]();
      try {
        for (;;) {
          const step = await sem.run(() => it.next());
          if (step.done) return;
          yield step.value;
        }
      } finally {
        await it.return?.();
      }
    },
    flush: (group) => sem.run(() => inner.flush(group)),
    ...(inner.removeDebris ? { removeDebris: (ms: number) => inner.removeDebris!(ms) } : {}),
    // A local file read by its reader holds no connection: nothing to count.
    ...(inner.localPath ? { localPath: (key: string) => inner.localPath!(key) } : {}),
    close: () => inner.close?.() ?? Promise.resolve(),
  };
}
