// The few qemu-img operations Cairn needs: read an image's bitmaps, and change bitmaps of an
// image no QEMU has open (powered-off VMs).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export class QemuImgError extends Error {
  override readonly name = 'QemuImgError';
}

async function qemuImg(args: string[]): Promise<string> {
  try {
    const { stdout } = await run('qemu-img', args, { maxBuffer: 16 << 20 });
    return stdout;
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new QemuImgError(`qemu-img ${args.join(' ')}: ${(err.stderr ?? err.message).trim()}`);
  }
}

export interface ImageBitmap { name: string; granularity: number; flags: string[] }
export interface ImageInfo { format: string; virtualSize: number; bitmaps: ImageBitmap[] }

/** Image facts; `-U` so it also works on an image some QEMU has open. */
export async function imageInfo(file: string): Promise<ImageInfo> {
  const info = JSON.parse(await qemuImg(['info', '-U', '--output=json', file])) as {
    format: string; 'virtual-size': number;
    'format-specific'?: { type: string; data?: { bitmaps?: ImageBitmap[] } };
  };
  return { format: info.format, virtualSize: info['virtual-size'], bitmaps: info['format-specific']?.data?.bitmaps ?? [] };
}

/** `qemu-img bitmap`: operations applied in order to one bitmap of an image nobody has open. */
export async function bitmapOps(file: string, bitmap: string, ops: Array<'add' | 'remove' | 'clear' | 'enable' | 'disable' | { merge: string }>, granularity?: number): Promise<void> {
  const args = ['bitmap'];
  for (const op of ops) {
    if (typeof op === 'object') args.push('--merge', op.merge);
    else args.push(`--${op}`);
  }
  if (granularity !== undefined && ops.includes('add')) args.push('-g', String(granularity));
  args.push('-f', 'qcow2', file, bitmap);
  await qemuImg(args);
}
