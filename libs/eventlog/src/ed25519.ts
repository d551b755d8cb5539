// Event signatures with Node's native ed25519 (node:crypto). nkeys are ed25519 keys in NATS'
// base32 text form; @nats-io/nkeys signs and verifies with tweetnacl in pure JavaScript, which
// took ~50 ms per event on a loaded machine here: too slow for every reader checking every
// event. The keys are decoded from their nkey text once and kept as KeyObjects. Only keys the
// site knows are decoded (a reader looks an event's key up in site.json's map first).
import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { fromSeed } from '@nats-io/nkeys';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32 without padding, as nkeys are written. */
function base32Decode(text: string): Uint8Array {
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const ch of text) {
    const v = ALPHABET.indexOf(ch);
    if (v < 0) throw new Error('not an nkey: bad base32 character');
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Uint8Array.from(out);
}

const b64u = (b: Uint8Array) => Buffer.from(b).toString('base64url');

/** The raw 32-byte key of a user nkey (`U…`: one prefix byte, the key, a 2-byte checksum). */
function rawPublic(nkey: string): Uint8Array {
  const bytes = base32Decode(nkey);
  if (bytes.length !== 35) throw new Error('not a user nkey');
  return bytes.subarray(1, 33);
}

const publicKeys = new Map<string, KeyObject>();

function publicKeyObject(nkey: string): KeyObject {
  let key = publicKeys.get(nkey);
  if (!key) {
    key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: b64u(rawPublic(nkey)) }, format: 'jwk' });
    if (publicKeys.size > 10_000) publicKeys.clear();
    publicKeys.set(nkey, key);
  }
  return key;
}

/** An nkey seed (`SU…`) as a native signing key, with its public nkey. */
export function nativeSigner(seed: string): { readonly publicKey: string; sign(data: Uint8Array): Uint8Array } {
  const text = seed.trim();
  const publicKey = fromSeed(new TextEncoder().encode(text)).getPublicKey();
  const bytes = base32Decode(text);
  if (bytes.length !== 36) throw new Error('not an nkey seed');
  const key: KeyObject = createPrivateKey({
    key: { kty: 'OKP', crv: 'Ed25519', d: b64u(bytes.subarray(2, 34)), x: b64u(rawPublic(publicKey)) }, format: 'jwk',
  });
  return { publicKey, sign: (data) => new Uint8Array(sign(null, data, key)) };
}

/** Whether `signature` is `publicKey`'s ed25519 signature of `data` (false for anything malformed). */
export function verifyNkeySignature(publicKey: string, data: Uint8Array, signature: Uint8Array): boolean {
  try {
    return verify(null, data, publicKeyObject(publicKey), signature);
  } catch {
    return false;
  }
}
