// Messages between the main thread and chunk workers (structured-clone friendly; buffers
// are transferred, never copied).
import type { EnvelopeKind, OpenFailure } from '../format/envelope.ts';

export interface WorkerInit {
  readonly dataKey: Uint8Array;
  readonly idKey: Uint8Array;
  readonly level: number;
  readonly maxPlainBytes: number;
  /**
   * Write locks the pool's workers share (an Int32Array's memory, one word per slot, a target's
   * slot by its descriptor): a worker that finds its target's lock taken opens its next chunk
   * instead of sleeping on the file's inode lock (chunk.worker.ts, `openFilesTo`). A hint for
   * speed only: the kernel's lock keeps the writes correct without it.
   */
  readonly writeLocks?: SharedArrayBuffer;
}

// `len`: the data is the first `len` bytes of `buf` (a pooled buffer may be longer).
export type WorkerRequest =
  | { readonly seq: number; readonly op: 'hash'; readonly buf: ArrayBuffer; readonly len: number }
  | { readonly seq: number; readonly op: 'hashSeal'; readonly buf: ArrayBuffer; readonly len: number }
  | { readonly seq: number; readonly op: 'seal'; readonly kind: EnvelopeKind; readonly id: string; readonly buf: ArrayBuffer; readonly len: number }
  | { readonly seq: number; readonly op: 'open'; readonly kind: EnvelopeKind; readonly id: string; readonly buf: ArrayBuffer; readonly len: number; readonly checkId: boolean }
  // Opens a chunk and writes its plaintext at `position` of the file `fd` (a restore target):
  // the plaintext never travels back to the main thread.
  // `from`/`length` (both or neither): only that range of the plaintext is written (a piece of a
  // slot of an incremental's index; the chunk is still opened and checked whole).
  | { readonly seq: number; readonly op: 'openTo'; readonly id: string; readonly buf: ArrayBuffer; readonly len: number; readonly fd: number; readonly position: number; readonly from?: number; readonly length?: number }
  // The same, reading the sealed chunk from the file `path` itself (a local directory
  // repository): the chunk's bytes never pass through the main thread at all.
  | { readonly seq: number; readonly op: 'openFileTo'; readonly id: string; readonly path: string; readonly fd: number; readonly position: number; readonly from?: number; readonly length?: number }
  // A run of such chunks in one trip (a restore hands them over in batches): one message each
  // way per batch, not per chunk. Item i is chunk `ids[i]`, in the file `<dir>/<chunkSubpath(id)>`
  // (layout.ts; the worker makes the path, so no path string is built or cloned per chunk), written
  // at `positions[i]`; `ranges`, when given: only [ranges[2i], + ranges[2i + 1]) of its plaintext
  // (none when ranges[2i] is -1). The typed arrays are transferred, not cloned. Items of the same
  // chunk next to each other open it once.
  | { readonly seq: number; readonly op: 'openFilesTo'; readonly ids: readonly string[]; readonly dir: string; readonly positions: Float64Array; readonly ranges?: Float64Array; readonly fd: number };

/** A range of a chunk's plaintext. */
export interface ChunkRange { readonly from: number; readonly length: number }

/** Why a chunk of an `openFilesTo` batch was not written: its file unreadable (why), or the chunk damaged. */
export type ChunkFailure =
  | { readonly unreadable: string }
  | { readonly failure: OpenFailure; readonly message: string };

/** What became of one chunk of an `openFilesTo` batch: written (its bytes), or why not. */
export type OpenedFile = { readonly bytes: number } | ChunkFailure;

// Inputs come back (`buf`) once the worker is done with them, so the main thread reuses them.
export type WorkerReply =
  | { readonly seq: number; readonly op: 'hash'; readonly id: string | null; readonly buf: ArrayBuffer }
  | { readonly seq: number; readonly op: 'seal'; readonly sealed: ArrayBuffer; readonly compressed: boolean; readonly buf: ArrayBuffer }
  | { readonly seq: number; readonly op: 'hashSeal'; readonly id: string | null; readonly sealed: ArrayBuffer | null; readonly buf: ArrayBuffer }
  | { readonly seq: number; readonly op: 'open'; readonly plain: ArrayBuffer }
  | { readonly seq: number; readonly op: 'openTo'; readonly bytes: number }
  // `bytes` null: the file could not be read (`unreadable` says why); the caller reads the
  // object through its backend instead, which reports the failure as it does for any read.
  | { readonly seq: number; readonly op: 'openFileTo'; readonly bytes: number | null; readonly unreadable?: string }
  // `bytes[i]`: what item i wrote, -1 when it did not (then `failures` says why, by item).
  | { readonly seq: number; readonly op: 'openFilesTo'; readonly bytes: Float64Array; readonly failures?: ReadonlyArray<readonly [number, ChunkFailure]> }
  | { readonly seq: number; readonly op: 'error'; readonly failure: OpenFailure | 'internal'; readonly message: string };
