// The event envelope every Cairn event travels in: the same fields whichever log stores it.
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { lazySchema } from './lazy-schema.ts';

export const Actor = lazySchema(() => Type.Object({
  kind: Type.Union([Type.Literal('user'), Type.Literal('service')]),
  /** A user name, or a service identity such as `scheduler@site-a`. */
  id: Type.String({ minLength: 1, maxLength: 256 }),
  /**
   * `false`: a person's name that nobody checked — a command from a site that does not require
   * signed commands (`cairn up --insecure`), unsigned or not signed by a current key of that user.
   * Absent: authenticated (by the gateway, an operator key, or a service identity).
   */
  authenticated: Type.Optional(Type.Literal(false)),
}, { $id: 'Actor' }));
export type Actor = Static<typeof Actor>;

export const TraceContext = lazySchema(() => Type.Object({
  traceparent: Type.String({ pattern: '^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$' }),
  tracestate: Type.Optional(Type.String({ maxLength: 512 })),
}, { $id: 'TraceContext' }));
export type TraceContext = Static<typeof TraceContext>;

/**
 * Who wrote an event and their signature (envelope v2; an event without it is envelope v1, see
 * docs/eventlog.md "Provenance"). `signature` is ed25519 by `publicKey` (an nkey of the site's
 * identity `writer`) over `eventSigningString` (provenance.ts): the whole event but the signature.
 */
export const EventProvenance = lazySchema(() => Type.Object({
  /** A site identity (`scheduler`, `gateway`, `admin` …), the row of the writer table it writes under. */
  writer: Type.String({ minLength: 1, maxLength: 64, pattern: '^[a-z][a-z0-9-]*$' }),
  publicKey: Type.String({ pattern: '^U[A-Z2-7]{55}$' }),
  /** base64url of the ed25519 signature. */
  signature: Type.String({ minLength: 16, maxLength: 256, pattern: '^[A-Za-z0-9_-]+$' }),
}, { $id: 'EventProvenance', additionalProperties: false }));
export type EventProvenance = Static<typeof EventProvenance>;

/** Envelope fields; `data` is typed per event. */
export const EnvelopeFields = {
  id: Type.String({ format: 'uuid', description: 'Event id; also the dedup key (Nats-Msg-Id).' }),
  type: Type.String({ minLength: 1, maxLength: 128, description: 'PascalCase, past tense.' }),
  schemaVersion: Type.Integer({ minimum: 1 }),
  time: Type.String({ format: 'date-time' }),
  site: Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$' }),
  actor: Actor,
  /** The stream (aggregate) the event belongs to, e.g. `job-<id>`. */
  streamId: Type.String({ pattern: '^[a-z][a-z0-9]*-[A-Za-z0-9_-]{1,200}$' }),
  correlationId: Type.String({ minLength: 1, maxLength: 200, description: 'The job (or request) the event belongs to.' }),
  causationId: Type.Union([Type.String({ minLength: 1, maxLength: 200 }), Type.Null()], { description: 'The command or event that caused it.' }),
  trace: Type.Optional(TraceContext),
  provenance: Type.Optional(EventProvenance),
};

export function envelopeSchema<T extends string, D extends TSchema>(type: T, version: number, data: D) {
  return Type.Object({
    ...EnvelopeFields,
    type: Type.Literal(type),
    schemaVersion: Type.Literal(version),
    data,
  }, { $id: `${type}.v${version}`, additionalProperties: false });
}

/** An event as written: envelope plus typed data. */
export interface CairnEvent<T extends string = string, D = unknown> {
  readonly id: string;
  readonly type: T;
  readonly schemaVersion: number;
  readonly time: string;
  readonly site: string;
  readonly actor: Actor;
  readonly streamId: string;
  readonly correlationId: string;
  readonly causationId: string | null;
  readonly trace?: TraceContext;
  /** Writer and signature (envelope v2); absent on legacy events. */
  readonly provenance?: EventProvenance;
  readonly data: D;
}

/** An event as read back from a log: where it sits globally and in its stream. */
export interface RecordedEvent<E extends CairnEvent = CairnEvent> {
  readonly event: E;
  /** Global position in the site's log (1-based, strictly increasing). */
  readonly position: bigint;
  /** Position within its stream (0-based revision). */
  readonly revision: bigint;
}
