import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { EscrowError, makeEscrowKey, openEscrow, sealEscrow, verifyEscrowStatement } from './key-escrow.ts';

// Two CAs made with openssl as the hub makes its own (ECDSA P-256): the hub's and a stranger's.
const dir = mkdtempSync(join(tmpdir(), 'cairn-escrow-unit-'));
function ca(name: string): { cert: string; key: string } {
  const key = join(dir, `${name}-key.pem`);
  const cert = join(dir, `${name}.pem`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', `/CN=${name}`], { stdio: 'ignore' });
  return { cert: readFileSync(cert, 'utf8'), key: readFileSync(key, 'utf8') };
}
const hub = ca('hub');
const other = ca('other');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('key escrow', () => {
  const b = makeEscrowKey('b', hub.key);
  const c = makeEscrowKey('c', hub.key);
  const wrap = () => sealEscrow({ sourceSite: 'a', recipient: b.statement, repositoryId: 'repo-1', keyIds: ['k2', 'k1'], secret: { passphrase: 'correct horse' } });

  it('a site key the hub CA signed is accepted for that site only; another CA\'s or an edited one is refused', () => {
    expect(() => verifyEscrowStatement(b.statement, hub.cert, 'b')).not.toThrow();
    expect(() => verifyEscrowStatement(b.statement, hub.cert, 'c')).toThrow(/site b's/);
    expect(() => verifyEscrowStatement(makeEscrowKey('b', other.key).statement, hub.cert, 'b')).toThrow(/not signed by the hub CA/);
    expect(() => verifyEscrowStatement({ ...b.statement, publicKey: c.statement.publicKey }, hub.cert, 'b')).toThrow(EscrowError);
  });

  it('only the target\'s private key opens what was sealed for it, and the plaintext is not in the envelope', () => {
    const e = wrap();
    expect(e).toMatchObject({ sourceSite: 'a', targetSite: 'b', repositoryId: 'repo-1', keyIds: ['k1', 'k2'], recipient: b.statement.publicKey });
    expect(JSON.stringify(e)).not.toContain('correct horse');
    expect(openEscrow(e, b.privateKeyPem)).toEqual({ passphrase: 'correct horse' });
    expect(() => openEscrow(e, c.privateKeyPem)).toThrow(/another key/);
    // Two seals of the same secret differ (ephemeral key, nonce).
    expect(wrap().ciphertext).not.toBe(e.ciphertext);
  });

  it('any change to the header or the ciphertext makes it fail to open', () => {
    const e = wrap();
    for (const bad of [{ ...e, sourceSite: 'x' }, { ...e, repositoryId: 'repo-2' }, { ...e, keyIds: ['k1'] }, { ...e, wrappedAt: new Date(0).toISOString() },
      { ...e, ciphertext: Buffer.from('x' + Buffer.from(e.ciphertext, 'base64').toString('latin1').slice(1), 'latin1').toString('base64') }]) {
      expect(() => openEscrow(bad, b.privateKeyPem)).toThrow(/does not open/);
    }
  });
});
