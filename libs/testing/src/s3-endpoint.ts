import { createRequire } from 'node:module';
import { freePort } from '@cairn/nats-server';

export interface S3Endpoint {
  readonly endPoint: string;
  readonly port: number;
  readonly accessKey: string;
  readonly secretKey: string;
  readonly useSSL: false;
  readonly url: string;
  close(): Promise<void>;
}

interface S3rverInstance { run(): Promise<unknown>; close(): Promise<void> }
type S3rverCtor = new (opts: Record<string, unknown>) => S3rverInstance;

/** Starts s3rver in process (a local S3 endpoint for wire-level tests). */
export async function startS3Endpoint(directory: string, buckets: string[] = []): Promise<S3Endpoint> {
  const require = createRequire(import.meta.url);
  const S3rver = require('s3rver') as S3rverCtor;
  const port = await freePort();
  const server = new S3rver({
    port,
    address: '127.0.0.1',
    silent: true,
    directory,
    configureBuckets: buckets.map((name) => ({ name })),
  });
  await server.run();
  return {
    endPoint: '127.0.0.1',
    port,
    accessKey: 'S3RVER',
    secretKey: 'S3RVER',
    useSSL: false,
    url: `http://127.0.0.1:${port}`,
    close: () => server.close(),
  };
}
