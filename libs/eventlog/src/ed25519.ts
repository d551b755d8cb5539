// Event signatures with Node's native ed25519 (node:crypto). nkeys are ed25519 keys in NATS'
// base32 text form; @nats-io/nkeys signs and verifies with tweetnacl in pure JavaScript, which
// took ~50 ms per event on a loaded machine here: too slow for every reader checking every
// event. The keys are decoded from their nkey text once and kept as KeyObjects. Only keys the
// site knows are decoded (a reader looks an event's key up in site.json's map first).
import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';

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

/** RFC 4648 base32 without padding. */
function base32Encode(bytes: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = ((value << 8) | b) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

/** CRC-16/XMODEM (polynomial 0x1021, start 0): the checksum nkeys end with. */
function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const b of bytes) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** nkeys' prefix byte of a seed (`S`), and of the roles whose seeds are ed25519 keys: server, operator, cluster, account, user. */
const PREFIX_SEED = 18 << 3;
const SIGNING_ROLES = new Set([13 << 3, 14 << 3, 2 << 3, 0, 20 << 3]);

/** PKCS#8 DER of an ed25519 private key, before its 32-byte seed (RFC 8410). */
const PKCS8_ED25519 = Buffer.from('302e020100300506032b657004220420', 'hex');

/**
 * An nkey seed (`SU…`) as a native signing key, with its public nkey. Nothing here runs
 * tweetnacl: deriving a key pair there took ~25 ms of a CLI command's start on this machine.
 */
export function nativeSigner(seed: string): { readonly publicKey: string; sign(data: Uint8Array): Uint8Array } {
  const text = seed.trim();
  const bytes = base32Decode(text);
  if (bytes.length !== 36 || crc16(bytes.subarray(0, 34)) !== (bytes[34]! | (bytes[35]! << 8))) throw new Error('not an nkey seed');
  // The prefix checks nkeys' fromSeed makes: an `S` seed of an ed25519 role (a curve seed, `SX…`,
  // is an x25519 key and signs nothing).
  const role = ((bytes[0]! & 7) << 5) | ((bytes[1]! & 0xf8) >> 3);
  if ((bytes[0]! & 0xf8) !== PREFIX_SEED || !SIGNING_ROLES.has(role)) throw new Error('not an nkey seed of a signing key');
  const key: KeyObject = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, bytes.subarray(2, 34)]), format: 'der', type: 'pkcs8' });
  let publicKey: string | undefined;
  return {
    get publicKey() {
      if (publicKey === undefined) {
        // The seed's two prefix bytes carry the role (user, server, …) of its public key.
        const raw = Buffer.from(createPublicKey(key).export({ format: 'jwk' }).x!, 'base64url');
        const body = Uint8Array.from([role, ...raw]);
        const sum = crc16(body);
        publicKey = base32Encode(Uint8Array.from([...body, sum & 0xff, sum >> 8]));
      }
      return publicKey;
    },
    sign: (data) => new Uint8Array(sign(null, data, key)),
  };
}

/** Whether `signature` is `publicKey`'s ed25519 signature of `data` (false for anything malformed). */
export function verifyNkeySignature(publicKey: string, data: Uint8Array, signature: Uint8Array): boolean {
  try {
    return verify(null, data, publicKeyObject(publicKey), signature);
  } catch {
    return false;
  }
}
