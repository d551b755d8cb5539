import { describe, expect, it } from 'vitest';
import { GatewayConfigError, gatewayConfig } from './gateway.config.ts';

describe('gatewayConfig', () => {
  it('fills defaults', () => {
    expect(gatewayConfig({ site: 'site-a', token: 'x'.repeat(16) })).toMatchObject({
      site: 'site-a', user: 'admin', host: '127.0.0.1', port: 8080, bodyLimitBytes: 65536, timeoutMs: 10_000,
    });
  });

  it('refuses a short token, a bad port, a bad user and a bad site with a clear error', () => {
    expect(() => gatewayConfig({ site: 'site-a', token: 'short' })).toThrow(GatewayConfigError);
    expect(() => gatewayConfig({ site: 'site-a', token: 'x'.repeat(16), port: 70000 })).toThrow(/not a TCP port/);
    expect(() => gatewayConfig({ site: 'site-a', token: 'x'.repeat(16), user: 'a b' })).toThrow(/user id/);
    expect(() => gatewayConfig({ site: 'Site A', token: 'x'.repeat(16) })).toThrow(/site/);
  });
});
