// The storage contract every repository backend implements (directory, S3) and every
// wrapper (retry, concurrency limit, bandwidth limit, fault injection) preserves.
//
// - Keys are `/`-separated relative paths of [A-Za-z0-9._-] segments; no `..`, no leading `/`.
// - `put` stores the whole object atomically: a reader never sees a partial object.
//   With `ifNotExists`, an existing object is left alone and `put` resolves `false`.
// - `get`/`getRange`/`stat` of a missing key throw `NotFoundError` (permanent).
// - `delete` of a missing key succeeds (idempotent).
// - `list` yields every key under a prefix exactly once, in no promised order, paging inside.
// - Errors are `BackendError`s: `transient` ones may succeed on retry (timeouts, 5xx,
//   connection resets); everything else is permanent and must not be retried.

export interface ObjectInfo {
  readonly key: string;
  readonly size: number;
  readonly mtime: Date;
}

export interface PutOptions {
  /** Store only if the key is absent; `false` comes back when it was there. */
  readonly ifNotExists?: boolean;
  /**
   * The object need be neither durable nor visible under its key when the put returns, only
   * complete once it is visible (never half an object under its key): the caller calls
   * `flush()` before anything depends on it, e.g. a restore point's chunks and index pages
   * before its manifest. Lets the directory backend make a whole batch of objects durable
   * with one file-system sync, and name them only then.
   */
  readonly deferSync?: boolean;
  /** Where a failure to make this deferred put durable is recorded; `flush(group)` throws it. */
  readonly flushGroup?: FlushGroup;
}

/**
 * The deferred puts of one caller (one restore point writer): a backend that fails to make
 * some of them durable records the error here, so that this caller's `flush(group)` fails even
 * when another caller's flush already ran the failed batch.
 */
export interface FlushGroup {
  failure?: Error;
  /**
   * The group's deferred puts will be few (an incremental's changed blocks): a backend that
   * syncs them one by one at the flush may start each sync as soon as the put is written, so
   * the flush after the last put finds most of them durable already, and name each once its
   * own data is durable (the directory backend: docs/repository-backends.md).
   */
  readonly syncEarly?: boolean;
}

export interface Backend {
  /** Human-readable location for messages, e.g. `dir:/srv/repo` or `s3://bucket/prefix`. */
  readonly location: string;
  put(key: string, data: Uint8Array, options?: PutOptions): Promise<boolean>;
  /** Makes every earlier `deferSync` put durable and visible (a no-op where every put already
   *  is); throws if one of `group`'s puts (without a group: an ungrouped put) could not be.
   *  Required, so that no wrapper can forget to pass it on: a deferred put that is never
   *  flushed never gets its name. */
  flush(group?: FlushGroup): Promise<void>;
  /** Removes what crashed puts left behind (temp files) older than `olderThanMs`; only backends that leave any. */
  removeDebris?(olderThanMs: number): Promise<{ readonly files: number; readonly bytes: number }>;
  get(key: string): Promise<Uint8Array>;
  /**
   * The local file that holds `key`'s object as `get` would read it, for a reader that opens it
   * itself (a restore's chunk worker, so the bytes never pass through the main thread); only
   * a directory backend has one. A wrapper that shapes reads (a bandwidth limit) leaves it out,
   * so those reads go through `get`.
   */
  localPath?(key: string): string;
  getRange(key: string, offset: number, length: number): Promise<Uint8Array>;
  stat(key: string): Promise<ObjectInfo>;
  exists(key: string): Promise<boolean>;
  list(prefix: string): AsyncIterable<ObjectInfo>;
  delete(key: string): Promise<void>;
  close?(): Promise<void>;
}

export class BackendError extends Error {
  constructor(
    message: string,
    readonly transient: boolean,
    readonly key?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'BackendError';
  }
}

export class NotFoundError extends BackendError {
  constructor(key: string, location: string) {
    super(`object ${key} not found in ${location}`, false, key);
    this.name = 'NotFoundError';
  }
}
