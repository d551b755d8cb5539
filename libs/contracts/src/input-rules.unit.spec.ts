// Input rules of issue 22: names without control or bidi characters, nkeys with a valid
// checksum, restore targets confined (the pure half; the file-system half is in the data mover).
import { createUser } from '@nats-io/nkeys';
import { describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { checkCommand, confineRestoreTarget, isPlainName, isUserPublicNkey } from './index.ts';

describe('input rules', () => {
  it('names: no control, bidi or unpaired surrogate characters, no outer spaces', () => {
    for (const ok of ['nightly', 'Paris DC 2', 'été-backup', '日本語', 'a.b_c-d']) expect(isPlainName(ok), ok).toBe(true);
    for (const bad of ['a\u0000b', 'tab\there', 'line\nbreak', 'esc\u001b[31m', 'del\u007f', 'c1\u0085', 'rlo\u202egnp.exe', 'iso\u2066x\u2069', 'lrm\u200e', '\ud800', ' padded', 'padded ']) {
      expect(isPlainName(bad), JSON.stringify(bad)).toBe(false);
    }
    const policy = { name: 'evil\u202eexe', selector: { names: ['vm'] }, schedule: { cron: '0 2 * * *', timezone: 'UTC' }, retention: { daily: 1, weekly: 0, monthly: 0, yearly: 0, last: 1 }, repository: 'default', keyRef: 'default', priority: 1 };
    const command = (payload: unknown) => ({
      id: randomUUID(), name: 'CreatePolicy', schemaVersion: 1, idempotencyKey: 'k', actor: { kind: 'user', id: 'u' }, site: 's', time: new Date().toISOString(), payload,
    });
    expect(checkCommand(command(policy))).toMatchObject({ ok: false, code: 'invalid_command' });
    expect(checkCommand(command({ ...policy, name: 'nightly' }))).toMatchObject({ ok: true });
  });

  it('nkeys: a user public key with a wrong checksum is refused', () => {
    const good = createUser().getPublicKey();
    expect(isUserPublicNkey(good)).toBe(true);
    const last = good.at(-1)!;
    const flipped = good.slice(0, -1) + (last === 'A' ? 'B' : 'A');
    expect(isUserPublicNkey(flipped)).toBe(false);
    expect(isUserPublicNkey('N' + good.slice(1))).toBe(false);
    expect(isUserPublicNkey('U' + 'A'.repeat(55))).toBe(false);
  });

  it('restore targets: the pure rule', () => {
    const c = { roots: ['/srv/restores', '/data/restores'], forbidden: ['/data/repository', '/data/secrets', '/data/stack.json'], dataDir: '/data' };
    expect(confineRestoreTarget('/srv/restores/a.raw', c)).toEqual({ ok: true, target: '/srv/restores/a.raw' });
    expect(confineRestoreTarget('/data/restores/a.raw', c)).toEqual({ ok: true, target: '/data/restores/a.raw' });
    const refused: [string, boolean, string][] = [
      ['/data/stack.json', true, 'forbidden'], ['/data/secrets/api.token', true, 'forbidden'], ['/data/repository/config', true, 'forbidden'],
      ['/data/x.raw', true, 'forbidden'], ['/data', true, 'forbidden'], ['/srv/restores', true, 'forbidden'], ['/home/u/x.raw', false, 'forbidden'],
      ['/srv/restores/../x.raw', false, 'forbidden'], ['rel.raw', true, 'invalid_command'], ['/srv/restores/\0', true, 'invalid_command'],
      [`/srv/restores/${'a'.repeat(4096)}`, true, 'invalid_command'], [`/srv/restores/${'a'.repeat(256)}`, true, 'invalid_command'],
    ];
    for (const [path, own, code] of refused) {
      const d = confineRestoreTarget(path, { ...c, ownTarget: own });
      expect(d.ok ? 'ok' : d.code, `${path.slice(0, 60)} own=${own}`).toBe(code);
    }
    expect(confineRestoreTarget('/home/u/x.raw', { ...c, ownTarget: true })).toEqual({ ok: true, target: '/home/u/x.raw' });
    // A root inside a forbidden place is ignored.
    expect(confineRestoreTarget('/data/secrets/r/x', { ...c, roots: ['/data/secrets/r'] }).ok).toBe(false);
  });
});
