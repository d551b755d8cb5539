// The master key set of a repository and how it is wrapped into `keys/<id>` objects:
// by a passphrase through scrypt (parameters stored beside the wrapped key) or by a
// KeyProvider. Rotation writes a new wrapping; chunks are never re-encrypted.
import { createCipheriv, createDecipheriv, randomBytes, scrypt as scryptCb, type ScryptOptions } from 'node:crypto';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { CorruptObjectError, WrongKeyError } from '../errors.ts';
import type { KeyProvider } from './key-provider.ts';

export interface MasterKeys {
  /** AES-256-GCM key for chunks, index pages and manifests. */
  readonly dataKey: Buffer;
  /** HMAC-SHA-256 key for content ids. */
  readonly idKey: Buffer;
}

export interface ScryptParams {
  readonly N: number;
  readonly r: number;
  readonly p: number;
}

/** ~0.3-0.6 s and 128 MiB on one core of this machine: slow for guessing, fine for opening. */
export const DEFAULT_SCRYPT: ScryptParams = { N: 1 << 17, r: 8, p: 1 };

export type Credentials =
  | { readonly passphrase: string; readonly kdf?: Partial<ScryptParams> }
  | { readonly keyProvider: KeyProvider };

export const KeyObjectSchema = Type.Object({
  version: Type.Literal(1),
  keyId: Type.String(),
  createdAt: Type.String(),
  kek: Type.Union([
    Type.Object({
      type: Type.Literal('passphrase'),
      kdf: Type.Object({ name: Type.Literal('scrypt'), N: Type.Integer(), r: Type.Integer(), p: Type.Integer(), salt: Type.String() }),
    }),
    Type.Object({
      type: Type.Literal('provider'),
      provider: Type.String(),
      meta: Type.Record(Type.String(), Type.String()),
    }),
  ]),
  wrapped: Type.String(),
});
export type KeyObject = Static<typeof KeyObjectSchema>;

export function generateMasterKeys(): MasterKeys {
  return { dataKey: randomBytes(32), idKey: randomBytes(32) };
}

const packKeys = (k: MasterKeys): Buffer => Buffer.concat([k.dataKey, k.idKey]);
function unpackKeys(b: Uint8Array): MasterKeys {
  if (b.length !== 64) throw new WrongKeyError('unwrapped key set has the wrong length');
  const buf = Buffer.from(b);
  return { dataKey: buf.subarray(0, 32), idKey: buf.subarray(32, 64) };
}

/** Binds a wrapped key to its repository and key id, so key objects cannot be swapped around. */
const wrapContext = (repositoryId: string, keyId: string): Buffer => Buffer.from(`cairn/key/v1/${repositoryId}/${keyId}`);

function deriveKek(passphrase: string, salt: Buffer, p: ScryptParams): Promise<Buffer> {
  const options: ScryptOptions = { N: p.N, r: p.r, p: p.p, maxmem: 256 * p.N * p.r + 1024 * 1024 };
  return new Promise((resolve, reject) => {
    scryptCb(passphrase.normalize('NFC'), salt, 32, options, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

export async function wrapMasterKeys(
  keys: MasterKeys,
  credentials: Credentials,
  repositoryId: string,
  keyId: string,
  now = new Date(),
): Promise<KeyObject> {
  const context = wrapContext(repositoryId, keyId);
  if ('keyProvider' in credentials) {
    const w = await credentials.keyProvider.wrap(packKeys(keys), context);
    return {
      version: 1, keyId, createdAt: now.toISOString(),
      kek: { type: 'provider', provider: credentials.keyProvider.id, meta: { ...(w.meta ?? {}) } },
      wrapped: w.ciphertext,
    };
  }
  if (!credentials.passphrase) throw new WrongKeyError('an empty passphrase is not allowed');
  const params = { ...DEFAULT_SCRYPT, ...credentials.kdf };
  const salt = randomBytes(16);
  const kek = await deriveKek(credentials.passphrase, salt, params);
  const nonce = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', kek, nonce);
  c.setAAD(context);
  const body = Buffer.concat([c.update(packKeys(keys)), c.final()]);
  return {
    version: 1, keyId, createdAt: now.toISOString(),
    kek: { type: 'passphrase', kdf: { name: 'scrypt', ...params, salt: salt.toString('base64') } },
    wrapped: Buffer.concat([nonce, body, c.getAuthTag()]).toString('base64'),
  };
}

export function parseKeyObject(key: string, bytes: Uint8Array): KeyObject {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw new CorruptObjectError(key, 'not valid JSON');
  }
  if (!Value.Check(KeyObjectSchema, raw)) throw new CorruptObjectError(key, 'not a key object');
  return raw;
}

/** Unwraps one key object with the credentials; `undefined` when they do not fit it. */
export async function unwrapMasterKeys(
  obj: KeyObject,
  credentials: Credentials,
  repositoryId: string,
): Promise<MasterKeys | undefined> {
  const context = wrapContext(repositoryId, obj.keyId);
  if ('keyProvider' in credentials) {
    if (obj.kek.type !== 'provider' || obj.kek.provider !== credentials.keyProvider.id) return undefined;
    try {
      return unpackKeys(await credentials.keyProvider.unwrap({ ciphertext: obj.wrapped, meta: obj.kek.meta }, context));
    } catch (e) {
      if (e instanceof WrongKeyError) return undefined;
      throw e;
    }
  }
  if (obj.kek.type !== 'passphrase') return undefined;
  const { N, r, p, salt } = obj.kek.kdf;
  const kek = await deriveKek(credentials.passphrase, Buffer.from(salt, 'base64'), { N, r, p });
  const raw = Buffer.from(obj.wrapped, 'base64');
  try {
    const d = createDecipheriv('aes-256-gcm', kek, raw.subarray(0, 12));
    d.setAAD(context);
    d.setAuthTag(raw.subarray(raw.length - 16));
    return unpackKeys(Buffer.concat([d.update(raw.subarray(12, raw.length - 16)), d.final()]));
  } catch {
    return undefined;
  }
}

export const encodeKeyObject = (obj: KeyObject): Uint8Array => Buffer.from(JSON.stringify(obj, null, 2) + '\n');
