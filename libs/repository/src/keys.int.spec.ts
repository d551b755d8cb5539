// Keys and the repository's own integrity: wrong passphrase, key rotation without
// re-encryption, the file key provider, a corrupt manifest or config, an unknown format.
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { useHarness } from '@cairn/testing';
import type { Backend } from './backend/backend.ts';
import { CorruptObjectError, RepositoryExistsError, RepositoryNotFoundError, RestorePointNotFoundError, UnsupportedFormatError, WrongKeyError } from './errors.ts';
import { CHUNKS_PREFIX, restorePointKey } from './format/layout.ts';
import { createKeyFile, FileKeyProvider } from './keys/key-provider.ts';
import { initRepository, openRepository, type Repository } from './repository.ts';
import { CHEAP_KDF, makeBackend, makeRepository, TEST_CHUNK, TEST_PASSPHRASE } from './testing/fixtures.ts';
import { asAsync, fullExtents, makeImage } from './testing/test-image.ts';

const h = useHarness();
const SIZE = 1024 * 1024;
const image = makeImage(SIZE, 11);

async function open(backend: Backend, passphrase: string): Promise<Repository> {
  const r = await openRepository(backend, { passphrase });
  h.onClose(() => r.close());
  return r;
}

async function chunkMtimes(b: Backend): Promise<Map<string, number>> {
  const m = new Map<string, number>();
  for await (const o of b.list(CHUNKS_PREFIX)) m.set(o.key, o.mtime.getTime());
  return m;
}

describe('keys and format errors', () => {
  let backend: Backend;
  let rp = '';

  beforeAll(async () => {
    backend = await makeBackend(h, 'directory');
    const repo = await makeRepository(h, backend);
    rp = (await repo.writeRestorePoint({ vm: { id: 'v', name: 'v' }, disks: [{ name: 'd', sizeBytes: SIZE, extents: asAsync(fullExtents(image, TEST_CHUNK)) }] })).restorePointId;
  });

  it('a wrong passphrase is a WrongKeyError; the right one opens and reads', async () => {
    await expect(openRepository(backend, { passphrase: 'not it' })).rejects.toThrow(WrongKeyError);
    await expect(openRepository(backend, { passphrase: 'not it' })).rejects.toThrow(/wrong passphrase/);
    const repo = await open(backend, TEST_PASSPHRASE);
    expect(Buffer.from(await (await repo.openDisk(rp, 'd')).read(0, SIZE)).equals(Buffer.from(image))).toBe(true);
  });

  it('refuses to init twice and says when there is no repository', async () => {
    await expect(initRepository(backend, { passphrase: 'x', kdf: CHEAP_KDF })).rejects.toThrow(RepositoryExistsError);
    await expect(openRepository(await makeBackend(h, 'directory'), { passphrase: 'x' })).rejects.toThrow(RepositoryNotFoundError);
  });

  it('rotation re-wraps the keys, never re-encrypts chunks, and retires the old passphrase', async () => {
    const repo = await open(backend, TEST_PASSPHRASE);
    const before = await chunkMtimes(backend);
    await repo.rotateKey({ passphrase: 'new passphrase', kdf: CHEAP_KDF });
    expect(await chunkMtimes(backend)).toEqual(before);
    await expect(openRepository(backend, { passphrase: TEST_PASSPHRASE })).rejects.toThrow(WrongKeyError);
    const again = await open(backend, 'new passphrase');
    expect(Buffer.from(await (await again.openDisk(rp, 'd')).read(0, SIZE)).equals(Buffer.from(image))).toBe(true);

    // To an external key provider and back.
    const dir = await h.tmpDir();
    const provider = await createKeyFile(join(dir, 'kek'));
    await again.rotateKey({ keyProvider: provider });
    await expect(openRepository(backend, { passphrase: 'new passphrase' })).rejects.toThrow(WrongKeyError);
    const other = await createKeyFile(join(dir, 'other'));
    await expect(openRepository(backend, { keyProvider: other })).rejects.toThrow(WrongKeyError);
    const viaFile = await openRepository(backend, { keyProvider: new FileKeyProvider(join(dir, 'kek')) });
    h.onClose(() => viaFile.close());
    expect((await viaFile.stats()).keys).toBe(1);
    await viaFile.rotateKey({ passphrase: TEST_PASSPHRASE, kdf: CHEAP_KDF });
    expect(await chunkMtimes(backend)).toEqual(before);
  });

  it('a corrupt manifest is a CorruptObjectError naming it; a missing one is not found', async () => {
    const repo = await open(backend, TEST_PASSPHRASE);
    const key = restorePointKey(rp);
    const good = Buffer.from(await backend.get(key));
    const bad = Buffer.from(good);
    bad[40]! ^= 4;
    await backend.put(key, bad);
    await expect(repo.getManifest(rp)).rejects.toThrow(CorruptObjectError);
    await expect(repo.openDisk(rp, 'd')).rejects.toThrow(new RegExp(`restore-points/${rp} is damaged`));
    await expect(repo.listRestorePoints()).rejects.toThrow(CorruptObjectError);
    await backend.put(key, good.subarray(0, 30));
    await expect(repo.getManifest(rp)).rejects.toThrow(/truncated/);
    await backend.put(key, good);
    expect((await repo.getManifest(rp)).id).toBe(rp);
    await expect(repo.getManifest('20990101T000000Z-000000000000')).rejects.toThrow(RestorePointNotFoundError);
  });

  it('an unknown format version or an edited config is refused clearly', async () => {
    const good = Buffer.from(await backend.get('config'));
    const cfg = JSON.parse(good.toString()) as Record<string, unknown>;
    await backend.put('config', Buffer.from(JSON.stringify({ ...cfg, version: 7 })));
    await expect(openRepository(backend, { passphrase: TEST_PASSPHRASE })).rejects.toThrow(UnsupportedFormatError);
    await expect(openRepository(backend, { passphrase: TEST_PASSPHRASE })).rejects.toThrow(/format version 7.*supports version 1/);
    await backend.put('config', Buffer.from(JSON.stringify({ ...cfg, chunkSize: 2 * TEST_CHUNK })));
    await expect(openRepository(backend, { passphrase: TEST_PASSPHRASE })).rejects.toThrow(/config is damaged: its MAC/);
    await backend.put('config', Buffer.from('{"format": "cairn-repository", '));
    await expect(openRepository(backend, { passphrase: TEST_PASSPHRASE })).rejects.toThrow(CorruptObjectError);
    await backend.put('config', good);
    await open(backend, TEST_PASSPHRASE);
  });
});
