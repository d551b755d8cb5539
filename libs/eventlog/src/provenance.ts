// Event provenance in the log client (docs/eventlog.md "Provenance"): a writer signs every event
// it appends with its identity's nkey, and may append only the event kinds the writer table
// (libs/contracts provenance.ts) gives it; a reader checks every event it reads against the
// site's identity keys and the table, skips one that fails and reports it as a
// ProvenanceViolation event naming the identity whose key signed it.
//
// Legacy: events written before the site started signing (envelope v1, no `provenance`) are
// accepted when their position is before the site's `EventSigningStarted` event; after it, or
// when the log records no cut-over, an unsigned event is refused.
import { createHash } from 'node:crypto';
import { nativeSigner, verifyNkeySignature } from './ed25519.ts';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  eventSigningString, mayWrite, newEvent, writtenForm,
  type CairnEvent, type EventDataMap, type KnownEvent,
} from '@cairn/contracts';
import type { EventAppender, EventLogReader, EventStreamReader } from './event-log.port.ts';

/** Signs events as one writer (a site identity) with its nkey. */
export interface EventSigner {
  readonly writer: string;
  readonly publicKey: string;
  sign(data: Uint8Array): Uint8Array;
}

export function eventSignerFromSeed(writer: string, seed: string): EventSigner {
  const native = nativeSigner(seed);
  return { writer, publicKey: native.publicKey, sign: (data) => native.sign(data) };
}

/** An append refused before anything was sent: the writer may not emit this event kind. */
export class ProvenanceRefusedError extends Error {
  override readonly name = 'ProvenanceRefusedError';
  constructor(readonly writer: string, readonly type: string, readonly streamId: string) {
    super(`${writer} may not write ${type} events (to ${streamId}): see the writer table in libs/contracts provenance.ts`);
  }
}

/** The event with its writer and signature (any earlier provenance replaced). */
export function signEvent<E extends CairnEvent>(event: E, signer: EventSigner): E {
  if (!mayWrite(signer.writer, event.type)) throw new ProvenanceRefusedError(signer.writer, event.type, event.streamId);
  const { provenance: _old, ...unsigned } = event;
  const data = new TextEncoder().encode(eventSigningString(unsigned as CairnEvent, signer.writer, signer.publicKey));
  const signature = Buffer.from(signer.sign(data)).toString('base64url');
  return { ...unsigned, provenance: { writer: signer.writer, publicKey: signer.publicKey, signature } } as E;
}

export type ProvenanceFailure = EventDataMap['ProvenanceViolation']['failure'];

export type ProvenanceVerdict =
  | { readonly ok: true; readonly writer: string | null; readonly legacy: boolean }
  | { readonly ok: false; readonly failure: ProvenanceFailure; readonly signedBy: string | null; readonly message: string };

export interface ProvenanceKeys {
  /** Public nkey -> identity, for every identity of the site (site.json), `admin` included. */
  readonly keys: ReadonlyMap<string, string>;
  /** Position of the site's EventSigningStarted: unsigned events before it are legacy. 0n: none recorded, all must be signed. */
  readonly legacyBefore: bigint;
}

/** Whether an event read at `position` was written by someone allowed to write it. Pure. */
export function checkProvenance(event: CairnEvent, position: bigint, o: ProvenanceKeys): ProvenanceVerdict {
  const written = writtenForm(event);
  const p = written.provenance;
  if (!p) {
    if (position < o.legacyBefore) return { ok: true, writer: null, legacy: true };
    return { ok: false, failure: 'unsigned', signedBy: null, message: `${event.type} ${event.id} at ${position} is not signed (signing started at ${o.legacyBefore || 'no recorded position: every event must be signed'})` };
  }
  const signedBy = o.keys.get(p.publicKey);
  if (!signedBy) return { ok: false, failure: 'unknown_key', signedBy: null, message: `${event.type} ${event.id} is signed by ${p.publicKey}, not a key of this site's identities` };
  if (!verifies(written, p)) return { ok: false, failure: 'bad_signature', signedBy, message: `${event.type} ${event.id}: the signature of ${signedBy}'s key does not verify (altered or forged)` };
  if (signedBy !== p.writer) return { ok: false, failure: 'writer_mismatch', signedBy, message: `${event.type} ${event.id} names writer ${p.writer} but is signed by ${signedBy}'s key` };
  if (!mayWrite(signedBy, event.type)) return { ok: false, failure: 'not_permitted', signedBy, message: `${signedBy} may not write ${event.type} (event ${event.id} in ${event.streamId})` };
  return { ok: true, writer: signedBy, legacy: false };
}

function verifies(event: CairnEvent, p: NonNullable<CairnEvent['provenance']>): boolean {
  try {
    const data = new TextEncoder().encode(eventSigningString(event, p.writer, p.publicKey));
    return verifyNkeySignature(p.publicKey, data, new Uint8Array(Buffer.from(p.signature, 'base64url')));
  } catch {
    return false;
  }
}

/** The ProvenanceViolation a reader records about a refused event (one per event and reader: a stable id). */
export function provenanceViolation(
  event: CairnEvent, position: bigint, verdict: Extract<ProvenanceVerdict, { ok: false }>, o: { readonly site: string; readonly detectedBy: string },
): KnownEvent {
  const streamId = `provenance-${event.id}`;
  const hex = createHash('sha256').update(`${event.id}|${o.detectedBy}`).digest('hex');
  const id = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
  return newEvent('ProvenanceViolation', {
    eventId: event.id, eventType: event.type.slice(0, 128), streamId: event.streamId, position: Number(position),
    failure: verdict.failure, signedBy: verdict.signedBy, claimedWriter: writtenForm(event).provenance?.writer ?? null,
    claimedActor: `${event.actor.kind}:${event.actor.id}`.slice(0, 256), detectedBy: o.detectedBy, message: verdict.message.slice(0, 4096),
  }, { site: o.site, actor: { kind: 'service', id: `${o.detectedBy}@${o.site}` }, streamId, correlationId: event.correlationId, causationId: event.id, id }) as KnownEvent;
}

/** The site's signing cut-over: position of its first EventSigningStarted signed by `admin` (0n: none). */
export async function readSigningCutover(log: EventStreamReader, keys: ReadonlyMap<string, string>): Promise<bigint> {
  for await (const r of log.readStream(SIGNING_STREAM, { onInvalid: () => undefined })) {
    if (r.event.type !== 'EventSigningStarted') continue;
    const v = checkProvenance(r.event, r.position, { keys, legacyBefore: 0n });
    if (v.ok && v.writer === 'admin') return r.position;
  }
  return 0n;
}

export const SIGNING_STREAM = 'provenance-signing';

/**
 * Records the cut-over once (`cairn up` on a secure site, as `admin`, before the services
 * start): from here on every event must be signed. Returns its position.
 */
export async function startEventSigning(log: EventAppender & EventStreamReader, o: {
  readonly site: string;
  readonly keys: ReadonlyMap<string, string>;
  /** The site's root operator (the local operator's user and first key): the start of every endorsement chain. */
  readonly rootOperator?: { readonly userId: string; readonly publicKey: string };
}): Promise<bigint> {
  const existing = await readSigningCutover(log, o.keys);
  if (existing > 0n) return existing;
  const identities = [...new Set(o.keys.values())].sort();
  const event = newEvent('EventSigningStarted', { identities, ...(o.rootOperator ? { rootOperator: o.rootOperator } : {}) }, { site: o.site, actor: { kind: 'service', id: `admin@${o.site}` }, streamId: SIGNING_STREAM });
  await log.append(SIGNING_STREAM, [event], { expectedRevision: 'any' });
  return readSigningCutover(log, o.keys);
}

/** How a log client signs what it appends and checks what it reads. */
export interface EventProvenanceSettings {
  /** Signs every append; without it, appends go unsigned (a site that does not sign). */
  readonly signer?: EventSigner;
  /** Checks every record read; without it, nothing is checked. */
  readonly verify?: ProvenanceKeys & {
    /** The identity of this reader, named in the ProvenanceViolation it records. */
    readonly detectedBy: string;
    /** Told of every refused event (after the adapter recorded it, or failed to). */
    readonly onViolation?: (violation: KnownEvent, recordError?: unknown) => void;
  };
}

const bound = new WeakMap<NatsConnection, EventProvenanceSettings>();

/**
 * Attaches signing and checking to a NATS connection: a connection is authenticated as one
 * identity, and every event log opened on it signs and checks as that identity without each
 * service having to carry the settings (as bindCommandSecurity does for commands).
 */
export function bindEventProvenance(nc: NatsConnection, settings: EventProvenanceSettings): void {
  bound.set(nc, { ...bound.get(nc), ...settings });
}

export function eventProvenanceOf(nc: NatsConnection): EventProvenanceSettings | undefined {
  return bound.get(nc);
}

/** One event `auditLogProvenance` found that its readers refuse. */
export interface RefusedEvent {
  readonly position: string;
  readonly eventId: string;
  readonly type: string;
  readonly streamId: string;
  readonly actor: string;
  readonly failure: ProvenanceFailure;
  readonly signedBy: string | null;
  readonly claimedWriter: string | null;
  readonly message: string;
}

export interface ProvenanceReport {
  readonly checked: number;
  /** Unsigned events before the cut-over (envelope v1), accepted as legacy. */
  readonly legacy: number;
  /** Position of the signing cut-over (0: none recorded). */
  readonly cutover: string;
  /** Records that are not valid events at all (reported elsewhere: they are no event of anyone). */
  readonly unreadable: number;
  readonly refused: readonly RefusedEvent[];
}

/**
 * Checks every event of a log against the site's identity keys and the writer table, as its
 * readers do (`cairn audit verify`). `log` must be a client that does not itself skip refused
 * events (open it with `provenance: {}`).
 */
export async function auditLogProvenance(log: EventLogReader & EventStreamReader, keys: ReadonlyMap<string, string>): Promise<ProvenanceReport> {
  const legacyBefore = await readSigningCutover(log, keys);
  let checked = 0;
  let legacy = 0;
  let unreadable = 0;
  const refused: RefusedEvent[] = [];
  for await (const r of log.readAll({ onInvalid: () => { unreadable++; } })) {
    checked++;
    const v = checkProvenance(r.event, r.position, { keys, legacyBefore });
    if (v.ok) {
      if (v.legacy) legacy++;
      continue;
    }
    refused.push({
      position: String(r.position), eventId: r.event.id, type: r.event.type, streamId: r.event.streamId,
      actor: `${r.event.actor.kind}:${r.event.actor.id}`, failure: v.failure, signedBy: v.signedBy,
      claimedWriter: writtenForm(r.event).provenance?.writer ?? null, message: v.message,
    });
  }
  return { checked, legacy, cutover: String(legacyBefore), unreadable, refused };
}
