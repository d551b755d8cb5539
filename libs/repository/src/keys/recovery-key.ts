// Recovery key: the repository's master key set written out as text, for the day the
// passphrase (or the KMS / key file) is lost. It opens the repository without any key object,
// so it survives key rotation (rotation re-wraps, the master keys never change) — and so it
// must be kept offline like the data itself: whoever holds it can read every restore point.
//
//   cairn-recovery-v1:<repository id>:<base32 groups of dataKey ‖ idKey ‖ checksum>
//
// The checksum (4 bytes of SHA-256 over the repository id and the keys) catches typing errors
// before anything is tried; the config MAC then proves the id key belongs to the repository.
import { createHash } from 'node:crypto';
import { NotFoundError, type Backend } from '../backend/backend.ts';
import { CorruptObjectError, RepositoryNotFoundError, WrongKeyError } from '../errors.ts';
import { assertNotDeleted } from '../maintenance/destroy.ts';
import { parseConfig, verifyConfigMac } from '../format/config.ts';
import { CONFIG_KEY } from '../format/layout.ts';
import type { MasterKeys } from './master-keys.ts';

const PREFIX = 'cairn-recovery-v1';
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

function base32(bytes: Uint8Array): string {
  let bits = 0; let value = 0; let out = '';
  for (const b of bytes) {
    value = (value << 8) | b; bits += 8;
    while (bits >= 5) { out += ALPHABET[(value >>> (bits - 5)) & 31]; bits -= 5; }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

function unbase32(text: string): Buffer | undefined {
  let bits = 0; let value = 0; const out: number[] = [];
  for (const ch of text) {
    const v = ALPHABET.indexOf(ch);
    if (v < 0) return undefined;
    value = ((value << 5) | v) & 0xffff; bits += 5;
    if (bits >= 8) { out.push((value >>> (bits - 8)) & 255); bits -= 8; }
  }
  return Buffer.from(out);
}

const checksum = (repositoryId: string, keys: Buffer): Buffer =>
  createHash('sha256').update(`${PREFIX}/${repositoryId}/`).update(keys).digest().subarray(0, 4);

export function encodeRecoveryKey(repositoryId: string, keys: MasterKeys): string {
  const packed = Buffer.concat([keys.dataKey, keys.idKey]);
  const body = base32(Buffer.concat([packed, checksum(repositoryId, packed)]));
  return `${PREFIX}:${repositoryId}:${body.match(/.{1,6}/g)!.join('-')}`;
}

export function decodeRecoveryKey(text: string): { repositoryId: string; keys: MasterKeys } {
  const parts = text.trim().split(':');
  if (parts.length !== 3 || parts[0] !== PREFIX || !parts[1]) {
    throw new WrongKeyError(`not a Cairn recovery key (expected "${PREFIX}:<repository id>:<key>")`);
  }
  const repositoryId = parts[1];
  const raw = unbase32(parts[2]!.replace(/[-\s]/g, '').toUpperCase());
  if (!raw || raw.length !== 68) throw new WrongKeyError('the recovery key is mistyped: wrong length or characters outside A-Z, 2-7');
  const packed = raw.subarray(0, 64);
  if (!checksum(repositoryId, packed).equals(raw.subarray(64))) throw new WrongKeyError('the recovery key is mistyped: its checksum does not match');
  return { repositoryId, keys: { dataKey: Buffer.from(packed.subarray(0, 32)), idKey: Buffer.from(packed.subarray(32)) } };
}

/** Checks a recovery key against the repository on `backend`; returns its config and keys. */
export async function unlockWithRecoveryKey(backend: Backend, recoveryKey: string): Promise<{ config: ReturnType<typeof parseConfig>; keys: MasterKeys }> {
  const { repositoryId, keys } = decodeRecoveryKey(recoveryKey);
  let config;
  try {
    config = parseConfig(await backend.get(CONFIG_KEY), backend.location);
  } catch (e) {
    if (e instanceof NotFoundError) {
      await assertNotDeleted(backend);
      throw new RepositoryNotFoundError(`no Cairn repository at ${backend.location} (no config object)`);
    }
    throw e;
  }
  if (config.repositoryId !== repositoryId) {
    throw new WrongKeyError(`this recovery key is for repository ${repositoryId}, not ${config.repositoryId} at ${backend.location}`);
  }
  try {
    verifyConfigMac(config, keys.idKey);
  } catch (e) {
    if (e instanceof CorruptObjectError) throw new WrongKeyError(`the recovery key does not fit the repository at ${backend.location} (config MAC mismatch)`);
    throw e;
  }
  return { config, keys };
}
