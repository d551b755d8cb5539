// S3 Object Lock in COMPLIANCE mode: locking a restore point sets retention on its objects
// and the store itself (not only Cairn) refuses to delete the locked version. Needs a real
// MinIO/S3 with object lock: s3rver has none, so this runs only where CAIRN_S3_URL is set or
// testcontainers finds a container engine to start MinIO in. It creates its own bucket with object lock enabled (retention 2 minutes, so the bucket can
// be emptied by hand shortly after; COMPLIANCE retention cannot be removed by anyone).
import { randomUUID } from 'node:crypto';
import { Client } from 'minio';
import { describe, expect, it } from 'vitest';
import { containerEngine, startMinioContainer, useHarness } from '@cairn/testing';
import { s3OptionsFromUrl } from './backend/from-url.ts';
import { ObjectLockedError } from './backend/object-lock.ts';
import { S3Backend } from './backend/s3.adapter.ts';
import { RestorePointLockedError } from './errors.ts';
import { restorePointKey } from './format/layout.ts';
import { makeRepository, TEST_CHUNK } from './testing/fixtures.ts';
import { asAsync, fullExtents, makeImage } from './testing/test-image.ts';

const h = useHarness();
const fromEnv = process.env.CAIRN_S3_URL;
const engine = fromEnv ? undefined : await containerEngine();
const skip = !fromEnv && !engine?.available;
const why = engine && !engine.available ? engine.reason : '';

describe.skipIf(skip)(`S3 object lock, COMPLIANCE mode${skip ? ` (skipped: set CAIRN_S3_URL to a MinIO/S3 with object lock and CAIRN_S3_ACCESS_KEY/SECRET_KEY, or make a Docker engine reachable so that testcontainers starts MinIO; ${why})` : ''}`, () => {
  it('a locked restore point cannot be deleted through Cairn, and the store refuses to delete its version', async () => {
    let base;
    if (fromEnv) base = s3OptionsFromUrl(fromEnv);
    else {
      const minio = await startMinioContainer('cairn-lock-unused');
      h.onClose(() => minio.stop());
      base = s3OptionsFromUrl(minio.url, { accessKey: minio.accessKey, secretKey: minio.secretKey });
    }
    const bucket = `cairn-lock-${randomUUID().slice(0, 8)}`;
    const client = new Client({
      endPoint: base.endPoint, useSSL: base.useSSL ?? true, accessKey: base.accessKey, secretKey: base.secretKey,
      ...(base.port !== undefined ? { port: base.port } : {}), region: base.region ?? 'us-east-1', pathStyle: base.pathStyle ?? true,
    });
    await client.makeBucket(bucket, base.region ?? 'us-east-1', { ObjectLocking: true });
    const backend = new S3Backend({ ...base, bucket, prefix: 'repo', objectLock: true });
    h.onClose(() => backend.close());
    const repo = await makeRepository(h, backend);
    const size = 256 * 1024;
    const { restorePointId: id } = await repo.writeRestorePoint({
      vm: { id: 'vm', name: 'vm' }, disks: [{ name: 'd', sizeBytes: size, extents: asAsync(fullExtents(makeImage(size, 5), TEST_CHUNK)) }],
    });
    const until = new Date(Date.now() + 120_000);
    await repo.lockRestorePoint(id, until);

    const name = `repo/${restorePointKey(id)}`;
    const retention = await client.getObjectRetention(bucket, name);
    expect(retention?.mode).toBe('COMPLIANCE');
    await expect(repo.deleteRestorePoint(id)).rejects.toThrow(RestorePointLockedError);
    await expect(backend.delete(restorePointKey(id))).rejects.toThrow(ObjectLockedError);
    // Around Cairn: deleting the locked version directly is refused by the store.
    const { versionId } = await client.statObject(bucket, name);
    await expect(client.removeObject(bucket, name, { versionId: versionId ?? '' })).rejects.toThrow();
    expect((await repo.listRestorePoints()).map((r) => r.id)).toContain(id);
  }, 300_000);
});
