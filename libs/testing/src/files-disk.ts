// Disk images for the file-level restore tests, made with host tools and without mounting
// anything: a GPT disk with ext4 (mke2fs -d), xfs (mkfs.xfs -p protofile) and FAT (mtools)
// partitions holding names with spaces and non-ASCII letters, a symbolic link, an empty
// directory, a sparse 1 GiB file and a 50 MiB file; a disk with no file system; a disk whose
// only partition is LUKS-encrypted. Each file's expected content is returned with it.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, symlink, truncate, utimes, writeFile, open } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface ExpectedFile {
  /** Path as Cairn shows it: `/part1/dir with spaces/naïve file.txt`. */
  readonly path: string;
  readonly type: 'file' | 'directory' | 'symlink';
  readonly sha256?: string;
  readonly size?: number;
  /** Permission bits, where the file system keeps them (not FAT). */
  readonly mode?: number;
  /** Modification time in whole seconds, where it was set by the test. */
  readonly mtimeSec?: number;
  readonly target?: string;
  readonly sparse?: boolean;
}

export interface FilesDisk {
  /** Raw GPT image. */
  readonly raw: string;
  readonly sizeBytes: number;
  readonly files: readonly ExpectedFile[];
}

const MiB = 1024 * 1024;

function sha(b: Buffer): string { return createHash('sha256').update(b).digest('hex'); }

async function put(root: string, rel: string, content: Buffer, mode: number, mtimeSec: number, files: ExpectedFile[], prefix: string): Promise<void> {
  const p = join(root, rel);
  await writeFile(p, content);
  await chmod(p, mode);
  await utimes(p, mtimeSec, mtimeSec);
  files.push({ path: `${prefix}/${rel}`, type: 'file', sha256: sha(content), size: content.length, mode, mtimeSec });
}

/** Builds the GPT disk (about 520 MiB apparent, a few tens of MiB on disk) under `dir`. */
export async function buildFilesDisk(dir: string, o: { bigBytes?: number } = {}): Promise<FilesDisk> {
  const files: ExpectedFile[] = [];
  const ext = join(dir, 'ext-root');
  await mkdir(join(ext, 'dir with spaces'), { recursive: true });
  await mkdir(join(ext, 'café ünïcödé'), { recursive: true });
  await mkdir(join(ext, 'empty'), { recursive: true });
  await put(ext, 'dir with spaces/naïve file.txt', Buffer.from('hello from a file with spaces and non-ASCII letters\n'), 0o644, 1_600_000_000, files, '/part1');
  await put(ext, 'café ünïcödé/Grüße ☃.txt', Buffer.from('schöne Grüße\n'), 0o600, 1_650_000_000, files, '/part1');
  await put(ext, 'big.bin', randomBytes(o.bigBytes ?? 50 * MiB), 0o640, 1_577_934_245, files, '/part1');
  await put(ext, 'run.sh', Buffer.from('#!/bin/sh\necho hi\n'), 0o750, 1_700_000_000, files, '/part1');
  // Sparse: 1 GiB apparent, one 4 KiB block of data at 512 MiB.
  const sparse = join(ext, 'sparse.bin');
  await truncate(sparse, 0).catch(() => undefined);
  const fh = await open(sparse, 'w');
  const block = Buffer.alloc(4096, 0x5c);
  await fh.write(block, 0, block.length, 512 * MiB);
  await fh.truncate(1024 * MiB);
  await fh.close();
  await chmod(sparse, 0o644);
  await utimes(sparse, 1_690_000_000, 1_690_000_000);
  const sparseHash = createHash('sha256');
  const zeros = Buffer.alloc(MiB);
  for (let i = 0; i < 1024; i++) {
    if (i === 512) sparseHash.update(Buffer.concat([block, zeros.subarray(block.length)]));
    else sparseHash.update(zeros);
  }
  files.push({ path: '/part1/sparse.bin', type: 'file', sha256: sparseHash.digest('hex'), size: 1024 * MiB, mode: 0o644, mtimeSec: 1_690_000_000, sparse: true });
  await symlink('dir with spaces/naïve file.txt', join(ext, 'link to naïve'));
  files.push({ path: '/part1/link to naïve', type: 'symlink', target: 'dir with spaces/naïve file.txt' });
  await utimes(join(ext, 'empty'), 1_610_000_000, 1_610_000_000);
  files.push({ path: '/part1/empty', type: 'directory', mode: 0o755, mtimeSec: 1_610_000_000 });
  files.push({ path: '/part1/dir with spaces', type: 'directory' });
  await run('mke2fs', ['-q', '-t', 'ext4', '-d', ext, '-F', join(dir, 'ext.img'), '160M']);

  // xfs: the protofile takes names without spaces; contents and modes from it.
  const xfsNote = Buffer.from('a note on xfs\n');
  await writeFile(join(dir, 'xfs-note.txt'), xfsNote);
  const xfsData = randomBytes(3 * MiB + 17);
  await writeFile(join(dir, 'xfs-data.bin'), xfsData);
  await writeFile(join(dir, 'xfs.proto'), [
    '/dummy', '0 0', 'd--755 0 0',
    `notes.txt ---644 0 0 ${join(dir, 'xfs-note.txt')}`,
    `data.bin ---600 1000 1000 ${join(dir, 'xfs-data.bin')}`,
    'sub d--750 0 0', '$', '$', '',
  ].join('\n'));
  files.push({ path: '/part2/notes.txt', type: 'file', sha256: sha(xfsNote), size: xfsNote.length, mode: 0o644 });
  files.push({ path: '/part2/data.bin', type: 'file', sha256: sha(xfsData), size: xfsData.length, mode: 0o600 });
  files.push({ path: '/part2/sub', type: 'directory', mode: 0o750 });
  await truncate(join(dir, 'xfs.img'), 300 * MiB).catch(async () => { await writeFile(join(dir, 'xfs.img'), ''); await truncate(join(dir, 'xfs.img'), 300 * MiB); });
  await run('mkfs.xfs', ['-q', '-f', '-p', join(dir, 'xfs.proto'), join(dir, 'xfs.img')]);

  // FAT: mtools keeps the long name and the time (-m).
  const fat = join(dir, 'fat.img');
  await writeFile(fat, '');
  await truncate(fat, 40 * MiB);
  await run('mkfs.vfat', ['-n', 'CAIRNFAT', fat]);
  const fatFile = Buffer.from('on a FAT partition\n');
  await writeFile(join(dir, 'fat-file.txt'), fatFile);
  await utimes(join(dir, 'fat-file.txt'), 1_620_000_000, 1_620_000_000);
  await run('mcopy', ['-m', '-i', fat, join(dir, 'fat-file.txt'), '::/Fat File.txt']);
  await run('mmd', ['-i', fat, '::/folder']);
  files.push({ path: '/part3/Fat File.txt', type: 'file', sha256: sha(fatFile), size: fatFile.length, mtimeSec: 1_620_000_000 });
  files.push({ path: '/part3/folder', type: 'directory' });

  const raw = join(dir, 'files-disk.raw');
  const sizeBytes = 520 * MiB;
  await writeFile(raw, '');
  await truncate(raw, sizeBytes);
  await run('sgdisk', ['-o', '-n1:2048:+160M', '-t1:8300', '-n2:0:+300M', '-t2:8300', '-n3:0:+40M', '-t3:0700', raw]);
  for (const [img, startMiB] of [['ext.img', 1], ['xfs.img', 161], ['fat.img', 461]] as const) {
    await run('dd', [`if=${join(dir, img)}`, `of=${raw}`, 'bs=1M', `seek=${startMiB}`, 'conv=notrunc,sparse', 'status=none']);
  }
  return { raw, sizeBytes, files };
}

/** A disk with nothing on it: no partition table, no file system. */
export async function buildBlankDisk(dir: string, sizeBytes = 64 * MiB): Promise<string> {
  const p = join(dir, 'blank.raw');
  await writeFile(p, '');
  await truncate(p, sizeBytes);
  return p;
}

/** A GPT disk whose only partition is LUKS2-encrypted (cheap key derivation). */
export async function buildLuksDisk(dir: string): Promise<string> {
  const part = join(dir, 'luks-part.img');
  await writeFile(part, '');
  await truncate(part, 32 * MiB);
  await writeFile(join(dir, 'luks.key'), 'not-a-real-secret');
  await run('cryptsetup', ['luksFormat', '--batch-mode', '--type', 'luks2', '--pbkdf', 'pbkdf2', '--pbkdf-force-iterations', '1000', '--key-file', join(dir, 'luks.key'), part]);
  const p = join(dir, 'luks.raw');
  await writeFile(p, '');
  await truncate(p, 40 * MiB);
  await run('sgdisk', ['-o', '-n1:2048:+32M', '-t1:8309', p]);
  await run('dd', [`if=${part}`, `of=${p}`, 'bs=1M', 'seek=1', 'conv=notrunc,sparse', 'status=none']);
  return p;
}
