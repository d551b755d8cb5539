import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { startNatsCluster, startNatsServer, type NatsCluster, type NatsClusterOptions, type NatsServerOptions, type NatsServerProcess } from '@cairn/nats-server';
import { startS3Endpoint, type S3Endpoint } from './s3-endpoint.ts';

export interface Harness {
  /** A fresh temp directory, removed on close. */
  tmpDir(prefix?: string): Promise<string>;
  /** A real nats-server (JetStream on by default) on a free port. */
  nats(options?: Omit<NatsServerOptions, 'dir'> & { dir?: string }): Promise<NatsServerProcess>;
  /** Real nats-servers routed into one cluster (3 members unless told), stopped on close. */
  natsCluster(options?: Omit<NatsClusterOptions, 'dir' | 'size'> & { size?: number }): Promise<NatsCluster>;
  /** A local S3 endpoint (s3rver) with the given buckets. */
  s3(buckets?: string[]): Promise<S3Endpoint>;
  /** Registers any extra cleanup (run in reverse order on close). */
  onClose(fn: () => unknown): void;
  close(): Promise<void>;
}

export function createHarness(): Harness {
  const cleanups: Array<() => unknown> = [];
  const onClose = (fn: () => unknown) => { cleanups.push(fn); };
  const tmpDir = async (prefix = 'cairn-test-') => {
    const dir = await mkdtemp(join(tmpdir(), prefix));
    onClose(() => rm(dir, { recursive: true, force: true }));
    return dir;
  };
  return {
    tmpDir,
    onClose,
    async nats(options = {}) {
      const dir = options.dir ?? (await tmpDir('cairn-nats-'));
      const server = await startNatsServer({ ...options, dir });
      onClose(() => server.kill('SIGKILL'));
      return server;
    },
    async natsCluster(options = {}) {
      const dir = await tmpDir('cairn-nats-cluster-');
      const cluster = await startNatsCluster({ size: 3, ...options, dir });
      onClose(() => cluster.stop());
      return cluster;
    },
    async s3(buckets = []) {
      const dir = await tmpDir('cairn-s3-');
      const endpoint = await startS3Endpoint(dir, buckets);
      onClose(() => endpoint.close());
      return endpoint;
    },
    async close() {
      const errors: unknown[] = [];
      for (const fn of cleanups.reverse()) {
        try { await fn(); } catch (e) { errors.push(e); }
      }
      cleanups.length = 0;
      if (errors.length) throw new AggregateError(errors, 'harness cleanup failed');
    },
  };
}

/** A harness closed automatically after the current test file's suite. */
export function useHarness(): Harness {
  const h = createHarness();
  afterAll(() => h.close(), 60_000);
  return h;
}
