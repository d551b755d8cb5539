// Drop-behind for a restore's target: the pages of the file that the periodic write-back has
// made durable leave the page cache (posix_fadvise POSIX_FADV_DONTNEED), so a restore of a large
// disk neither pushes the host's useful cache out nor holds gigabytes of pages nobody reads again
// (the VM reads its disk through its own cache, if at all). Its writes then keep reusing the same
// few hundred MiB of freshly freed pages instead of taking new ones for every chunk.
//
// Node has no fadvise. Its WASI implementation (uvwasi, part of Node) does: `fd_advise` is
// posix_fadvise on Linux. So a WASI instance with the target's directory as its only preopen opens
// the file read-only (rights: fd_advise alone) and advises on it. No process, no addon, no syscall
// numbers. Anything unexpected (no WASI, a Node that changed it, a filesystem that refuses) leaves
// the restore as it was: drop-behind is an optimisation, never a condition.
import { basename, dirname } from 'node:path';

/** Advises the kernel to drop the cached pages of a file range (clean ones; dirty ones are started on their write-back). */
export interface DropBehind {
  /** Drops `[offset, offset + length)`; length 0 means to the end of the file. False once it failed (then it does nothing more). */
  drop(offset: number, length: number): boolean;
  close(): void;
}

/** WASI's `advice` for POSIX_FADV_DONTNEED; rights bit of `fd_advise`; the first preopen's descriptor. */
const ADVICE_DONTNEED = 4;
const RIGHT_FD_ADVISE = 1n << 7n;
const PREOPEN_FD = 3;

/** The smallest WebAssembly module WASI accepts: one exported memory, `(module (memory (export "memory") 1))`. */
const MEMORY_ONLY_MODULE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
  0x05, 0x03, 0x01, 0x00, 0x01, // memory section: one memory, min 1 page
  0x07, 0x0a, 0x01, 0x06, 0x6d, 0x65, 0x6d, 0x6f, 0x72, 0x79, 0x02, 0x00, // export "memory" = memory 0
]);
let compiled: WebAssembly.Module | undefined;

type WasiImport = {
  path_open(dirfd: number, dirflags: number, pathPtr: number, pathLen: number, oflags: number, rightsBase: bigint, rightsInheriting: bigint, fdflags: number, fdOutPtr: number): number;
  fd_advise(fd: number, offset: bigint, length: bigint, advice: number): number;
  fd_close(fd: number): number;
};

/** Runs `f` without Node's ExperimentalWarning for WASI (printed once per process, at its load or first use). */
async function quietly<T>(f: () => T | Promise<T>): Promise<T> {
  const emit = process.emitWarning;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    const type = typeof rest[0] === 'string' ? rest[0] : (rest[0] as { type?: string } | undefined)?.type;
    if (type === 'ExperimentalWarning' && String(warning).includes('WASI')) return;
    (emit as (...a: unknown[]) => void).call(process, warning, ...rest);
  }) as typeof process.emitWarning;
  try {
    return await f();
  } finally {
    process.emitWarning = emit;
  }
}

/**
 * Opens `path` for drop-behind, or why this Node cannot (it never throws): the caller writes as
 * before. Node prints an ExperimentalWarning for WASI once per process; drop-behind uses a
 * stable corner of it (preview1, one preopen, three calls), so that warning is kept out of the
 * services' output.
 */
export async function openDropBehind(path: string): Promise<DropBehind | { readonly unavailable: string }> {
  try {
    const wasi = await quietly(async () => {
      const { WASI } = await import('node:wasi');
      return new WASI({ version: 'preview1', preopens: { '/target': dirname(path) }, returnOnExit: true });
    });
    compiled ??= await WebAssembly.compile(MEMORY_ONLY_MODULE);
    const instance = await WebAssembly.instantiate(compiled, {});
    wasi.initialize(instance);
    const w = wasi.wasiImport as unknown as WasiImport;
    const memory = instance.exports['memory'] as WebAssembly.Memory;
    const name = Buffer.from(basename(path));
    if (name.length > 60_000) return { unavailable: 'file name too long' };
    new Uint8Array(memory.buffer).set(name, 16);
    const errno = w.path_open(PREOPEN_FD, 0, 16, name.length, 0, RIGHT_FD_ADVISE, 0n, 0, 8);
    if (errno !== 0) return { unavailable: `WASI path_open errno ${errno}` };
    const fd = new DataView(memory.buffer).getUint32(8, true);
    let ok = true;
    return {
      drop(offset, length) {
        if (!ok) return false;
        try {
          ok = w.fd_advise(fd, BigInt(offset), BigInt(length), ADVICE_DONTNEED) === 0;
        } catch {
          ok = false;
        }
        return ok;
      },
      close() {
        // The file's descriptor and the preopened directory's: both now, not when the instance is collected.
        for (const own of [fd, PREOPEN_FD]) {
          try { w.fd_close(own); } catch { /* the instance closes what is left when it is collected */ }
        }
      },
    };
  } catch (e) {
    return { unavailable: (e as Error).message };
  }
}
