// Which operator keys and administrator roles a reader may trust (docs/security.md, "Four-eyes
// that no single identity completes"). The gateway writes users and keys, so a compromised
// gateway could record any administrator with any key; readers therefore accept an operator key
// or the administrator role only along a chain of endorsements — each signed by a key that was,
// at that point in the log, a trusted key of an enabled trusted administrator — that ends at the
// site's root operator (named in the signing cut-over: the local operator `cairn up` made).
// Endorsed events count only when the gateway wrote them: the operator's `admin` NATS identity
// writes the root and nothing else that readers trust. Pure, but for the two readers at the end.
import {
  ROLES, endorsementStatement, verifyStatement,
  type EndorsedGrant, type KnownEvent, type Role,
} from '@cairn/contracts';

/** The site's root operator: whose first key and administrator role need no endorsement. */
export interface TrustRoot {
  readonly userId: string;
  readonly publicKey: string;
}

/** An event of a user's stream and its position in the log. */
export interface PositionedEvent {
  readonly event: KnownEvent;
  readonly position: bigint;
}

/** The records of `user-<id>` streams a check needs (undefined: no such user). */
export type UserRecords = (userId: string) => readonly PositionedEvent[] | undefined;

export interface TrustedUser {
  readonly userId: string;
  /** The roles recorded, with administrator only when trusted. */
  readonly roles: readonly Role[];
  /** The administrator role is the root's or endorsed. */
  readonly administrator: boolean;
  /** Held a trusted administrator role at some point (disabled or demoted since, perhaps). */
  readonly everAdministrator: boolean;
  /** Was at some point a trusted administrator with a trusted key: could sign four-eyes acts. */
  readonly everVoter: boolean;
  readonly disabled: boolean;
  /** Current keys an endorsement chain vouches for. */
  readonly keys: ReadonlySet<string>;
  /** What the stream records that nothing vouches for, and why (to report). */
  readonly untrusted: readonly { readonly eventId: string; readonly what: string; readonly why: string }[];
}

const END = 2n ** 63n;

/**
 * A user as trusted before log position `before` (default: all of it). Endorsers are judged as
 * they were at the endorsed event's position, so a later change to them does not undo what they
 * vouched for then, and the recursion ends (positions only go down).
 */
export function trustedUser(userId: string, records: UserRecords, root: TrustRoot | null, before: bigint = END): TrustedUser | undefined {
  const recs = records(userId);
  if (!recs) return undefined;
  let found = false;
  let roles: Role[] = [];
  let administrator = false;
  let everAdministrator = false;
  let everVoter = false;
  let disabled = false;
  const keys = new Set<string>();
  const revoked = new Set<string>();
  const untrusted: Array<{ eventId: string; what: string; why: string }> = [];
  const used = new Set<string>();
  for (const { event: e, position } of recs) {
    if (position >= before) break;
    const writer = e.provenance?.writer ?? null;
    const rootWrite = writer === 'admin' || writer === null;
    const isRootUser = root ? root.userId === userId : false;
    /** Why the endorsement on this event does not vouch for `grant` (undefined: it does). */
    const unendorsed = (grant: EndorsedGrant): string | undefined => {
      const en = 'endorsement' in e.data ? e.data.endorsement : undefined;
      if (writer !== 'gateway' && writer !== null) return `written by ${writer}: only the gateway's records of an endorsement count`;
      if (!en) return 'no administrator endorsed it';
      if (used.has(en.signature)) return 'its endorsement was used before (replayed)';
      if (!verifyStatement(endorsementStatement({ endorser: en.userId, userId, grant, issuedAt: en.issuedAt }), en)) return `the endorsement by ${en.userId} does not verify`;
      const by = trustedUser(en.userId, records, root, position);
      if (!by || by.disabled || !by.administrator) return `${en.userId} was not a trusted, enabled administrator then`;
      if (!by.keys.has(en.publicKey)) return `${en.publicKey} was not a trusted key of ${en.userId} then`;
      used.add(en.signature);
      return undefined;
    };
    const takeRoles = (next: readonly Role[], created: boolean) => {
      roles = next.filter((r) => ROLES.includes(r));
      if (!roles.includes('administrator')) { administrator = false; return; }
      if (administrator) return;
      // The root's own creation; without a recorded root (a site signed before roots were
      // recorded), what `admin` wrote is taken as the root (docs/security.md: the limit).
      if (created && rootWrite && (isRootUser || (!root && writer === 'admin'))) { administrator = true; return; }
      const why = unendorsed({ kind: 'administrator' });
      if (why === undefined) administrator = true;
      else untrusted.push({ eventId: e.id, what: 'role administrator', why });
    };
    switch (e.type) {
      case 'UserCreated':
        if (found) break;
        found = true;
        takeRoles(e.data.roles, true);
        break;
      case 'UserRolesChanged':
        takeRoles(e.data.roles, false);
        break;
      case 'UserDisabled':
        disabled = true;
        break;
      case 'UserKeyAdded': {
        const k = e.data.publicKey;
        if (revoked.has(k) || keys.has(k)) break;
        if (rootWrite && ((isRootUser && root?.publicKey === k) || (!root && writer === 'admin'))) { keys.add(k); break; }
        const why = unendorsed({ kind: 'key', publicKey: k });
        if (why === undefined) keys.add(k);
        else untrusted.push({ eventId: e.id, what: `key ${k}`, why });
        break;
      }
      case 'UserKeyRevoked':
        keys.delete(e.data.publicKey);
        revoked.add(e.data.publicKey);
        break;
      default:
        break;
    }
    if (administrator) everAdministrator = true;
    if (administrator && keys.size > 0) everVoter = true;
  }
  if (!found) return undefined;
  return { userId, roles: administrator ? roles : roles.filter((r) => r !== 'administrator'), administrator, everAdministrator, everVoter, disabled, keys, untrusted };
}

/** Whether `publicKey` is a trusted key of `userId`, an enabled trusted administrator; else why not. */
export function trustedAdministratorKey(userId: string, publicKey: string, records: UserRecords, root: TrustRoot | null): string | undefined {
  const u = trustedUser(userId, records, root);
  if (!u) return `no user ${userId}`;
  if (u.disabled) return `user ${userId} is disabled`;
  if (!u.administrator) {
    const why = u.untrusted.find((x) => x.what === 'role administrator')?.why;
    return `${userId} is not a trusted administrator${why ? ` (the role: ${why})` : ''}`;
  }
  if (!u.keys.has(publicKey)) {
    const why = u.untrusted.find((x) => x.what === `key ${publicKey}`)?.why;
    return `${publicKey} is not a trusted key of ${userId}${why ? ` (${why})` : ' (never added, or revoked)'}`;
  }
  return undefined;
}

/** Reads what trust checks need (the port is the event log's; structural so domain code stays free of it). */
export interface PositionedStreamReader {
  readStream(streamId: string): AsyncIterable<{ readonly event: KnownEvent; readonly position: bigint }>;
}

/** Reads the streams of `userIds` and of everyone whose endorsements they carry, transitively. */
export async function loadUserRecords(reader: PositionedStreamReader, userIds: Iterable<string>): Promise<UserRecords> {
  const streams = new Map<string, PositionedEvent[]>();
  const queue = [...userIds];
  while (queue.length > 0) {
    const id = queue.shift()!;
    if (streams.has(id) || !/^[A-Za-z0-9_-]{1,64}$/.test(id)) continue;
    const recs: PositionedEvent[] = [];
    for await (const r of reader.readStream(`user-${id}`)) {
      recs.push({ event: r.event, position: r.position });
      const en = 'endorsement' in r.event.data ? (r.event.data as { endorsement?: { userId: string } }).endorsement : undefined;
      if (en && !streams.has(en.userId)) queue.push(en.userId);
    }
    streams.set(id, recs);
  }
  return (userId) => {
    const recs = streams.get(userId);
    return recs && recs.length > 0 ? recs : undefined;
  };
}

/** The root operator the site's signing cut-over names (null: none recorded, or no cut-over). */
export async function readTrustRoot(reader: PositionedStreamReader): Promise<TrustRoot | null> {
  for await (const r of reader.readStream('provenance-signing')) {
    if (r.event.type !== 'EventSigningStarted' || r.event.provenance?.writer !== 'admin') continue;
    return r.event.data.rootOperator ?? null;
  }
  return null;
}
