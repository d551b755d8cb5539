// Public surface of the storage backends: the contract, the directory and S3 backends,
// the URL factory and the production wrappers. Test support (fault injection, the
// conformance suite) lives in ./testing/ and is deliberately not exported here.
export * from './backend.ts';
export { assertValidKey, assertValidPrefix, isValidKey, MAX_KEY_LENGTH } from './keys.ts';
export { DirectoryBackend, type DirectoryBackendOptions } from './directory.adapter.ts';
export { S3Backend, type S3BackendOptions } from './s3.adapter.ts';
export { createBackendFromUrl, s3OptionsFromUrl, type BackendUrlOptions } from './from-url.ts';
export { withRetry, backoffDelay, type RetryOptions } from './retry.wrapper.ts';
export { withConcurrencyLimit, Semaphore } from './concurrency-limit.wrapper.ts';
export { withBandwidthLimit, systemClock, type BandwidthLimitOptions, type Clock } from './bandwidth-limit.wrapper.ts';
export { TokenBucket } from './token-bucket.ts';
export { wrapBackend, type BackendStackOptions } from './stack.ts';
export {
  LOCKS_PREFIX, lockKeyOf, lockedKeyOf, isLockKey, encodeLockRecord, parseLockRecord, ObjectLockedError, type LockRecord,
} from './object-lock.ts';
