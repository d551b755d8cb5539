// The restore point manifest: VM config, disks with their index roots, parent and stats.
// Sealed like a chunk (kind 'M', its id as associated data) and written last: a restore
// point exists exactly when its manifest does.
import { createHash } from 'node:crypto';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { CorruptObjectError, UnsupportedFormatError } from '../errors.ts';

/**
 * 2: a disk's index may have slots made of pieces (`indexFormat: 2`, format/index-page.ts).
 * A restore point without such a disk is still written as version 1, readable by older readers.
 */
export const MANIFEST_VERSION = 2;
export const SUPPORTED_MANIFEST_VERSIONS: readonly number[] = [1, 2];
/** Id of an all-zero chunk or index page: never stored, synthesised on read. */
export const ZERO_ID = '0'.repeat(64);

export const DiskStatsSchema = Type.Object({
  bytesRead: Type.Integer(),
  bytesStored: Type.Integer(),
  chunksNew: Type.Integer(),
  chunksReused: Type.Integer(),
  chunksZero: Type.Integer(),
  chunksFromParent: Type.Integer(),
  /** Slots stored as pieces: the changed blocks as a new small chunk, the rest the parent's chunks. */
  slotsPieced: Type.Optional(Type.Integer()),
  pagesNew: Type.Integer(),
  pagesReused: Type.Integer(),
});
export type DiskStats = Static<typeof DiskStatsSchema>;

export const DiskManifestSchema = Type.Object({
  name: Type.String({ minLength: 1 }),
  sizeBytes: Type.Integer({ minimum: 0 }),
  chunkSize: Type.Integer({ minimum: 1 }),
  pageEntries: Type.Integer({ minimum: 1 }),
  /** Index root: page ids in disk order (ZERO_ID for a page of zero chunks). */
  pages: Type.Array(Type.String({ pattern: '^[0-9a-f]{64}$' })),
  /** SHA-256 over the page ids: guards the root against a manifest edited by hand. */
  rootChecksum: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  stats: DiskStatsSchema,
  /** 2: index pages may hold slots made of pieces (absent: format 1, one chunk id per slot). */
  indexFormat: Type.Optional(Type.Literal(2)),
});
export type DiskManifest = Static<typeof DiskManifestSchema>;

export const ManifestSchema = Type.Object({
  version: Type.Union([Type.Literal(1), Type.Literal(MANIFEST_VERSION)]),
  id: Type.String(),
  vm: Type.Object({ id: Type.String(), name: Type.String(), config: Type.Optional(Type.Unknown()) }),
  parentId: Type.Optional(Type.String()),
  labels: Type.Optional(Type.Record(Type.String(), Type.String())),
  createdAt: Type.String(),
  committedAt: Type.String(),
  disks: Type.Array(DiskManifestSchema),
});
export type Manifest = Static<typeof ManifestSchema>;

export function rootChecksum(pages: readonly string[]): string {
  const h = createHash('sha256');
  for (const p of pages) h.update(p);
  return h.digest('hex');
}

export const encodeManifest = (m: Manifest): Uint8Array => Buffer.from(JSON.stringify(m));

export function parseManifest(key: string, id: string, plain: Uint8Array): Manifest {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(plain.buffer, plain.byteOffset, plain.byteLength).toString('utf8'));
  } catch {
    throw new CorruptObjectError(key, 'manifest is not valid JSON');
  }
  const version = (raw as { version?: unknown } | null)?.version;
  if (typeof version !== 'number' || !SUPPORTED_MANIFEST_VERSIONS.includes(version)) {
    throw new UnsupportedFormatError(`${key}: manifest version ${JSON.stringify(version)} is not supported (supports ${SUPPORTED_MANIFEST_VERSIONS.join(', ')})`);
  }
  if (!Value.Check(ManifestSchema, raw)) {
    const first = [...Value.Errors(ManifestSchema, raw)][0];
    throw new CorruptObjectError(key, `invalid manifest field ${first?.path ?? '?'}: ${first?.message ?? 'schema mismatch'}`);
  }
  if (raw.id !== id) throw new CorruptObjectError(key, `manifest names itself ${raw.id}`);
  for (const d of raw.disks) {
    if (d.indexFormat === 2 && raw.version < 2) throw new CorruptObjectError(key, `disk ${d.name} has a format 2 index in a version ${raw.version} manifest`);
    if (rootChecksum(d.pages) !== d.rootChecksum) throw new CorruptObjectError(key, `index root of disk ${d.name} fails its checksum`);
    const chunks = Math.ceil(d.sizeBytes / d.chunkSize);
    if (d.pages.length !== Math.ceil(chunks / d.pageEntries)) throw new CorruptObjectError(key, `disk ${d.name} has ${d.pages.length} index pages for ${chunks} chunks`);
  }
  return raw;
}
