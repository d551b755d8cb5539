import { describe, expect, it } from 'vitest';
import { DirectoryBackend } from './directory.adapter.ts';
import { createBackendFromUrl, s3OptionsFromUrl } from './from-url.ts';
import { S3Backend } from './s3.adapter.ts';

const env = { CAIRN_S3_ACCESS_KEY: 'AK', CAIRN_S3_SECRET_KEY: 'SK' };

describe('createBackendFromUrl', () => {
  it('maps file URLs and plain paths to a DirectoryBackend', () => {
    const a = createBackendFromUrl('file:///srv/cairn/repo');
    expect(a).toBeInstanceOf(DirectoryBackend);
    expect(a.location).toBe('dir:/srv/cairn/repo');
    expect(createBackendFromUrl('/srv/repo').location).toBe('dir:/srv/repo');
    expect(createBackendFromUrl('relative/repo').location).toBe(`dir:${process.cwd()}/relative/repo`);
  });

  it('maps s3:// to an S3Backend with endpoint, prefix and keys from the environment', async () => {
    const o = s3OptionsFromUrl('s3://backups/site-a/repo/?endpoint=http://127.0.0.1:9000&region=eu-west-1&conditionalPut=true', { env });
    expect(o).toMatchObject({
      bucket: 'backups', prefix: 'site-a/repo', endPoint: '127.0.0.1', port: 9000, useSSL: false,
      region: 'eu-west-1', pathStyle: true, conditionalPut: true, accessKey: 'AK', secretKey: 'SK',
    });
    const b = createBackendFromUrl('s3://backups?endpoint=https://minio.example:9443', { env });
    expect(b).toBeInstanceOf(S3Backend);
    expect(b.location).toBe('s3://backups at https://minio.example:9443');
    await b.close?.();
  });

  it('defaults to AWS with virtual-host addressing and prefers explicit keys', () => {
    const o = s3OptionsFromUrl('s3://bucket/p', { env: {}, accessKey: 'X', secretKey: 'Y' });
    expect(o).toMatchObject({ endPoint: 's3.amazonaws.com', useSSL: true, pathStyle: false, accessKey: 'X', secretKey: 'Y' });
    expect(o.port).toBeUndefined();
  });

  it('explains what is wrong with a bad location', () => {
    expect(() => createBackendFromUrl('')).toThrow(/empty repository location/);
    expect(() => createBackendFromUrl('ftp://host/x')).toThrow(/unsupported repository location.*s3:\/\/bucket/);
    expect(() => createBackendFromUrl('s3://bucket', { env: {} })).toThrow(/CAIRN_S3_ACCESS_KEY and CAIRN_S3_SECRET_KEY/);
    expect(() => createBackendFromUrl('s3://bucket?endpont=x', { env })).toThrow(/unknown parameter "endpont"/);
    expect(() => createBackendFromUrl('s3://bucket?endpoint=ftp://x', { env })).toThrow(/must be http/);
    expect(() => createBackendFromUrl('s3://bucket/bad%20prefix', { env })).toThrow(/invalid S3 prefix "bad prefix"/);
  });
});
