// The transfer's small pieces: id lists as 32-byte records, and the header size counted as sent.
import { describe, expect, it } from 'vitest';
import { headerBytes, packIds, TransferError, unpackIds } from './transfer-protocol.ts';

describe('transfer protocol', () => {
  it('packs ids as 32 bytes each and back', () => {
    const ids = ['00'.repeat(32), 'ab'.repeat(32), '0123456789abcdef'.repeat(4)];
    const packed = packIds(ids);
    expect(packed.length).toBe(96);
    expect(unpackIds(packed)).toEqual(ids);
    expect(unpackIds(packIds([]))).toEqual([]);
    expect(() => unpackIds(new Uint8Array(33))).toThrow(TransferError);
  });

  it('counts a header block as it goes on the wire', () => {
    // NATS/1.0\r\n + "Cairn-Id: x\r\n" + \r\n
    expect(headerBytes({ 'Cairn-Id': 'x' })).toBe(10 + 'Cairn-Id: x\r\n'.length + 2);
  });
});
