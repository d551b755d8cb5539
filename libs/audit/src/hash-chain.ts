// The audit hash chain: each record commits to the one before, hash = SHA-256(previous hash
// + "\n" + canonical JSON of the event), over the log in position order, starting from
// GENESIS_HASH. Sealing (`chainEvents`) and checking (`verifyChain`) are pure functions;
// where the hashes are kept (beside the log, in the SIEM) is up to the caller. A verifier
// that holds the records with their hashes names the first record that was removed,
// reordered or altered; trusted anchors (hashes kept elsewhere) also catch a chain rewritten
// from some point on.
import { createHash } from 'node:crypto';
import { canonicalJson } from './canonical-json.ts';

export const GENESIS_HASH = '0'.repeat(64);

/** What the chain needs of an event: its id and its JSON (the whole envelope is hashed). */
export interface ChainableEvent {
  readonly id: string;
}

export interface PositionedEvent<E extends ChainableEvent = ChainableEvent> {
  readonly position: bigint;
  readonly event: E;
}

export interface ChainedRecord<E extends ChainableEvent = ChainableEvent> extends PositionedEvent<E> {
  /** Hash of the record before (GENESIS_HASH for the first). */
  readonly prevHash: string;
  readonly hash: string;
}

/** The hash of one record given the one before. */
export function chainHash(prevHash: string, event: ChainableEvent): string {
  return createHash('sha256').update(prevHash).update('\n').update(canonicalJson(event)).digest('hex');
}

/**
 * Seals events into a chain. `from` continues an existing chain (its last hash) when sealing
 * in pieces; events must come in strictly increasing position order.
 */
export function chainEvents<E extends ChainableEvent>(events: Iterable<PositionedEvent<E>>, from: string = GENESIS_HASH): ChainedRecord<E>[] {
  const out: ChainedRecord<E>[] = [];
  let prev = from;
  let lastPosition: bigint | undefined;
  for (const r of events) {
    if (lastPosition !== undefined && r.position <= lastPosition) {
      throw new Error(`chainEvents: position ${r.position} after ${lastPosition}: events must be in position order`);
    }
    const hash = chainHash(prev, r.event);
    out.push({ position: r.position, event: r.event, prevHash: prev, hash });
    prev = hash;
    lastPosition = r.position;
  }
  return out;
}

export type ChainProblemKind = 'altered' | 'removed' | 'reordered' | 'anchor_mismatch';

export interface ChainProblem {
  readonly kind: ChainProblemKind;
  /** Index in the records given. */
  readonly index: number;
  /** The record the problem is found at (for `removed`: the first record after the gap). */
  readonly position: bigint;
  readonly eventId: string;
  readonly message: string;
}

export type ChainVerdict =
  | { readonly ok: true; readonly count: number; readonly head: string }
  | { readonly ok: false; readonly count: number; readonly problem: ChainProblem };

export interface VerifyOptions {
  /** Hash before the first record (GENESIS_HASH unless verifying a piece of a longer chain). */
  readonly from?: string;
  /** Hashes kept elsewhere (a SIEM, a printed report) that the records must agree with. */
  readonly anchors?: ReadonlyArray<{ readonly position: bigint; readonly hash: string }>;
}

/**
 * Checks a chain in the order given and reports the first record that does not fit:
 * - `altered`: the record's event (or its stored hash) no longer matches its hash;
 * - `removed`: the record is intact but commits to a record that is not the one before it
 *   (one or more records were taken out just before it);
 * - `reordered`: positions go backwards, or the record commits to one that comes later;
 * - `anchor_mismatch`: a trusted hash disagrees (the chain was rewritten from there or before).
 */
export function verifyChain(records: readonly ChainedRecord[], options: VerifyOptions = {}): ChainVerdict {
  const at = (i: number, kind: ChainProblemKind, message: string): ChainVerdict => {
    const r = records[i]!;
    return { ok: false, count: records.length, problem: { kind, index: i, position: r.position, eventId: r.event.id, message: `record ${i} (position ${r.position}, event ${r.event.id}): ${message}` } };
  };
  const laterIndex = new Map<string, number>();
  records.forEach((r, i) => laterIndex.set(r.hash, i));
  const anchors = new Map((options.anchors ?? []).map((a) => [a.position, a.hash]));
  let prev = options.from ?? GENESIS_HASH;
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    const before = i > 0 ? records[i - 1]! : undefined;
    if (before && r.position <= before.position) {
      return at(i, 'reordered', `position ${r.position} comes after ${before.position}`);
    }
    const intact = chainHash(r.prevHash, r.event) === r.hash;
    if (r.prevHash !== prev) {
      const target = laterIndex.get(r.prevHash);
      if (target !== undefined && target > i) return at(i, 'reordered', `it commits to record ${target}, which comes after it`);
      if (intact) {
        const gap = before ? `after position ${before.position}` : 'at the start';
        return at(i, 'removed', `the record it commits to is missing (${gap})`);
      }
      return at(i, 'altered', 'neither its content nor its link matches the chain');
    }
    if (!intact) return at(i, 'altered', 'its content does not match its hash');
    const anchor = anchors.get(r.position);
    if (anchor !== undefined && anchor !== r.hash) return at(i, 'anchor_mismatch', `hash ${r.hash} differs from the trusted ${anchor}`);
    prev = r.hash;
  }
  return { ok: true, count: records.length, head: prev };
}
