// Events about who wrote the log (stream category `provenance`): the position from which every
// event must be signed by its writer (`EventSigningStarted`, stream `provenance-signing`), and a
// reader's report of an event it refused because its writer may not write it, or because nobody
// (or a key the site does not know) signed it (`ProvenanceViolation`, stream `provenance-<eventId>`).
// docs/eventlog.md "Provenance" and docs/security.md.
import { Type } from '@sinclair/typebox';
import { lazySchema } from '../lazy-schema.ts';
import { Reason } from './common.ts';

/** What a reader found wrong with an event's provenance. */
export const ProvenanceFailure = lazySchema(() => Type.Union([
  /** No signature, after the site's signing cut-over. */
  Type.Literal('unsigned'),
  /** Signed by a key that is not one of the site's identities. */
  Type.Literal('unknown_key'),
  /** The signature does not verify (the event was altered, or the signature forged). */
  Type.Literal('bad_signature'),
  /** The key belongs to another identity than the writer the event names. */
  Type.Literal('writer_mismatch'),
  /** A valid signature of an identity that may not write this event kind (libs/contracts provenance.ts). */
  Type.Literal('not_permitted'),
  /**
   * A four-eyes event (approval request or grant) without a valid signature of a trusted
   * administrator: unsigned by the person, signed by a key that is not theirs, or by a key or
   * administrator role no chain of endorsements leads to from the root operator.
   */
  Type.Literal('person_signature'),
], { $id: 'ProvenanceFailure' }));

const Identity = Type.String({ minLength: 1, maxLength: 64, pattern: '^[a-z][a-z0-9-]*$' });

export const EventSigningStartedV1 = lazySchema(() => Type.Object({
  /** Identities whose keys sign events from here on (informative; the keys are in site.json). */
  identities: Type.Array(Identity, { maxItems: 64 }),
  /**
   * The site's root operator: the local operator `cairn up` made on first start, whose first
   * key and administrator role need no endorsement. Every other operator key and administrator
   * role is trusted only along endorsements that lead back here.
   */
  rootOperator: Type.Optional(Type.Object({
    userId: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' }),
    publicKey: Type.String({ pattern: '^U[A-Z2-7]{55}$' }),
  }, { additionalProperties: false })),
}, { additionalProperties: false }));

export const ProvenanceViolationV1 = lazySchema(() => Type.Object({
  /** The refused event (it stays in the log; readers skip it). */
  eventId: Type.String({ format: 'uuid' }),
  eventType: Type.String({ minLength: 1, maxLength: 128 }),
  streamId: Type.String({ minLength: 1, maxLength: 256 }),
  position: Type.Integer({ minimum: 1 }),
  failure: ProvenanceFailure,
  /** The identity whose key signed it (what a compromised identity cannot hide), or null when unsigned or unknown. */
  signedBy: Type.Union([Identity, Type.Null()]),
  /** The writer the event names (a claim), or null when it names none. */
  claimedWriter: Type.Union([Type.String({ minLength: 1, maxLength: 64 }), Type.Null()]),
  /** The actor the event names (a claim). */
  claimedActor: Type.String({ minLength: 1, maxLength: 256 }),
  /** The identity of the reader that refused it. */
  detectedBy: Identity,
  message: Reason,
}, { additionalProperties: false }));
