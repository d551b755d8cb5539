import { createCipheriv, randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { beforeAll, describe, expect, it } from 'vitest';
import { containerEngine, startMinioContainer, useHarness, type S3Endpoint } from '@cairn/testing';
import { BackendError, NotFoundError } from './backend.ts';
import { createBackendFromUrl } from './from-url.ts';
import { S3Backend, type S3BackendOptions } from './s3.adapter.ts';
import { backendContract, listKeys } from './testing/backend.contract.ts';

const h = useHarness();

// s3rver encrypts its list continuation tokens with DES, which Node's OpenSSL 3 only offers
// with --openssl-legacy-provider; without it, any listing past one page fails with a 500.
const desAvailable = (() => {
  try {
    createCipheriv('des', Buffer.alloc(8), Buffer.alloc(8));
    return true;
  } catch {
    return false;
  }
})();
const NO_DES = 's3rver pages need Node run with --openssl-legacy-provider';

let s3: S3Endpoint;
beforeAll(async () => {
  s3 = await h.s3(['repo']);
});

function onS3rver(extra: Partial<S3BackendOptions> = {}): S3Backend {
  return new S3Backend({
    endPoint: s3.endPoint, port: s3.port, useSSL: false, accessKey: s3.accessKey, secretKey: s3.secretKey,
    bucket: 'repo', prefix: `t-${randomUUID()}`, ...extra,
  });
}

// conditionalPut on: s3rver ignores the header, so this checks that sending it breaks nothing.
backendContract('S3Backend on s3rver', () => onS3rver({ conditionalPut: true }), {
  ...(desAvailable ? {} : { skipLargeList: NO_DES }),
  skipConditionalPutRace: 's3rver ignores If-None-Match, ifNotExists is check-then-put',
});

// A real S3: the one CAIRN_S3_URL names (credentials in CAIRN_S3_ACCESS_KEY/SECRET_KEY), else a
// MinIO that testcontainers starts when it finds a container engine; neither here: skipped.
const fromEnv = process.env.CAIRN_S3_URL;
const engine = fromEnv ? undefined : await containerEngine();
const noRealS3 = !fromEnv && !engine?.available;
const noRealS3Why = engine && !engine.available ? engine.reason : '';
let real: { url: string; credentials: { accessKey?: string; secretKey?: string } } | undefined;
describe.skipIf(noRealS3)(`S3Backend on a real S3${noRealS3 ? ` (skipped: set CAIRN_S3_URL and CAIRN_S3_ACCESS_KEY/SECRET_KEY, or make a Docker engine reachable so that testcontainers starts MinIO; ${noRealS3Why})` : ''}`, () => {
  beforeAll(async () => {
    if (fromEnv) { real = { url: fromEnv, credentials: {} }; return; }
    const minio = await startMinioContainer('cairn-contract');
    h.onClose(() => minio.stop());
    real = { url: minio.url, credentials: { accessKey: minio.accessKey, secretKey: minio.secretKey } };
  }, 300_000);
  backendContract(
    'S3Backend on a real S3',
    () => {
      // A fresh prefix per test under the configured one, so runs never see each other.
      const url = new URL(real?.url ?? 's3://unset');
      url.pathname = `${url.pathname.replace(/\/+$/, '')}/cairn-contract-${randomUUID()}`;
      const backend = createBackendFromUrl(url.toString(), real?.credentials ?? {});
      // Leave nothing behind in a real bucket: empty the test's prefix when the suite closes it.
      const close = backend.close?.bind(backend);
      backend.close = async () => {
        for await (const info of backend.list('')) await backend.delete(info.key);
        await close?.();
      };
      return backend;
    },
    // MinIO honours If-None-Match (the container's location says conditionalPut=true).
    fromEnv && !fromEnv.includes('conditionalPut=true') ? { skipConditionalPutRace: 'add conditionalPut=true to CAIRN_S3_URL if the endpoint honours If-None-Match' } : {},
  );
});

describe('S3Backend specifics (s3rver)', () => {
  it('uploads large objects through low-level multipart and reads them back, whole and ranged', async () => {
    const b = onS3rver({ multipartThreshold: 5 * 1024 * 1024, partSize: 5 * 1024 * 1024, partConcurrency: 2 });
    h.onClose(() => b.close());
    const data = randomBytes(12 * 1024 * 1024 + 17);
    expect(await b.put('packs/big', data)).toBe(true);
    expect((await b.stat('packs/big')).size).toBe(data.length);
    expect(Buffer.from(await b.get('packs/big')).equals(data)).toBe(true);
    const off = 5 * 1024 * 1024 - 3;
    expect(Buffer.from(await b.getRange('packs/big', off, 10)).equals(data.subarray(off, off + 10))).toBe(true);
  });

  it.skipIf(!desAvailable)(`pages with a small page size${desAvailable ? '' : ` (skipped: ${NO_DES})`}`, async () => {
    const b = onS3rver({ listPageSize: 3 });
    h.onClose(() => b.close());
    const keys = Array.from({ length: 10 }, (_, i) => `p/${i}`);
    for (const k of keys) await b.put(k, new Uint8Array([1]));
    expect(await listKeys(b, 'p/')).toEqual(keys);
  });

  it('keeps repositories under different prefixes of one bucket apart', async () => {
    const a = onS3rver({ prefix: 'site-a/repo' });
    const b = onS3rver({ prefix: 'site-a/repo2' });
    h.onClose(() => Promise.all([a.close(), b.close()]));
    await a.put('k', new Uint8Array([1]));
    await b.put('k2', new Uint8Array([2]));
    expect(await listKeys(a, '')).toEqual(['k']);
    expect(await listKeys(b, '')).toEqual(['k2']);
    await expect(b.get('k')).rejects.toBeInstanceOf(NotFoundError);
  });

  it('explains a missing bucket and reports a dead endpoint as transient', async () => {
    const noBucket = onS3rver({ bucket: 'does-not-exist' });
    h.onClose(() => noBucket.close());
    const e = await noBucket.put('k', new Uint8Array([1])).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(BackendError);
    expect((e as BackendError).transient).toBe(false);
    expect((e as Error).message).toMatch(/bucket does-not-exist does not exist/);

    const dead = new S3Backend({ endPoint: '127.0.0.1', port: 1, useSSL: false, accessKey: 'x', secretKey: 'y', bucket: 'repo' });
    h.onClose(() => dead.close());
    const e2 = await dead.get('k').catch((err: unknown) => err);
    expect(e2).toBeInstanceOf(BackendError);
    expect((e2 as BackendError).transient).toBe(true);
  });

  it('with conditionalPut, sends If-None-Match: * and reads 412 as "already exists"', async () => {
    // A stand-in for an endpoint that honours conditional writes (s3rver does not): HEAD says
    // the key is missing, PUT answers 412 as S3 does when another writer got there first.
    const seen: Array<{ method: string | undefined; headers: IncomingHttpHeaders }> = [];
    const server = createServer((req, res) => {
      seen.push({ method: req.method, headers: req.headers });
      req.resume();
      req.on('end', () => {
        if (req.method === 'HEAD') return void res.writeHead(404).end();
        res.writeHead(412, { 'content-type': 'application/xml' }).end(
          '<?xml version="1.0" encoding="UTF-8"?><Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>',
        );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    h.onClose(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const b = new S3Backend({
      endPoint: '127.0.0.1', port: (server.address() as AddressInfo).port, useSSL: false,
      accessKey: 'x', secretKey: 'y', bucket: 'repo', conditionalPut: true,
    });
    h.onClose(() => b.close());
    expect(await b.put('k', new Uint8Array([1]), { ifNotExists: true })).toBe(false);
    const put = seen.find((r) => r.method === 'PUT');
    expect(put?.headers['if-none-match']).toBe('*');
  });

  it('createBackendFromUrl builds an S3 backend from an s3:// location', async () => {
    const b = createBackendFromUrl(`s3://repo/from-url-${randomUUID()}?endpoint=${s3.url}`, {
      env: { CAIRN_S3_ACCESS_KEY: s3.accessKey, CAIRN_S3_SECRET_KEY: s3.secretKey },
    });
    h.onClose(() => b.close?.());
    expect(b).toBeInstanceOf(S3Backend);
    await b.put('x/y', new Uint8Array([9]));
    expect([...(await b.get('x/y'))]).toEqual([9]);
  });
});
