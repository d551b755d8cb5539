import { describe, expect, it } from 'vitest';
import { createAccount, createCurve, createOperator, createServer, createUser, fromSeed } from '@nats-io/nkeys';
import { nativeSigner, verifyNkeySignature } from './ed25519.ts';

describe('nativeSigner (node:crypto ed25519 for nkey seeds)', () => {
  it('gives the public nkey and the signatures @nats-io/nkeys gives, for user and server seeds', () => {
    for (const make of [createUser, createServer, createOperator, createAccount]) {
      for (let i = 0; i < 5; i++) {
        const seed = new TextDecoder().decode(make().getSeed());
        const reference = fromSeed(new TextEncoder().encode(seed));
        const native = nativeSigner(`${seed}\n`);
        expect(native.publicKey).toBe(reference.getPublicKey());
        const data = new TextEncoder().encode(`cairn-nats-connect-v1\nadmin@site-${i}`);
        const signature = native.sign(data);
        expect(Buffer.from(signature).equals(Buffer.from(reference.sign(data)))).toBe(true);
        expect(reference.verify(data, signature)).toBe(true);
        if (make === createUser) expect(verifyNkeySignature(native.publicKey, data, signature)).toBe(true);
      }
    }
  });

  it('refuses a seed with a wrong checksum or length', () => {
    const seed = new TextDecoder().decode(createUser().getSeed());
    const flipped = seed.slice(0, 10) + (seed[10] === 'A' ? 'B' : 'A') + seed.slice(11);
    expect(() => nativeSigner(flipped)).toThrow(/not an nkey seed/);
    expect(() => nativeSigner(seed.slice(0, 40))).toThrow(/not an nkey seed/);
  });

  it('refuses what nkeys\' fromSeed refuses or cannot sign with: a public key, a curve seed', () => {
    const user = createUser();
    expect(() => nativeSigner(user.getPublicKey())).toThrow(/not an nkey seed/);
    expect(() => nativeSigner(new TextDecoder().decode(createCurve().getSeed()))).toThrow(/not an nkey seed of a signing key/);
  });
});
