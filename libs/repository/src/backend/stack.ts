// Puts the production wrappers around a backend in the one order we support:
// caller → bandwidth limit → concurrency limit → retry (with per-call timeout) → backend.
// Why this order is in docs/repository-backends.md.
import type { Backend } from './backend.ts';
import { withBandwidthLimit, type BandwidthLimitOptions } from './bandwidth-limit.wrapper.ts';
import { withConcurrencyLimit } from './concurrency-limit.wrapper.ts';
import { withRetry, type RetryOptions } from './retry.wrapper.ts';

export interface BackendStackOptions {
  /** Retry settings, or false for none (default: retry with its defaults). */
  retry?: RetryOptions | false;
  /** Most calls in flight, or false for no limit (default 16). */
  concurrency?: number | false;
  /** Bandwidth limits; unset = unlimited. */
  bandwidth?: BandwidthLimitOptions;
}

export function wrapBackend(backend: Backend, options: BackendStackOptions = {}): Backend {
  let b = backend;
  if (options.retry !== false) b = withRetry(b, options.retry ?? {});
  const limit = options.concurrency ?? 16;
  if (limit !== false) b = withConcurrencyLimit(b, { limit });
  if (options.bandwidth && (options.bandwidth.uploadBytesPerSec !== undefined || options.bandwidth.downloadBytesPerSec !== undefined)) {
    b = withBandwidthLimit(b, options.bandwidth);
  }
  return b;
}
