import { describe, expect, it } from 'vitest';
import { credentialParams, redactUrl } from './edge-hardening.ts';

describe('credentials in URLs', () => {
  it('are found under their usual names, encoded or not, and redacted from what is logged', () => {
    expect(credentialParams('/v1/vms?access_token=abc&limit=2')).toEqual(['access_token']);
    expect(credentialParams('/v1/vms?%61ccess_token=abc')).toEqual(['access_token']);
    expect(credentialParams('/v1/vms?limit=2')).toEqual([]);
    expect(redactUrl('/v1/vms?limit=2&access_token=cairn_secret&Token=x')).toBe('/v1/vms?limit=2&access_token=[redacted]&Token=[redacted]');
    expect(redactUrl('/v1/vms')).toBe('/v1/vms');
  });
});
