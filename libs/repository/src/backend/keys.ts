// Key and range validation shared by every backend, so a bad key is rejected the same way
// (and before any I/O) whether the repository lives in a directory or on S3.
import { BackendError } from './backend.ts';

const SEGMENT = /^[A-Za-z0-9._-]+$/;
/** Longest key we accept: well under S3's 1024-byte limit, leaving room for a prefix. */
export const MAX_KEY_LENGTH = 512;

/** Throws a permanent `BackendError` unless `key` is a valid object key (see backend.ts). */
export function assertValidKey(key: string): void {
  const problem = keyProblem(key);
  if (problem) throw new BackendError(`invalid object key ${JSON.stringify(key)}: ${problem}`, false, key);
}

/** Prefixes are keys cut anywhere: empty, or a key whose last segment may be partial or empty. */
export function assertValidPrefix(prefix: string): void {
  if (prefix === '') return;
  const body = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  const problem = keyProblem(body);
  if (problem) throw new BackendError(`invalid list prefix ${JSON.stringify(prefix)}: ${problem}`, false);
}

export function isValidKey(key: string): boolean {
  return keyProblem(key) === undefined;
}

function keyProblem(key: string): string | undefined {
  if (typeof key !== 'string' || key === '') return 'empty key';
  if (key.length > MAX_KEY_LENGTH) return `longer than ${MAX_KEY_LENGTH} characters`;
  if (key.startsWith('/')) return 'absolute keys are not allowed (no leading "/")';
  for (const segment of key.split('/')) {
    if (segment === '') return 'empty path segment ("//" or trailing "/")';
    if (segment === '.' || segment === '..') return `"${segment}" segments are not allowed`;
    if (!SEGMENT.test(segment)) return 'segments may only contain A-Z a-z 0-9 . _ -';
  }
  return undefined;
}

/** Checks a `getRange` request before I/O; the end is checked against the object size later. */
export function assertValidRange(key: string, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
    throw new BackendError(`invalid range offset=${offset} length=${length} for ${key}: both must be non-negative integers`, false, key);
  }
}

/** The error for a range that ends past the object: permanent, the data is simply not there. */
export function rangePastEnd(key: string, location: string, offset: number, length: number, size?: number): BackendError {
  return new BackendError(
    `range ${offset}+${length} of ${key} in ${location} ends past the object's end${size === undefined ? '' : ` (size ${size})`}`,
    false,
    key,
  );
}
