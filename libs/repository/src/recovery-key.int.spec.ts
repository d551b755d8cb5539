// The recovery key: exported once, it opens the repository when the passphrase is lost
// (also after key rotations), lets the operator set a new passphrase, and a mistyped key or
// the key of another repository is a clear WrongKeyError.
import { describe, expect, it } from 'vitest';
import { useHarness } from '@cairn/testing';
import { WrongKeyError } from './errors.ts';
import { decodeRecoveryKey, encodeRecoveryKey } from './keys/recovery-key.ts';
import { openRepository, openRepositoryWithRecoveryKey } from './repository.ts';
import { CHEAP_KDF, makeBackend, makeRepository, TEST_CHUNK } from './testing/fixtures.ts';
import { asAsync, fullExtents, makeImage } from './testing/test-image.ts';

const h = useHarness();
const SIZE = 256 * 1024;

describe('recovery key', () => {
  it('opens the repository after the passphrase is lost and rotated away, then sets a new passphrase', async () => {
    const backend = await makeBackend(h, 'directory');
    const repo = await makeRepository(h, backend);
    const image = makeImage(SIZE, 3);
    const { restorePointId } = await repo.writeRestorePoint({ vm: { id: 'v', name: 'v' }, disks: [{ name: 'd', sizeBytes: SIZE, extents: asAsync(fullExtents(image, TEST_CHUNK)) }] });
    const recoveryKey = repo.exportRecoveryKey();
    expect(recoveryKey).toMatch(new RegExp(`^cairn-recovery-v1:${repo.repositoryId}:[A-Z2-7-]+$`));
    expect(repo.exportRecoveryKey()).toBe(recoveryKey); // stable: it is the master keys, not a wrapping

    // The passphrase is rotated to one nobody remembers: only the recovery key is left.
    await repo.rotateKey({ passphrase: 'forgotten', kdf: CHEAP_KDF });
    await expect(openRepository(backend, { passphrase: 'correct horse battery staple' })).rejects.toThrow(WrongKeyError);

    // Typed by hand: lower case, spaces instead of dashes — still accepted.
    const typed = recoveryKey.split(':').map((p, i) => (i === 2 ? p.toLowerCase().replace(/-/g, ' ') : p)).join(':');
    const recovered = await openRepositoryWithRecoveryKey(backend, typed);
    h.onClose(() => recovered.close());
    expect(Buffer.from(await (await recovered.openDisk(restorePointId, 'd')).read(0, SIZE)).equals(Buffer.from(image))).toBe(true);
    await recovered.rotateKey({ passphrase: 'new passphrase', kdf: CHEAP_KDF });
    const reopened = await openRepository(backend, { passphrase: 'new passphrase' });
    h.onClose(() => reopened.close());
    expect((await reopened.listRestorePoints()).map((r) => r.id)).toEqual([restorePointId]);
    expect(reopened.exportRecoveryKey()).toBe(recoveryKey);
  });

  it('a mistyped key, another repository\'s key or garbage is a clear WrongKeyError', async () => {
    const backend = await makeBackend(h, 'directory');
    const repo = await makeRepository(h, backend);
    const key = repo.exportRecoveryKey();
    const [prefix, id, body] = key.split(':') as [string, string, string];
    const flipped = `${prefix}:${id}:${body[0] === 'A' ? 'B' : 'A'}${body.slice(1)}`;
    await expect(openRepositoryWithRecoveryKey(backend, flipped)).rejects.toThrow(/mistyped: its checksum does not match/);
    await expect(openRepositoryWithRecoveryKey(backend, `${prefix}:${id}:${body.slice(0, -3)}`)).rejects.toThrow(/mistyped/);
    await expect(openRepositoryWithRecoveryKey(backend, 'my passphrase')).rejects.toThrow(/not a Cairn recovery key/);

    const other = await makeRepository(h, await makeBackend(h, 'directory'));
    await expect(openRepositoryWithRecoveryKey(backend, other.exportRecoveryKey())).rejects.toThrow(WrongKeyError);
    await expect(openRepositoryWithRecoveryKey(backend, other.exportRecoveryKey())).rejects.toThrow(/for repository .* not /);
    // Same repository id but other keys (a forged key): the config MAC refuses it.
    const forged = other.exportRecoveryKey();
    const { keys } = decodeRecoveryKey(forged);
    await expect(openRepositoryWithRecoveryKey(backend, encodeRecoveryKey(repo.repositoryId, keys))).rejects.toThrow(/does not fit/);
  });
});
