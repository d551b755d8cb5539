// The key journal: init, rotation and recovery-key export each leave one MAC'd entry with the
// actor, in time order, holding no secret; an edited or foreign entry is reported, not trusted;
// a rotation whose entry cannot be written changes nothing.
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { useHarness } from '@cairn/testing';
import { BackendError, type Backend } from './backend/backend.ts';
import { KEY_JOURNAL_PREFIX } from './keys/key-journal.ts';
import { createKeyFile } from './keys/key-provider.ts';
import { decodeRecoveryKey } from './keys/recovery-key.ts';
import { openRepository, openRepositoryWithRecoveryKey } from './repository.ts';
import { CHEAP_KDF, makeBackend, makeRepository, TEST_PASSPHRASE } from './testing/fixtures.ts';

const h = useHarness();
const alice = { kind: 'user' as const, id: 'alice' };

async function journalText(b: Backend): Promise<string> {
  let text = '';
  for await (const o of b.list(KEY_JOURNAL_PREFIX)) text += Buffer.from(await b.get(o.key)).toString('utf8');
  return text;
}

describe('key journal', () => {
  it('records init, rotations and recovery-key exports with actor, host and key ids, never a secret', async () => {
    const backend = await makeBackend(h, 'directory');
    const repo = await makeRepository(h, backend, { journal: { actor: alice, host: 'vault-1' } });
    const initial = await repo.keyJournal();
    expect(initial.invalid).toEqual([]);
    expect(initial.entries).toHaveLength(1);
    const init = initial.entries[0]!;
    expect(init).toMatchObject({ act: 'init', actor: alice, host: 'vault-1', repositoryId: repo.repositoryId, wrapping: 'passphrase', chunkSize: repo.chunkSize });

    const keyFile = `${await h.tmpDir()}/kek.hex`;
    const rotated = await repo.rotateKey({ keyProvider: await createKeyFile(keyFile) }, { actor: { kind: 'user', id: 'bob' } });
    expect(rotated.journalEntry).toMatchObject({ act: 'rotate', keyId: rotated.keyId, wrapping: 'key-provider', keyProvider: 'file', openedWith: 'passphrase' });
    expect(rotated.journalEntry.act === 'rotate' && rotated.journalEntry.previousKeyIds).toEqual([init.act === 'init' ? init.keyId : '']);
    const recoveryKey = repo.exportRecoveryKey();
    const exported = await repo.recordRecoveryKeyExport({ file: '/safe/recovery.txt' }, { actor: alice });
    expect(exported).toMatchObject({ act: 'export-recovery', fingerprint: repo.recoveryKeyFingerprint(), file: '/safe/recovery.txt', openedWith: 'passphrase' });

    // Opened with the recovery key: the next acts say so.
    const viaRecovery = await openRepositoryWithRecoveryKey(backend, recoveryKey);
    h.onClose(() => viaRecovery.close());
    expect(viaRecovery.recoveryKeyFingerprint()).toBe(repo.recoveryKeyFingerprint());
    const again = await viaRecovery.rotateKey({ passphrase: 'new passphrase', kdf: CHEAP_KDF }, { actor: alice });
    expect(again.journalEntry).toMatchObject({ openedWith: 'recovery-key', wrapping: 'passphrase', previousKeyIds: [rotated.keyId] });

    const journal = await viaRecovery.keyJournal();
    expect(journal.invalid).toEqual([]);
    expect(journal.entries.map((e) => e.act)).toEqual(['init', 'rotate', 'export-recovery', 'rotate']);
    expect(new Set(journal.entries.map((e) => e.id)).size).toBe(4);

    // No secret in any journal object: not the passphrases, the key file's key, the recovery key or the master keys.
    const text = await journalText(backend);
    const { keys } = decodeRecoveryKey(recoveryKey);
    for (const secret of [TEST_PASSPHRASE, 'new passphrase', (await readFile(keyFile, 'utf8')).trim(),
      recoveryKey.split(':')[2]!, keys.dataKey.toString('hex'), keys.idKey.toString('hex'), keys.dataKey.toString('base64'), keys.idKey.toString('base64')]) {
      expect(text).not.toContain(secret);
    }
  });

  it('reports an edited entry and one written without the keys; trusts neither', async () => {
    const backend = await makeBackend(h, 'directory');
    const repo = await makeRepository(h, backend, { journal: { actor: alice } });
    const [entry] = (await repo.keyJournal()).entries;
    let key = '';
    for await (const o of backend.list(KEY_JOURNAL_PREFIX)) key = o.key;
    const stored = JSON.parse(Buffer.from(await backend.get(key)).toString('utf8')) as Record<string, unknown>;
    await backend.put(key, Buffer.from(JSON.stringify({ ...stored, actor: { kind: 'user', id: 'mallory' } })));
    const forged = `${KEY_JOURNAL_PREFIX}20300101T000000000Z-00000000-0000-4000-8000-000000000000`;
    await backend.put(forged, Buffer.from(JSON.stringify({ ...stored, id: '00000000-0000-4000-8000-000000000000', time: '2030-01-01T00:00:00.000Z' })));
    const journal = await repo.keyJournal();
    expect(journal.entries).toEqual([]);
    expect(journal.invalid.map((i) => i.key).sort()).toEqual([key, forged].sort());
    expect(journal.invalid.every((i) => /MAC does not match/.test(i.reason))).toBe(true);
    expect(entry?.actor).toEqual(alice);
  });

  it('a rotation whose journal entry cannot be written leaves the old key in place and no new one', async () => {
    const inner = await makeBackend(h, 'directory');
    await makeRepository(h, inner);
    let refuse = false;
    const backend: Backend = {
      ...inner,
      location: inner.location,
      put: async (key, data, options) => {
        if (refuse && key.startsWith(KEY_JOURNAL_PREFIX)) throw new BackendError(`injected: ${key} refused`, false, key);
        return inner.put(key, data, options);
      },
      get: (k) => inner.get(k), getRange: (k, o, l) => inner.getRange(k, o, l), stat: (k) => inner.stat(k), exists: (k) => inner.exists(k),
      list: (p) => inner.list(p), delete: (k) => inner.delete(k),
    };
    const repo = await openRepository(backend, { passphrase: TEST_PASSPHRASE });
    h.onClose(() => repo.close());
    refuse = true;
    await expect(repo.rotateKey({ passphrase: 'other', kdf: CHEAP_KDF })).rejects.toThrow(/injected/);
    refuse = false;
    const reopened = await openRepository(inner, { passphrase: TEST_PASSPHRASE });
    h.onClose(() => reopened.close());
    expect((await reopened.stats()).keys).toBe(1);
    await expect(openRepository(inner, { passphrase: 'other' })).rejects.toThrow(/wrong passphrase/);
    expect((await reopened.keyJournal()).entries.map((e) => e.act)).toEqual(['init']);
  });
});
