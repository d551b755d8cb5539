// External key-encryption: a KeyProvider wraps and unwraps the repository's master key set
// (a KMS, an HSM, or the file-based provider shipped here). The repository stores what
// `wrap` returns and hands it back to `unwrap`; it never sees the provider's key.
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { WrongKeyError } from '../errors.ts';

export interface WrappedKey {
  /** Opaque ciphertext, base64. */
  readonly ciphertext: string;
  /** Provider-specific, non-secret data needed to unwrap (key version, fingerprint, ARN…). */
  readonly meta?: Readonly<Record<string, string>>;
}

export interface KeyProvider {
  /** Stable provider name stored with the wrapped key, e.g. `file`, `vault-transit`. */
  readonly id: string;
  /** Encrypts `plain`, binding it to `context` (authenticated, not secret). */
  wrap(plain: Uint8Array, context: Uint8Array): Promise<WrappedKey>;
  /** Reverses `wrap`; throws `WrongKeyError` when this provider's key is not the one used. */
  unwrap(wrapped: WrappedKey, context: Uint8Array): Promise<Uint8Array>;
}

/** Keys from a local file holding 32 random bytes as hex (created by `createKeyFile`). */
export class FileKeyProvider implements KeyProvider {
  readonly id = 'file';
  private key?: Buffer;

  constructor(readonly path: string) {}

  private async load(): Promise<Buffer> {
    if (!this.key) {
      const text = (await readFile(this.path, 'utf8')).trim();
      if (!/^[0-9a-f]{64}$/i.test(text)) throw new WrongKeyError(`key file ${this.path} does not hold 64 hex characters`);
      this.key = Buffer.from(text, 'hex');
    }
    return this.key;
  }

  private static fingerprint(key: Buffer): string {
    return createHash('sha256').update(key).digest('hex').slice(0, 16);
  }

  async wrap(plain: Uint8Array, context: Uint8Array): Promise<WrappedKey> {
    const key = await this.load();
    const nonce = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', key, nonce);
    c.setAAD(context);
    const body = Buffer.concat([c.update(plain), c.final()]);
    return {
      ciphertext: Buffer.concat([nonce, body, c.getAuthTag()]).toString('base64'),
      meta: { fingerprint: FileKeyProvider.fingerprint(key) },
    };
  }

  async unwrap(wrapped: WrappedKey, context: Uint8Array): Promise<Uint8Array> {
    const key = await this.load();
    const fp = FileKeyProvider.fingerprint(key);
    if (wrapped.meta?.fingerprint && wrapped.meta.fingerprint !== fp) {
      throw new WrongKeyError(`key file ${this.path} (fingerprint ${fp}) is not the key this was wrapped with (${wrapped.meta.fingerprint})`);
    }
    const raw = Buffer.from(wrapped.ciphertext, 'base64');
    try {
      const d = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
      d.setAAD(context);
      d.setAuthTag(raw.subarray(raw.length - 16));
      return Buffer.concat([d.update(raw.subarray(12, raw.length - 16)), d.final()]);
    } catch {
      throw new WrongKeyError(`key file ${this.path} does not unwrap this key`);
    }
  }
}

/** Writes a new random key file (mode 0600); refuses to overwrite an existing one. */
export async function createKeyFile(path: string): Promise<FileKeyProvider> {
  await writeFile(path, randomBytes(32).toString('hex') + '\n', { mode: 0o600, flag: 'wx' });
  return new FileKeyProvider(path);
}
