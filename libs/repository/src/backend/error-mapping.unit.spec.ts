// How the directory and S3 backends classify failures (transient or permanent, and what the
// message tells an operator to do) — including errors that tests cannot provoke for real.
import { describe, expect, it } from 'vitest';
import { BackendError, NotFoundError } from './backend.ts';
import { mapFsError } from './directory.adapter.ts';
import { mapS3Error } from './s3.adapter.ts';

const fsErr = (code: string) => Object.assign(new Error(`${code}: boom`), { code });
const s3Err = (code: string, extra: Record<string, unknown> = {}) => Object.assign(new Error('boom'), { code, ...extra });
const fsCtx = { key: 'data/k', path: '/srv/repo/data/k', action: 'write' as const, location: 'dir:/srv/repo' };
const s3Ctx = { key: 'data/k', op: 'put', location: 's3://b at http://h:1', bucket: 'b' };

describe('mapFsError', () => {
  it('maps missing files on reads to NotFoundError', () => {
    expect(mapFsError(fsErr('ENOENT'), { ...fsCtx, action: 'read' })).toBeInstanceOf(NotFoundError);
    expect(mapFsError(fsErr('ENOENT'), fsCtx)).not.toBeInstanceOf(NotFoundError);
  });

  it('makes EACCES and ENOSPC permanent, naming the path and the fix', () => {
    const acc = mapFsError(fsErr('EACCES'), fsCtx);
    expect(acc.transient).toBe(false);
    expect(acc.message).toContain('/srv/repo/data/k');
    expect(acc.message).toMatch(/check the owner and mode/);
    const full = mapFsError(fsErr('ENOSPC'), fsCtx);
    expect(full.transient).toBe(false);
    expect(full.message).toMatch(/no space left.*free space .* or grow the volume/);
    expect(mapFsError(fsErr('EROFS'), fsCtx).message).toMatch(/read-only/);
  });

  it('treats descriptor exhaustion as transient and unknown errors as permanent', () => {
    expect(mapFsError(fsErr('EMFILE'), fsCtx).transient).toBe(true);
    expect(mapFsError(fsErr('EIO'), fsCtx).transient).toBe(false);
  });
});

describe('mapS3Error', () => {
  it('maps NoSuchKey/NotFound to NotFoundError', () => {
    expect(mapS3Error(s3Err('NoSuchKey'), s3Ctx)).toBeInstanceOf(NotFoundError);
    expect(mapS3Error(s3Err('NotFound'), s3Ctx)).toBeInstanceOf(NotFoundError);
  });

  it('treats 5xx, throttling, resets and timeouts as transient', () => {
    for (const e of [s3Err('InternalError'), s3Err('SlowDown'), s3Err('ServiceUnavailable'), s3Err('RequestTimeout'), s3Err('ConditionalRequestConflict'),
      s3Err('ECONNRESET'), s3Err('ETIMEDOUT'), s3Err('ECONNREFUSED'), s3Err('Weird', { statusCode: 502 }), new Error('socket hang up')]) {
      const m = mapS3Error(e, s3Ctx);
      expect(m, String((e as { code?: string }).code ?? e.message)).toBeInstanceOf(BackendError);
      expect(m.transient, String((e as { code?: string }).code ?? e.message)).toBe(true);
    }
  });

  it('makes 403 and 400 permanent with a message saying what to check', () => {
    const denied = mapS3Error(s3Err('AccessDenied'), s3Ctx);
    expect(denied.transient).toBe(false);
    expect(denied.message).toMatch(/CAIRN_S3_ACCESS_KEY/);
    expect(mapS3Error(s3Err('SignatureDoesNotMatch'), s3Ctx).message).toMatch(/secret/);
    expect(mapS3Error(s3Err('NoSuchBucket'), s3Ctx).message).toMatch(/bucket b does not exist/);
    expect(mapS3Error(s3Err('RequestTimeTooSkewed'), s3Ctx).message).toMatch(/clock/);
    const bad = mapS3Error(s3Err('InvalidArgument'), s3Ctx);
    expect(bad.transient).toBe(false);
    expect(bad.message).toMatch(/check the endpoint, bucket name, region/);
  });
});
