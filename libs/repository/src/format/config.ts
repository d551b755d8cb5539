// The repository's `config` object: the format version and the settings every reader and
// writer must agree on. Stored as plain JSON (a newer Cairn must be able to say "format 2,
// not supported" before it has any key) and authenticated by a MAC under the id key.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { CorruptObjectError, UnsupportedFormatError } from '../errors.ts';
import { canonicalJson } from './canonical-json.ts';
import { CONFIG_KEY } from './layout.ts';

export const FORMAT_NAME = 'cairn-repository';
export const FORMAT_VERSION = 1;

export const ConfigSchema = Type.Object({
  format: Type.Literal(FORMAT_NAME),
  version: Type.Literal(FORMAT_VERSION),
  repositoryId: Type.String({ pattern: '^[0-9a-f]{16,64}$' }),
  chunkSize: Type.Integer({ minimum: 4096, maximum: 64 * 1024 * 1024 }),
  pageEntries: Type.Integer({ minimum: 2, maximum: 1 << 20 }),
  compression: Type.Object({ algorithm: Type.Literal('zstd'), level: Type.Integer({ minimum: 0, maximum: 19 }) }),
  encryption: Type.Literal('aes-256-gcm'),
  idHash: Type.Literal('hmac-sha256'),
  createdAt: Type.String(),
  mac: Type.String({ pattern: '^[0-9a-f]{64}$' }),
});
export type RepositoryConfig = Static<typeof ConfigSchema>;
export type UnsignedConfig = Omit<RepositoryConfig, 'mac'>;

/** Parses `config` bytes: version first (so old code says "unsupported", not "corrupt"), then shape. */
export function parseConfig(bytes: Uint8Array, location: string): RepositoryConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (e) {
    throw new CorruptObjectError(CONFIG_KEY, `not valid JSON (${(e as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null) throw new CorruptObjectError(CONFIG_KEY, 'not a JSON object');
  const { format, version } = raw as { format?: unknown; version?: unknown };
  if (format !== FORMAT_NAME) throw new CorruptObjectError(CONFIG_KEY, `format is ${JSON.stringify(format)}, expected "${FORMAT_NAME}"`);
  if (version !== FORMAT_VERSION) {
    throw new UnsupportedFormatError(
      `repository at ${location} uses format version ${JSON.stringify(version)}; this Cairn supports version ${FORMAT_VERSION}`,
    );
  }
  if (!Value.Check(ConfigSchema, raw)) {
    const first = [...Value.Errors(ConfigSchema, raw)][0];
    throw new CorruptObjectError(CONFIG_KEY, `invalid field ${first?.path ?? '?'}: ${first?.message ?? 'schema mismatch'}`);
  }
  return raw;
}

function configMacKey(idKey: Uint8Array): Buffer {
  return createHmac('sha256', idKey).update('cairn/config-mac/v1').digest();
}

export function signConfig(config: UnsignedConfig, idKey: Uint8Array): RepositoryConfig {
  const mac = createHmac('sha256', configMacKey(idKey)).update(canonicalJson(config)).digest('hex');
  return { ...config, mac };
}

/** Checks the config MAC once the keys are unwrapped: a tampered chunk size would corrupt every read. */
export function verifyConfigMac(config: RepositoryConfig, idKey: Uint8Array): void {
  const { mac, ...unsigned } = config;
  const want = createHmac('sha256', configMacKey(idKey)).update(canonicalJson(unsigned)).digest();
  const got = Buffer.from(mac, 'hex');
  if (got.length !== want.length || !timingSafeEqual(got, want)) {
    throw new CorruptObjectError(CONFIG_KEY, 'its MAC does not match (edited or damaged)');
  }
}

export const encodeConfig = (config: RepositoryConfig): Uint8Array => Buffer.from(JSON.stringify(config, null, 2) + '\n');
