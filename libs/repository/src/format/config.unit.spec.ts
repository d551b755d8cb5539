import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CorruptObjectError, UnsupportedFormatError } from '../errors.ts';
import { canonicalJson } from './canonical-json.ts';
import { encodeConfig, parseConfig, signConfig, verifyConfigMac } from './config.ts';

const idKey = randomBytes(32);
const config = signConfig({
  format: 'cairn-repository', version: 1, repositoryId: 'ab'.repeat(16), chunkSize: 262_144, pageEntries: 1024,
  compression: { algorithm: 'zstd', level: 1 }, encryption: 'aes-256-gcm', idHash: 'hmac-sha256', createdAt: '2026-11-25T00:00:00.000Z',
}, idKey);

describe('repository config', () => {
  it('parses what it writes and checks the MAC', () => {
    const parsed = parseConfig(encodeConfig(config), 'dir:/x');
    expect(parsed).toEqual(config);
    verifyConfigMac(parsed, idKey);
    expect(() => verifyConfigMac({ ...parsed, chunkSize: 65_536 }, idKey)).toThrow(CorruptObjectError);
    expect(() => verifyConfigMac(parsed, randomBytes(32))).toThrow(/MAC/);
  });

  it('says "unsupported" for another version and "damaged" for garbage', () => {
    expect(() => parseConfig(Buffer.from(JSON.stringify({ ...config, version: 2 })), 'dir:/x')).toThrow(UnsupportedFormatError);
    expect(() => parseConfig(Buffer.from('not json'), 'dir:/x')).toThrow(CorruptObjectError);
    expect(() => parseConfig(Buffer.from(JSON.stringify({ ...config, chunkSize: 'big' })), 'dir:/x')).toThrow(/chunkSize/);
    expect(() => parseConfig(Buffer.from(JSON.stringify({ ...config, format: 'restic' })), 'dir:/x')).toThrow(/format is "restic"/);
  });

  it('canonical JSON ignores key order', () => {
    expect(canonicalJson({ b: 1, a: [2, { d: 3, c: 4 }] })).toBe(canonicalJson({ a: [2, { c: 4, d: 3 }], b: 1 }));
  });
});
