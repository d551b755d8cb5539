import { describe, expect, it } from 'vitest';
import { poolRefusal } from './storage-pool.ts';

describe('a whole-VM restore into a libvirt storage pool', () => {
  it('takes a running file-based pool with the space', () => {
    expect(poolRefusal('p', { state: 'running', type: 'dir', availableBytes: 100 }, 100)).toBeUndefined();
    expect(poolRefusal('p', { state: 'running', type: 'netfs', availableBytes: 100 }, 1)).toBeUndefined();
  });
  it('refuses, saying why, a pool that is inactive, not file-based or too small', () => {
    expect(poolRefusal('p', { state: 'inactive', type: 'dir', availableBytes: 100 }, 1)).toMatchObject({ code: 'conflict', message: expect.stringMatching(/storage pool p is inactive: start it \(virsh pool-start p\)/) });
    expect(poolRefusal('p', { state: 'running', type: 'logical', availableBytes: 100 }, 1)).toMatchObject({ code: 'invalid', message: expect.stringMatching(/type logical: a restore goes into file-based pools/) });
    expect(poolRefusal('p', { state: 'running', type: 'dir', availableBytes: 99 }, 100)).toMatchObject({ code: 'conflict', message: expect.stringMatching(/has 99 bytes available; the restored disks need 100/) });
  });
});
