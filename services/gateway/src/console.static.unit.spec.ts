import { describe, expect, it } from 'vitest';
import { isConsolePage } from './console.static.ts';

describe('console page paths', () => {
  it('are the router\'s pages only', () => {
    for (const p of ['/', '/vms', '/vms/', '/vms/vm-1', '/jobs/20261205T2129-abc', '/restore', '/instant', '/policies', '/audit', '/approvals', '/sites']) expect(isConsolePage(p), p).toBe(true);
    for (const p of ['/v1/vms', '/health', '/openapi.json', '/metrics', '//etc/passwd', '/%2e%2e/', '/vms/..', '/vms/%2e%2e', '/vms/a/b', '/favicon.ico', '/admin']) expect(isConsolePage(p), p).toBe(false);
  });
});
