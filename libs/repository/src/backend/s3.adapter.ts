// The object-store backend: the repository in an S3 bucket (optionally under a prefix)
// through the `minio` client. Tested on s3rver here and on real S3/MinIO when
// CAIRN_S3_URL is set; the differences between the two are in docs/repository-backends.md.
import http from 'node:http';
import https from 'node:https';
import type { Client } from 'minio';
import { BackendError, NotFoundError, type Backend, type ObjectInfo } from './backend.ts';
import { assertValidKey, assertValidPrefix, assertValidRange, isValidKey, rangePastEnd } from './keys.ts';
import { checkDeleteAllowed, checkPutAllowed, isLockKey, lockedKeyOf, parseLockRecord, type LockStore } from './object-lock.ts';

const MiB = 1024 * 1024;

export interface S3BackendOptions {
  /** Host name or IP of the endpoint, e.g. `s3.eu-west-1.amazonaws.com` or `127.0.0.1`. */
  endPoint: string;
  port?: number;
  useSSL?: boolean;
  accessKey: string;
  secretKey: string;
  sessionToken?: string;
  /** Defaults to us-east-1; set it to skip minio's bucket-location lookup on real S3. */
  region?: string;
  /** Path-style addressing (`host/bucket/key`); needed by most non-AWS endpoints. */
  pathStyle?: boolean;
  bucket: string;
  /** Key prefix inside the bucket, without leading or trailing `/` (several repositories per bucket). */
  prefix?: string;
  /** Objects larger than this go through multipart upload (default 64 MiB). */
  multipartThreshold?: number;
  /** Multipart part size (default 16 MiB, minimum 5 MiB as S3 requires). */
  partSize?: number;
  /** Parts uploaded at once for one multipart object (default 4). */
  partConcurrency?: number;
  /** Keys per list request (default and S3 maximum 1000). */
  listPageSize?: number;
  /** Sockets kept to the endpoint (default 64). */
  maxSockets?: number;
  /** Send `If-None-Match: *` on `ifNotExists` puts, making them race-free on endpoints that
   *  honour it (AWS S3, recent MinIO). Off by default: s3rver and older stores ignore it. */
  conditionalPut?: boolean;
  /** Lock records (`locks/<key>`, see object-lock.ts) also set S3 Object Lock retention in
   *  COMPLIANCE mode on the object and the record: the bucket must have been created with
   *  object lock enabled. Without it, locks are enforced by this backend only. */
  objectLock?: boolean;
}

type S3ErrorLike = Error & { code?: string; statusCode?: number };

export class S3Backend implements Backend {
  readonly location: string;
  /** minio is loaded on first use: it is most of the code a directory-only process would load. */
  private clientPromise?: Promise<Client>;
  private readonly clientOptions: ConstructorParameters<typeof Client>[0];
  private readonly agent: http.Agent;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly multipartThreshold: number;
  private readonly partSize: number;
  private readonly partConcurrency: number;
  private readonly listPageSize: number;
  private readonly conditionalPut: boolean;
  private readonly objectLock: boolean;
  private readonly lockStore: LockStore;

  constructor(options: S3BackendOptions) {
    this.bucket = options.bucket;
    this.prefix = (options.prefix ?? '').replace(/^\/+|\/+$/g, '');
    if (this.prefix !== '' && !isValidKey(this.prefix)) {
      throw new BackendError(`invalid S3 prefix ${JSON.stringify(this.prefix)} for bucket ${this.bucket}: use /-separated segments of A-Z a-z 0-9 . _ -`, false);
    }
    this.location = `s3://${this.bucket}${this.prefix ? `/${this.prefix}` : ''} at ${options.useSSL === false ? 'http' : 'https'}://${options.endPoint}${options.port ? `:${options.port}` : ''}`;
    this.multipartThreshold = options.multipartThreshold ?? 64 * MiB;
    this.partSize = Math.max(options.partSize ?? 16 * MiB, 5 * MiB);
    this.partConcurrency = Math.max(1, options.partConcurrency ?? 4);
    this.listPageSize = Math.min(1000, Math.max(1, options.listPageSize ?? 1000));
    this.conditionalPut = options.conditionalPut ?? false;
    this.objectLock = options.objectLock ?? false;
    this.lockStore = {
      location: this.location,
      readRaw: (key) => this.get(key).catch((e: unknown) => (e instanceof NotFoundError ? undefined : Promise.reject(e))),
      existsRaw: (key) => this.exists(key),
      now: () => Date.now(),
    };
    const useSSL = options.useSSL ?? true;
    const agentOptions = { keepAlive: true, maxSockets: options.maxSockets ?? 64 };
    this.agent = useSSL ? new https.Agent(agentOptions) : new http.Agent(agentOptions);
    this.clientOptions = {
      endPoint: options.endPoint,
      ...(options.port !== undefined ? { port: options.port } : {}),
      useSSL,
      accessKey: options.accessKey,
      secretKey: options.secretKey,
      ...(options.sessionToken !== undefined ? { sessionToken: options.sessionToken } : {}),
      region: options.region ?? 'us-east-1',
      pathStyle: options.pathStyle ?? true,
      transportAgent: this.agent,
      // putObject must never switch to its own multipart mode (it needs ListMultipartUploads,
      // which s3rver lacks): objects above our threshold take our multipart path instead.
      partSize: Math.min(5 * 1024 * MiB, Math.max(5 * MiB, this.multipartThreshold)),
      // One retry layer, ours (withRetry): minio's would hide 5xx behind plain Errors and log.
      retryOptions: { disableRetry: true },
    };
  }

  private client(): Promise<Client> {
    this.clientPromise ??= import('minio').then(({ Client: MinioClient }) => new MinioClient(this.clientOptions));
    return this.clientPromise;
  }

  async put(key: string, data: Uint8Array, options: { ifNotExists?: boolean } = {}): Promise<boolean> {
    assertValidKey(key);
    await checkPutAllowed(this.lockStore, key, data, options.ifNotExists ?? false);
    try {
      // The stat saves uploading what is already there. On its own it is check-then-put: two
      // writers racing on a new key may both "win" — harmless for content-addressed keys (both
      // write the same bytes), not for compare-and-set. `conditionalPut` closes the race where
      // the endpoint honours If-None-Match (s3rver ignores it; multipart uploads cannot carry it
      // through minio's completeMultipartUpload). See docs/repository-backends.md.
      if (options.ifNotExists && (await this.exists(key))) return false;
      const body = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      if (body.length > this.multipartThreshold) {
        await this.putMultipart(this.name(key), body);
      } else {
        const headers = options.ifNotExists && this.conditionalPut ? { 'If-None-Match': '*' } : {};
        await (await this.client()).putObject(this.bucket, this.name(key), body, body.length, headers);
      }
      if (this.objectLock && isLockKey(key)) await this.applyRetention(key, body);
      return true;
    } catch (e) {
      if (options.ifNotExists && code(e) === 'PreconditionFailed') return false;
      throw this.mapError(e, key, 'put');
    }
  }

  async get(key: string): Promise<Uint8Array> {
    assertValidKey(key);
    try {
      return await readAll(await (await this.client()).getObject(this.bucket, this.name(key)));
    } catch (e) {
      throw this.mapError(e, key, 'get');
    }
  }

  async getRange(key: string, offset: number, length: number): Promise<Uint8Array> {
    assertValidKey(key);
    assertValidRange(key, offset, length);
    if (length === 0) {
      // An empty HTTP range cannot be expressed; check the bounds with a HEAD instead.
      const { size } = await this.stat(key);
      if (offset > size) throw rangePastEnd(key, this.location, offset, length, size);
      return new Uint8Array(0);
    }
    let data: Buffer;
    try {
      // getPartialObject sends `Range: bytes=offset-end`; getObject's range option is ignored.
      data = await readAll(await (await this.client()).getPartialObject(this.bucket, this.name(key), offset, length));
    } catch (e) {
      if (code(e) === 'InvalidRange') throw rangePastEnd(key, this.location, offset, length);
      throw this.mapError(e, key, 'get');
    }
    // S3 clips a range that runs past the end instead of failing; the contract says fail.
    if (data.length !== length) throw rangePastEnd(key, this.location, offset, length);
    return data;
  }

  async stat(key: string): Promise<ObjectInfo> {
    assertValidKey(key);
    try {
      const s = await (await this.client()).statObject(this.bucket, this.name(key));
      return { key, size: s.size, mtime: s.lastModified };
    } catch (e) {
      throw this.mapError(e, key, 'stat');
    }
  }

  async exists(key: string): Promise<boolean> {
    try {
      await this.stat(key);
      return true;
    } catch (e) {
      if (e instanceof NotFoundError) return false;
      throw e;
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    assertValidPrefix(prefix);
    const base = this.prefix === '' ? '' : `${this.prefix}/`;
    let token = '';
    // Bounded by the listing itself: each page either ends it or returns a new token.
    for (;;) {
      let page;
      try {
        page = await (await this.client()).listObjectsV2Query(this.bucket, base + prefix, token, '', this.listPageSize, '');
      } catch (e) {
        throw this.mapError(e, undefined, 'list');
      }
      for (const item of page.objects) {
        if (item.name === undefined || !item.name.startsWith(base)) continue;
        yield { key: item.name.slice(base.length), size: item.size, mtime: item.lastModified };
      }
      if (!page.isTruncated) return;
      if (!page.nextContinuationToken || page.nextContinuationToken === token) {
        throw new BackendError(`list of ${prefix} in ${this.location}: truncated page without a new continuation token`, true);
      }
      token = page.nextContinuationToken;
    }
  }

  async delete(key: string): Promise<void> {
    assertValidKey(key);
    await checkDeleteAllowed(this.lockStore, key);
    try {
      await (await this.client()).removeObject(this.bucket, this.name(key));
    } catch (e) {
      const mapped = this.mapError(e, key, 'delete');
      if (mapped instanceof NotFoundError) return;
      throw mapped;
    }
  }

  /** Every put is durable and visible when it returns: nothing to flush. */
  async flush(): Promise<void> {}

  async close(): Promise<void> {
    this.agent.destroy();
  }

  /** S3 Object Lock (COMPLIANCE) on the locked object's current version and on the record. */
  private async applyRetention(lockKey: string, record: Uint8Array): Promise<void> {
    const parsed = parseLockRecord(record);
    if (!parsed) return;
    for (const key of [lockedKeyOf(lockKey), lockKey]) {
      const { versionId } = await (await this.client()).statObject(this.bucket, this.name(key));
      await (await this.client()).putObjectRetention(this.bucket, this.name(key), {
        mode: 'COMPLIANCE', retainUntilDate: parsed.retainUntil, versionId: versionId ?? '',
      });
    }
  }

  private name(key: string): string {
    return this.prefix === '' ? key : `${this.prefix}/${key}`;
  }

  private async putMultipart(name: string, body: Buffer): Promise<void> {
    // At most 10,000 parts per object: grow the part size for very large objects.
    const partSize = Math.max(this.partSize, Math.ceil(body.length / 10_000));
    const count = Math.ceil(body.length / partSize);
    const uploadId = await (await this.client()).initiateNewMultipartUpload(this.bucket, name, {});
    try {
      const etags: Array<{ part: number; etag: string }> = [];
      let next = 0;
      const lane = async () => {
        while (next < count) {
          const index = next++;
          const part = body.subarray(index * partSize, Math.min(body.length, (index + 1) * partSize));
          const res = await (await this.client()).uploadPart(
            { bucketName: this.bucket, objectName: name, uploadID: uploadId, partNumber: index + 1, headers: {} },
            part,
          );
          etags.push({ part: index + 1, etag: res.etag });
        }
      };
      await Promise.all(Array.from({ length: Math.min(this.partConcurrency, count) }, lane));
      etags.sort((a, b) => a.part - b.part);
      await (await this.client()).completeMultipartUpload(this.bucket, name, uploadId, etags);
    } catch (e) {
      // Abandoned parts cost storage until aborted; a lifecycle rule should also clean them.
      await (await this.client()).abortMultipartUpload(this.bucket, name, uploadId).catch(() => undefined);
      throw e;
    }
  }

  private mapError(e: unknown, key: string | undefined, op: string): BackendError {
    return mapS3Error(e, { key, op, location: this.location, bucket: this.bucket });
  }
}

const TRANSIENT_S3_CODES = new Set([
  'InternalError', 'ServiceUnavailable', 'SlowDown', 'RequestTimeout', 'RequestTimeoutException',
  'OperationAborted', 'ConditionalRequestConflict', 'Throttling', 'ThrottlingException', 'RequestThrottled', 'BadGateway', 'GatewayTimeout',
  'XMinioServerNotInitialized', 'XMinioReadQuorum', 'XMinioWriteQuorum',
]);
const TRANSIENT_NET_CODES = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH',
  'ENETDOWN', 'EAI_AGAIN', 'ENOTFOUND', 'ESOCKETTIMEDOUT', 'UND_ERR_SOCKET', 'ERR_STREAM_PREMATURE_CLOSE',
]);
const CREDENTIAL_CODES = new Set([
  'AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'ExpiredToken', 'InvalidToken', 'AllAccessDisabled',
]);

/** Maps a minio/network error to the contract's error kinds. Exported for unit tests. */
export function mapS3Error(
  e: unknown,
  ctx: { key: string | undefined; op: string; location: string; bucket: string },
): BackendError {
  if (e instanceof BackendError) return e;
  const err = e as S3ErrorLike;
  const c = code(e);
  const what = `${ctx.op}${ctx.key !== undefined ? ` ${ctx.key}` : ''} in ${ctx.location}`;
  const detail = `${c ?? err?.name ?? 'error'}: ${err?.message ?? String(e)}`;
  const permanent = (hint: string) => new BackendError(`${what} failed (${detail}): ${hint}`, false, ctx.key, { cause: e });
  if (c === 'NoSuchKey' || c === 'NotFound') {
    if (ctx.key !== undefined) return new NotFoundError(ctx.key, ctx.location);
    return permanent('the bucket or prefix was not found');
  }
  if (c === 'NoSuchBucket') return permanent(`bucket ${ctx.bucket} does not exist: create it or fix the repository URL`);
  if (c !== undefined && CREDENTIAL_CODES.has(c)) {
    return permanent('check the access key and secret (CAIRN_S3_ACCESS_KEY / CAIRN_S3_SECRET_KEY), that the bucket policy grants this key the operation, and that the clock is correct');
  }
  if (c === 'RequestTimeTooSkewed') return permanent("this machine's clock is off by more than 15 minutes: fix time sync (NTP)");
  if (c === 'PermanentRedirect' || c === 'MovedPermanently' || c === 'TemporaryRedirect' || c === 'AuthorizationHeaderMalformed') {
    return permanent('the bucket lives in another region or behind another endpoint: set the region or endpoint in the repository URL');
  }
  if (c !== undefined && (TRANSIENT_S3_CODES.has(c) || TRANSIENT_NET_CODES.has(c))) {
    return new BackendError(`${what} failed temporarily (${detail})`, true, ctx.key, { cause: e });
  }
  if (typeof err?.statusCode === 'number' && err.statusCode >= 500) {
    return new BackendError(`${what} failed temporarily (${detail})`, true, ctx.key, { cause: e });
  }
  if (err instanceof Error && /socket hang up|aborted|timed? ?out/i.test(err.message)) {
    return new BackendError(`${what} failed temporarily (${detail})`, true, ctx.key, { cause: e });
  }
  return permanent('the request was rejected; check the endpoint, bucket name, region and the object key');
}

function code(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string' ? e.code : undefined;
}

async function readAll(stream: AsyncIterable<Buffer | string>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(typeof part === 'string' ? Buffer.from(part) : part);
  return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
}
