// Key operations on a repository (stream `repository-<repositoryId>`): creating it, re-wrapping
// its keys, exporting its recovery key. They run wherever the repository is opened (the CLI,
// offline), so the repository keeps each one in its key journal (`journal/keys/…`); the event's
// id is the journal entry's id, which makes the CLI's direct append and the data mover's later
// catch-up one event. No event ever carries a passphrase, key or recovery key.
import { Type } from '@sinclair/typebox';
import { lazySchema } from '../lazy-schema.ts';
import { Id, Name } from './common.ts';

/** What wraps the master keys: a passphrase (scrypt) or a key provider (a key file, a KMS). */
export const KeyWrapping = lazySchema(() => Type.Union([Type.Literal('passphrase'), Type.Literal('key-provider')], { $id: 'KeyWrapping' }));

/** How the repository was opened for the act (a recovery key means the usual credentials were not used). */
export const OpenedWith = lazySchema(() => Type.Union([Type.Literal('passphrase'), Type.Literal('key-provider'), Type.Literal('recovery-key')], { $id: 'OpenedWith' }));

const KeyActFields = {
  repositoryId: Id,
  /** The machine the act ran on (its host name). */
  host: Type.Optional(Name),
};

/** The id of a key object (`keys/<keyId>`): which wrapping is current, never the key. */
const KeyId = Type.String({ pattern: '^[0-9a-f]{8,64}$' });
/** The key provider's name (`file`, a KMS's), never its key or key id. */
const KeyProviderName = Type.Optional(Name);

export const RepositoryInitializedV1 = lazySchema(() => Type.Object({
  ...KeyActFields,
  keyId: KeyId,
  wrapping: KeyWrapping,
  keyProvider: KeyProviderName,
  chunkSize: Type.Integer({ minimum: 1 }),
}, { additionalProperties: false }));

export const RepositoryKeyRotatedV1 = lazySchema(() => Type.Object({
  ...KeyActFields,
  /** The new key object. */
  keyId: KeyId,
  /** The key objects removed: the old passphrase or key no longer opens the repository. */
  previousKeyIds: Type.Array(KeyId, { maxItems: 256 }),
  wrapping: KeyWrapping,
  keyProvider: KeyProviderName,
  openedWith: OpenedWith,
}, { additionalProperties: false }));

export const RecoveryKeyExportedV1 = lazySchema(() => Type.Object({
  ...KeyActFields,
  /** Keyed fingerprint of the recovery key (16 hex digits): tells keys apart, reveals nothing of one. */
  fingerprint: Type.String({ pattern: '^[0-9a-f]{16}$' }),
  openedWith: OpenedWith,
  /** The file the key was written to. */
  file: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })),
}, { additionalProperties: false }));
