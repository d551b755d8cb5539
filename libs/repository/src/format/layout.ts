// Where each object lives on a backend. One place, so the format is readable at a glance:
//   config                       format version, chunk size, page size (plain JSON + MAC)
//   keys/<key id>                the master key set wrapped by one key-encryption key
//   chunks/<2 hex>/<64 hex>      sealed chunk, id = HMAC-SHA-256(id key, plaintext)
//   index/<2 hex>/<64 hex>       sealed index page, content-addressed the same way
//   restore-points/<id>          sealed manifest, written last: it *is* the commit
//   pending/<writer id>          a running writer's lease (GC waits for it)
//   gc/sweep                     a running sweep's lease (writers wait for it)
//   gc/generation                bumped after every sweep (invalidates cached chunk listings)
//   deleted                      left by a four-eyes repository deletion: who, when (plain JSON)
//   journal/keys/<time>-<id>     one key operation (init, rotate, recovery key export), MAC'd
//                                (keys/key-journal.ts; published to the site's log by the data mover)

export const CONFIG_KEY = 'config';
export const KEYS_PREFIX = 'keys/';
export const CHUNKS_PREFIX = 'chunks/';
export const INDEX_PREFIX = 'index/';
export const RESTORE_POINTS_PREFIX = 'restore-points/';
export const PENDING_PREFIX = 'pending/';
export const GC_SWEEP_KEY = 'gc/sweep';
export const GC_GENERATION_KEY = 'gc/generation';
export const DELETED_KEY = 'deleted';

const HEX64 = /^[0-9a-f]{64}$/;

export const chunkKey = (id: string): string => `${CHUNKS_PREFIX}${chunkSubpath(id)}`;
/** Where chunk `id` lives below the chunks directory (`chunkKey` without CHUNKS_PREFIX). */
export const chunkSubpath = (id: string): string => `${id.slice(0, 2)}/${id}`;
/** The key whose local path is the chunks directory (a directory repository's chunk files are `<it>/<chunkSubpath>`). */
export const CHUNKS_DIR_KEY = CHUNKS_PREFIX.slice(0, -1);
export const pageKey = (id: string): string => `${INDEX_PREFIX}${id.slice(0, 2)}/${id}`;
export const restorePointKey = (id: string): string => `${RESTORE_POINTS_PREFIX}${id}`;
export const keyObjectKey = (id: string): string => `${KEYS_PREFIX}${id}`;
export const pendingKey = (writerId: string): string => `${PENDING_PREFIX}${writerId}`;

/** The content id at the end of a `chunks/` or `index/` key, or undefined for a stray key. */
export function idFromContentKey(key: string): string | undefined {
  const id = key.slice(key.lastIndexOf('/') + 1);
  return HEX64.test(id) ? id : undefined;
}

export const isContentId = (id: string): boolean => HEX64.test(id);

const RESTORE_POINT_ID = /^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{12}$/;
export const isRestorePointId = (id: string): boolean => RESTORE_POINT_ID.test(id);
