// Servers in containers for the suites that need a real KurrentDB or MinIO: started through
// testcontainers when it finds a container engine (its own detection: DOCKER_HOST,
// ~/.testcontainers.properties, the Docker or Podman socket), so that such a machine runs
// those suites without any setup. Where no engine is reachable (as on the development
// machines here) the suites stay skipped and say both ways to run them.
// The packages are loaded on first use: most suites import this library and need none of them.

/** Pinned, so that a suite tests the same server every time. */
export const KURRENTDB_IMAGE = 'kurrentplatform/kurrentdb:25.0';
export const MINIO_IMAGE = 'minio/minio:RELEASE.2024-08-03T04-33-23Z';

export type ContainerEngine = { readonly available: true } | { readonly available: false; readonly reason: string };

let engine: Promise<ContainerEngine> | undefined;

/** Whether testcontainers finds a container engine (asked once per process). */
export function containerEngine(): Promise<ContainerEngine> {
  engine ??= import('testcontainers').then(({ getContainerRuntimeClient }) => getContainerRuntimeClient()).then(
    (): ContainerEngine => ({ available: true }),
    (e: unknown): ContainerEngine => ({ available: false, reason: `no container engine reachable for testcontainers (${(e as Error).message})` }),
  );
  return engine;
}

export interface ContainerServer {
  /** Where the suite connects. */
  readonly url: string;
  readonly stop: () => Promise<void>;
}

/** A KurrentDB in a container, insecure (no TLS) on a free host port: `esdb://host:port?tls=false`. */
export async function startKurrentDbContainer(): Promise<ContainerServer> {
  const { KurrentDbContainer } = await import('@testcontainers/kurrentdb');
  const c = await new KurrentDbContainer(KURRENTDB_IMAGE).start();
  return { url: c.getConnectionString(), stop: async () => { await c.stop(); } };
}

export interface S3ContainerServer extends ContainerServer {
  readonly accessKey: string;
  readonly secretKey: string;
  /** The endpoint alone, `http://host:port`. */
  readonly endpoint: string;
}

/**
 * A MinIO in a container (object lock available per bucket) with bucket `bucket` created:
 * `url` is a repository location `s3://bucket?endpoint=…&pathStyle=true&conditionalPut=true`
 * (MinIO honours If-None-Match), the credentials apart, as CAIRN_S3_ACCESS_KEY/SECRET_KEY are.
 */
export async function startMinioContainer(bucket: string): Promise<S3ContainerServer> {
  const { MinioContainer } = await import('@testcontainers/minio');
  const c = await new MinioContainer(MINIO_IMAGE).start();
  const endpoint = c.getConnectionUrl();
  const accessKey = c.getUsername();
  const secretKey = c.getPassword();
  const { Client } = await import('minio');
  const u = new URL(endpoint);
  const client = new Client({ endPoint: u.hostname, port: Number(u.port), useSSL: false, accessKey, secretKey, region: 'us-east-1', pathStyle: true });
  await client.makeBucket(bucket, 'us-east-1');
  return {
    url: `s3://${bucket}?endpoint=${encodeURIComponent(endpoint)}&pathStyle=true&conditionalPut=true&region=us-east-1`,
    endpoint, accessKey, secretKey,
    stop: async () => { await c.stop(); },
  };
}
