import { describe, expect, it } from 'vitest';
import { probeDisk } from './disk-probe.ts';

function disk(write: (b: Buffer) => void, size = 256 * 1024): (o: number, l: number) => Promise<Uint8Array> {
  const b = Buffer.alloc(size);
  write(b);
  return async (o, l) => b.subarray(o, o + l);
}

describe('probeDisk', () => {
  it('tells partition tables, file systems, LVM and LUKS from a disk with nothing on it', async () => {
    expect(await probeDisk(disk(() => undefined), 256 * 1024)).toEqual({ kind: 'none' });
    expect(await probeDisk(disk((b) => b.fill(0x5a)), 256 * 1024)).toEqual({ kind: 'none' });
    expect(await probeDisk(disk((b) => { b.write('EFI PART', 512, 'latin1'); b[510] = 0x55; b[511] = 0xaa; }), 256 * 1024)).toEqual({ kind: 'partitioned', scheme: 'gpt' });
    expect(await probeDisk(disk((b) => { b[510] = 0x55; b[511] = 0xaa; }), 256 * 1024)).toEqual({ kind: 'partitioned', scheme: 'mbr' });
    expect(await probeDisk(disk((b) => { b[510] = 0x55; b[511] = 0xaa; b.write('FAT16   ', 54, 'latin1'); }), 256 * 1024)).toMatchObject({ kind: 'filesystem', what: 'FAT' });
    expect(await probeDisk(disk((b) => { b[1080] = 0x53; b[1081] = 0xef; }), 256 * 1024)).toMatchObject({ kind: 'filesystem', what: 'ext2/3/4' });
    expect(await probeDisk(disk((b) => { b.write('XFSB', 0, 'latin1'); }), 256 * 1024)).toMatchObject({ kind: 'filesystem', what: 'xfs' });
    expect(await probeDisk(disk((b) => { b.write('LUKS\xba\xbe', 0, 'latin1'); }), 256 * 1024)).toMatchObject({ kind: 'luks' });
    expect(await probeDisk(disk((b) => { b.write('LABELONE', 512, 'latin1'); }), 256 * 1024)).toMatchObject({ kind: 'lvm' });
    // A disk smaller than the probe is read whole.
    expect(await probeDisk(disk(() => undefined, 1024), 1024)).toEqual({ kind: 'none' });
  });
});
