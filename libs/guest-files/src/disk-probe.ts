// A look at a disk's first bytes, before any appliance starts: is there a partition table,
// a file system, an LVM or LUKS header at all? A disk with none of them (a blank disk, or one
// the guest uses raw) is refused at once, without paying for an appliance.

export type DiskProbe =
  | { readonly kind: 'partitioned'; readonly scheme: 'gpt' | 'mbr' }
  | { readonly kind: 'filesystem' | 'lvm' | 'luks'; readonly what: string }
  | { readonly kind: 'none' };

const has = (b: Uint8Array, at: number, text: string) => Buffer.from(b.subarray(at, at + text.length)).toString('latin1') === text;

/** Reads at most the first 128 KiB of the disk through `read`. */
export async function probeDisk(read: (offset: number, length: number) => Promise<Uint8Array>, sizeBytes: number): Promise<DiskProbe> {
  const b = await read(0, Math.min(sizeBytes, 128 * 1024));
  if (b.length >= 520 && has(b, 512, 'EFI PART')) return { kind: 'partitioned', scheme: 'gpt' };
  if (b.length >= 6 && has(b, 0, 'LUKS\xba\xbe')) return { kind: 'luks', what: 'LUKS' };
  if (b.length >= 544 && (has(b, 512, 'LABELONE') || has(b, 536, 'LVM2 '))) return { kind: 'lvm', what: 'LVM physical volume' };
  if (b.length >= 4 && has(b, 0, 'XFSB')) return { kind: 'filesystem', what: 'xfs' };
  if (b.length >= 1082 && b[1080] === 0x53 && b[1081] === 0xef) return { kind: 'filesystem', what: 'ext2/3/4' };
  if (b.length >= 65608 && has(b, 65600, '_BHRfS_M')) return { kind: 'filesystem', what: 'btrfs' };
  if (b.length >= 11 && has(b, 3, 'NTFS    ')) return { kind: 'filesystem', what: 'NTFS' };
  if (b.length >= 512 && b[510] === 0x55 && b[511] === 0xaa) {
    // A FAT boot sector also ends in 55 AA: tell it from an MBR by its file system name.
    if (has(b, 54, 'FAT') || has(b, 82, 'FAT32')) return { kind: 'filesystem', what: 'FAT' };
    return { kind: 'partitioned', scheme: 'mbr' };
  }
  if (b.length >= 32768 + 8 && has(b, 32769, 'CD001')) return { kind: 'filesystem', what: 'ISO 9660' };
  return { kind: 'none' };
}
