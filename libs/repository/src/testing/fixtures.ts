// Test fixtures: repositories on a real directory and on the harness's S3 endpoint, with a
// cheap KDF (parameters are stored per repository, so tests may choose low cost).
import { randomUUID } from 'node:crypto';
import type { Backend } from '../backend/backend.ts';
import { DirectoryBackend } from '../backend/directory.adapter.ts';
import { withRetry } from '../backend/retry.wrapper.ts';
import { S3Backend } from '../backend/s3.adapter.ts';
import { initRepository, type InitOptions, type Repository } from '../repository.ts';

export const TEST_CHUNK = 64 * 1024;
export const TEST_PAGE_ENTRIES = 8;
export const TEST_PASSPHRASE = 'correct horse battery staple';
export const CHEAP_KDF = { N: 1024, r: 8, p: 1 };

/** What fixtures need from the test harness. */
export interface FixtureHarness {
  tmpDir(prefix?: string): Promise<string>;
  s3(buckets?: string[]): Promise<{ endPoint: string; port: number; accessKey: string; secretKey: string }>;
  onClose(fn: () => unknown): void;
}

export type BackendKind = 'directory' | 's3';

export async function makeBackend(h: FixtureHarness, kind: BackendKind): Promise<Backend> {
  if (kind === 'directory') return new DirectoryBackend(await h.tmpDir('cairn-repo-'), { createRoot: true, fsync: false });
  const s3 = await h.s3(['repo']);
  const b = new S3Backend({
    endPoint: s3.endPoint, port: s3.port, useSSL: false, accessKey: s3.accessKey, secretKey: s3.secretKey,
    bucket: 'repo', prefix: `r-${randomUUID()}`,
  });
  h.onClose(() => b.close?.());
  // As in production, transient errors (s3rver resets connections under load) are retried.
  return withRetry(b, { attempts: 4, baseDelayMs: 20 });
}

export async function makeRepository(h: FixtureHarness, backend: Backend, options: Partial<InitOptions> = {}): Promise<Repository> {
  const repo = await initRepository(backend, {
    passphrase: TEST_PASSPHRASE,
    kdf: CHEAP_KDF,
    chunkSize: TEST_CHUNK,
    pageEntries: TEST_PAGE_ENTRIES,
    // s3rver answers 500 to concurrent deletes in one directory: sweep one at a time there.
    tuning: { pollMs: 20, ...(backend.location.startsWith('s3:') ? { deleteConcurrency: 1 } : {}) },
    ...options,
  } as InitOptions);
  h.onClose(() => repo.close());
  return repo;
}
