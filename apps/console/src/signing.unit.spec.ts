// The browser's signer (WebCrypto Ed25519, as Chromium has it; Node has the same API) gives the
// CLI's bytes: the vector libs/command-auth/src/signing.vector.json is what the CLI's signer
// makes (checked in libs/command-auth's spec, with the command versions and canonical JSON the
// console must agree with), and nkeys — the server's verifier — accepts what it signs. The
// console imports no server library (module boundaries), so the vector is the bridge.
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { createUser, fromPublic } from '@nats-io/nkeys';
import {
  COMMAND_VERSIONS, KeyFileError, approvalStatement, canonicalJson, commandSigningString, decodeUserSeed, importOperatorKey, newSignedCommand, signApproval, signCommand,
  type SignedCommand,
} from './signing.ts';

interface Vector {
  keyFile: { kind: string; userId: string; site: string; publicKey: string; seed: string };
  issuedAt: string; command: SignedCommand; signingString: string; auth: unknown;
  approval: { approvalId: string; decision: 'grant'; action: unknown; statement: string; signature: unknown };
  commandVersions: Record<string, number>; canonical: { value: unknown; json: string };
}

/** The server's check (libs/command-auth verifyCommandSignature): nkeys' ed25519 over the signing string. */
async function verifies(cmd: SignedCommand): Promise<boolean> {
  const { auth, ...unsigned } = cmd;
  if (!auth) return false;
  const b64 = auth.signature.replace(/-/g, '+').replace(/_/g, '/');
  const sig = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return fromPublic(auth.publicKey).verify(new TextEncoder().encode(await commandSigningString(unsigned, auth.issuedAt)), sig);
}
const vector = async (): Promise<Vector> => JSON.parse(await readFile(new URL('../../../libs/command-auth/src/signing.vector.json', import.meta.url), 'utf8')) as Vector;

describe('signing in the browser', () => {
  it('signs the vector\'s command and approval with the very bytes of the CLI', async () => {
    const v = await vector();
    const key = await importOperatorKey(JSON.stringify(v.keyFile));
    expect(key).toMatchObject({ userId: 'alice', site: 'paris', publicKey: v.keyFile.publicKey });
    expect(key.key.extractable).toBe(false);
    expect(key.key.usages).toEqual(['sign']);
    expect(await commandSigningString(v.command, v.issuedAt)).toBe(v.signingString);
    const signed = await signCommand(v.command, key, new Date(v.issuedAt));
    expect(signed.auth).toEqual(v.auth);
    expect(approvalStatement({ approvalId: v.approval.approvalId, decision: 'grant', userId: 'alice', action: v.approval.action, issuedAt: v.issuedAt })).toBe(v.approval.statement);
    expect(await signApproval(key, v.approval.approvalId, 'grant', v.approval.action, new Date(v.issuedAt))).toEqual(v.approval.signature);
  });

  it('a fresh key: nkeys verifies what the browser signs, and a changed byte breaks it', async () => {
    const kp = createUser();
    const file = JSON.stringify({ kind: 'cairn-operator-key', userId: 'bob', publicKey: kp.getPublicKey(), seed: new TextDecoder().decode(kp.getSeed()) });
    const key = await importOperatorKey(file);
    const cmd = await newSignedCommand('DecideApproval', { approvalId: crypto.randomUUID(), decision: 'approve', signature: { publicKey: key.publicKey, signature: 'x'.repeat(86), issuedAt: new Date().toISOString() } }, 'lyon', key);
    expect(cmd).toMatchObject({ name: 'DecideApproval', site: 'lyon', actor: { kind: 'user', id: 'bob' }, schemaVersion: 1 });
    expect(await verifies(cmd)).toBe(true);
    expect(await verifies({ ...cmd, payload: { ...(cmd.payload as object), decision: 'reject' } })).toBe(false);
    expect(await verifies({ ...cmd, site: 'paris' })).toBe(false);
    const action = { kind: 'delete-restore-point', restorePointId: 'rp-1' };
    const sig = await signApproval(key, 'a-1', 'grant', action);
    const raw = Uint8Array.from(atob(sig.signature.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0));
    expect(kp.verify(new TextEncoder().encode(approvalStatement({ approvalId: 'a-1', decision: 'grant', userId: 'bob', action, issuedAt: sig.issuedAt })), raw)).toBe(true);
  });

  it('refuses what is not an operator key, with the reason', async () => {
    const v = await vector();
    await expect(importOperatorKey('not json')).rejects.toThrow(/not a Cairn operator key \(not JSON\)/);
    await expect(importOperatorKey(JSON.stringify({ kind: 'something' }))).rejects.toThrow(/not a Cairn operator key/);
    const other = createUser().getPublicKey();
    await expect(importOperatorKey(JSON.stringify({ ...v.keyFile, publicKey: other }))).rejects.toBeInstanceOf(KeyFileError);
    const damaged = v.keyFile.seed.slice(0, 10) + (v.keyFile.seed[10] === 'A' ? 'B' : 'A') + v.keyFile.seed.slice(11);
    expect(() => decodeUserSeed(damaged)).toThrow(/checksum/);
    expect(() => decodeUserSeed(v.keyFile.publicKey)).toThrow();
    await expect(importOperatorKey(JSON.stringify({ ...v.keyFile, userId: 'a b' }))).rejects.toThrow(/invalid user/);
  });

  it('canonical JSON and the command versions match the server\'s (as the vector records them)', async () => {
    const v = await vector();
    expect(canonicalJson(v.canonical.value)).toBe(v.canonical.json);
    expect(COMMAND_VERSIONS).toEqual(v.commandVersions);
  });
});
