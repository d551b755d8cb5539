// Signed commands (docs/security.md, "How commands sent over NATS are authenticated"). NATS
// does not tell a subscriber who published a message, so a command's actor is only a claim
// unless the command carries a signature: `auth` = an ed25519 signature (nkeys) over
// `commandSigningString`. Where a site runs secure, every command handler checks it before the
// handler runs:
//
// - signed by a **service identity's key** (the nkey the service authenticates to NATS with;
//   the public keys are in the site's security material): accepted. That is the gateway, which
//   authenticated the person (API token / OIDC) and checked their role on the route itself, or
//   a service acting on its own (the scheduler asking the coordinator for a snapshot);
// - signed by a **person's operator key**: the key must be a current key of the actor's user
//   (`UserKeyAdded`, not `UserKeyRevoked`, user not disabled, read from the log at each
//   command), and the user's roles must grant the command's permission (`COMMAND_PERMISSIONS`);
// - anything else — no signature, a signature that does not verify, signed more than 5 minutes
//   off the receiver's clock, a key that is not the actor's or was revoked, a service actor not
//   signed by a service — is refused (`unauthenticated`, or `forbidden` for a missing role) and
//   recorded as `AccessDenied`.
// Replays: a signed command sent again within the 5 minutes carries the same idempotency key
// (it is signed), so the responder answers it with the first reply and runs nothing; later, the
// signature is stale.
import type { NatsConnection } from '@nats-io/transport-node';
import { fromPublic } from '@nats-io/nkeys';
import {
  COMMAND_ERROR_CODES, COMMAND_PERMISSIONS, ROLES, allows, commandSigningString, isCommandName, newEvent,
  type Actor, type Command, type CommandAuth, type KnownEvent, type Role,
} from '@cairn/contracts';
import type { EventAppender, EventStreamReader } from '@cairn/eventlog';
// The signer alone, not the event log's index: a command's sender (the CLI) loads no JetStream
// client before its request (docs/benchmarks.md, "the restore command's CLI until the request").
import { nativeSigner, verifyNkeySignature } from '@cairn/eventlog/ed25519';
import { loadUserRecords, readTrustRoot, trustedUser } from '@cairn/jobs';

/** Signs commands with an nkey (a person's operator key or a service identity's key). */
export interface CommandSigner {
  readonly publicKey: string;
  sign(data: Uint8Array): Uint8Array;
}

export function signerFromSeed(seed: string): CommandSigner {
  // Node's ed25519, not tweetnacl's (the same signatures, without its ~25 ms per key pair).
  return nativeSigner(seed);
}

/** The command with its `auth`: a signature over `commandSigningString` at `now`. */
export function signCommand<C extends Command>(command: C, signer: CommandSigner, now: Date = new Date()): C {
  const { auth: _ignored, ...unsigned } = command;
  const issuedAt = now.toISOString();
  const signature = Buffer.from(signer.sign(new TextEncoder().encode(commandSigningString(unsigned, issuedAt)))).toString('base64url');
  const auth: CommandAuth = { publicKey: signer.publicKey, signature, issuedAt };
  return { ...unsigned, auth } as C;
}

/** Whether `auth` is a valid signature of this command by `auth.publicKey` (not who that is). */
export function verifyCommandSignature(command: Command): boolean {
  const auth = command.auth;
  if (!auth) return false;
  try {
    const { auth: _a, ...unsigned } = command;
    const data = new TextEncoder().encode(commandSigningString(unsigned, auth.issuedAt));
    // fromPublic checks the key's prefix and checksum (it throws on a bad one); Node's ed25519
    // checks the signature (tweetnacl's verify took ~3 ms of the stack's event loop per command).
    fromPublic(auth.publicKey);
    return verifyNkeySignature(auth.publicKey, data, new Uint8Array(Buffer.from(auth.signature, 'base64url')));
  } catch {
    return false;
  }
}

export type CommandAuthDecision =
  | { readonly ok: true; readonly by: 'service' | 'user' | 'unchecked' | 'statement' }
  | { readonly ok: false; readonly code: 'unauthenticated' | 'forbidden'; readonly message: string };

/** Decides whether a command may run; the command responder asks it before the handler. */
export interface CommandAuthorizer {
  authorize(command: Command, subject: string): Promise<CommandAuthDecision>;
}

/** What the log says about a user, for checking their signed commands. */
export interface OperatorRecord {
  readonly userId: string;
  readonly roles: readonly Role[];
  readonly disabled: boolean;
  readonly keys: ReadonlySet<string>;
  readonly revokedKeys: ReadonlySet<string>;
}

const USER_ID = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Commands whose authority is a person's signature inside the payload, checked by the handler
 * itself rather than the command's: ApplyGlobalPolicy carries a global policy statement signed
 * at the hub, maybe long ago (the site was cut off), so no 5-minute command signature could
 * cover it; the hub that relays it signs nothing the site trusts.
 */
export const STATEMENT_COMMANDS: ReadonlySet<string> = new Set(['ApplyGlobalPolicy']);

/** Folds a user's stream (`user-<id>`) into roles, state and current keys; undefined when there is no such user. */
export async function readOperator(log: EventStreamReader, userId: string): Promise<OperatorRecord | undefined> {
  if (!USER_ID.test(userId)) return undefined;
  const events: KnownEvent[] = [];
  for await (const r of log.readStream(`user-${userId}`)) events.push(r.event as KnownEvent);
  return operatorOf(userId, events);
}

/** A user's stream (`user-<id>`), folded as `readOperator` does. */
function operatorOf(userId: string, events: Iterable<KnownEvent>): OperatorRecord | undefined {
  let found = false;
  let roles: Role[] = [];
  let disabled = false;
  const keys = new Set<string>();
  const revokedKeys = new Set<string>();
  for (const e of events) {
    switch (e.type) {
      case 'UserCreated': found = true; roles = [...e.data.roles]; break;
      case 'UserRolesChanged': roles = [...e.data.roles]; break;
      case 'UserDisabled': disabled = true; break;
      case 'UserKeyAdded': if (!revokedKeys.has(e.data.publicKey)) keys.add(e.data.publicKey); break;
      case 'UserKeyRevoked': keys.delete(e.data.publicKey); revokedKeys.add(e.data.publicKey); break;
      default: break;
    }
  }
  return found ? { userId, roles: roles.filter((x) => ROLES.includes(x)), disabled, keys, revokedKeys } : undefined;
}

export interface SignedCommandPolicyOptions {
  /** Where users and keys are read (`user-<id>`) and `AccessDenied` is recorded (`access-<date>`). */
  readonly log: EventStreamReader & EventAppender;
  readonly site: string;
  /** Actor of the `AccessDenied` records of unauthenticated commands (the checking service). */
  readonly serviceActor: Actor;
  /** Public keys of the site's service identities (key → identity name): they vouch for their commands. */
  readonly serviceKeys: ReadonlyMap<string, string>;
  /** How far `issuedAt` may be from the receiver's clock (default 5 minutes). */
  readonly maxSkewMs?: number;
  /**
   * Accept a person's key, and the administrator role, only along an endorsement chain from the
   * site's root operator (a secure site; docs/security.md, four-eyes): a key or role a
   * compromised gateway recorded on its own signs nothing.
   */
  readonly endorsedKeysOnly?: boolean;
  readonly now?: () => Date;
  readonly onError?: (e: unknown) => void;
}

/** The secure-site rule above; `AccessDenied` at most once per actor, command and reason every 10 s. */
export class SignedCommandPolicy implements CommandAuthorizer {
  private readonly recent = new Map<string, number>();

  constructor(private readonly o: SignedCommandPolicyOptions) {}

  async authorize(command: Command, subject: string): Promise<CommandAuthDecision> {
    const now = (this.o.now ?? (() => new Date()))();
    const deny = async (code: 'unauthenticated' | 'forbidden', needed: string, message: string, roles: readonly Role[] = [], asUser = false): Promise<CommandAuthDecision> => {
      await this.recordDenied(command, subject, needed, roles, asUser).catch((e) => this.o.onError?.(e));
      return { ok: false, code, message };
    };
    const who = `${command.actor.kind}:${command.actor.id}`;
    if (STATEMENT_COMMANDS.has(command.name)) return { ok: true, by: 'statement' };
    const auth = command.auth;
    if (!auth) {
      return deny('unauthenticated', 'signature', `${command.name} from ${who} is not signed: this site accepts only signed commands (cairn: --operator-key <file> or CAIRN_OPERATOR_KEY; see docs/security.md)`);
    }
    if (!verifyCommandSignature(command)) return deny('unauthenticated', 'valid-signature', `${command.name} from ${who}: the signature does not verify`);
    const skew = Math.abs(Date.parse(auth.issuedAt) - now.getTime());
    const maxSkewMs = this.o.maxSkewMs ?? 5 * 60_000;
    if (!(skew <= maxSkewMs)) {
      return deny('unauthenticated', 'fresh-signature', `${command.name} from ${who} was signed at ${auth.issuedAt}, more than ${Math.round(maxSkewMs / 1000)} s from now: stale or replayed (check the clocks)`);
    }
    if (this.o.serviceKeys.has(auth.publicKey)) return { ok: true, by: 'service' };
    if (command.actor.kind !== 'user') {
      return deny('unauthenticated', 'service-signature', `${command.name} claims service ${command.actor.id} but is not signed by a service identity of site ${this.o.site}`);
    }
    // On a secure site the user's stream (with its endorsers') is read once for both checks, and
    // the trust root beside it: two reads at once, not three one after the other.
    const trust = this.o.endorsedKeysOnly && USER_ID.test(command.actor.id)
      ? await Promise.all([loadUserRecords(this.o.log, [command.actor.id]), readTrustRoot(this.o.log)]) : undefined;
    let user = trust ? operatorOf(command.actor.id, (trust[0](command.actor.id) ?? []).map((r) => r.event)) : await readOperator(this.o.log, command.actor.id);
    if (!user) return deny('unauthenticated', 'known-user', `${command.name}: no user ${command.actor.id} at site ${this.o.site}`);
    if (!user.keys.has(auth.publicKey)) {
      return deny('unauthenticated', 'current-key', `${command.name}: key ${auth.publicKey} is not a current key of user ${user.userId} (never added, or revoked)`, user.roles);
    }
    if (this.o.endorsedKeysOnly) {
      const [records, root] = trust ?? await Promise.all([loadUserRecords(this.o.log, [user.userId]), readTrustRoot(this.o.log)]);
      const trusted = trustedUser(user.userId, records, root);
      if (!trusted?.keys.has(auth.publicKey)) {
        const why = trusted?.untrusted.find((x) => x.what === `key ${auth.publicKey}`)?.why ?? 'no endorsement chain';
        return deny('unauthenticated', 'endorsed-key', `${command.name}: key ${auth.publicKey} of user ${user.userId} is not endorsed by an administrator (${why})`, user.roles);
      }
      user = { ...user, roles: trusted.roles };
    }
    if (user.disabled) return deny('unauthenticated', 'enabled-user', `${command.name}: user ${user.userId} is disabled`, user.roles);
    const permission = isCommandName(command.name) ? COMMAND_PERMISSIONS[command.name] : 'admin';
    if (!allows(user.roles, permission)) {
      return deny('forbidden', permission, `${command.name} needs permission ${permission}; user ${user.userId} has roles ${user.roles.join(', ') || '(none)'}`, user.roles, true);
    }
    return { ok: true, by: 'user' };
  }

  private async recordDenied(command: Command, subject: string, needed: string, roles: readonly Role[], asUser: boolean): Promise<void> {
    const key = `${command.actor.kind}:${command.actor.id}|${command.name}|${needed}`;
    const t = Date.now();
    const last = this.recent.get(key);
    if (last !== undefined && t - last < 10_000) return;
    if (this.recent.size > 10_000) this.recent.clear();
    this.recent.set(key, t);
    const streamId = `access-${new Date(t).toISOString().slice(0, 10)}`;
    // An authenticated person refused for their role is the actor; a claim that did not
    // authenticate is recorded by the service that refused it, naming who was claimed.
    const actor: Actor = asUser ? command.actor : this.o.serviceActor;
    const event = newEvent('AccessDenied', {
      userId: command.actor.id.slice(0, 256), roles: [...roles], operation: command.name, needed, method: 'NATS', path: subject.slice(0, 2048),
    }, { site: this.o.site, actor, streamId, causationId: command.id, ...(command.trace ? { trace: command.trace } : {}) });
    await this.o.log.append(streamId, [event], { expectedRevision: 'any' });
  }
}

/**
 * A site that does not require signed commands (`cairn up --insecure`): everything runs, but a
 * person's name that no current key of theirs signed is marked `authenticated: false` in the
 * actor the handler sees (and so in the events it records).
 */
export class UnverifiedCommandPolicy implements CommandAuthorizer {
  constructor(private readonly o: { readonly log: EventStreamReader; readonly maxSkewMs?: number }) {}

  async authorize(command: Command): Promise<CommandAuthDecision> {
    if (command.actor.kind !== 'user') return { ok: true, by: 'service' };
    const auth = command.auth;
    if (!auth || !verifyCommandSignature(command) || !(Math.abs(Date.parse(auth.issuedAt) - Date.now()) <= (this.o.maxSkewMs ?? 5 * 60_000))) {
      return { ok: true, by: 'unchecked' };
    }
    const user = await readOperator(this.o.log, command.actor.id);
    return user && !user.disabled && user.keys.has(auth.publicKey) ? { ok: true, by: 'user' } : { ok: true, by: 'unchecked' };
  }
}

/** What a connection's commands are signed with and checked by (see `bindCommandSecurity`). */
export interface CommandSecurity {
  /** Signs what a CommandBus on this connection sends (the identity's or operator's key). */
  readonly signer?: CommandSigner;
  /** Checks what a JetStreamServer on this connection receives. */
  readonly authorizer?: CommandAuthorizer;
}

const bound = new WeakMap<NatsConnection, CommandSecurity>();

/**
 * Attaches signing and checking to a NATS connection: a connection is authenticated as one
 * identity, and the command buses and servers built on it sign and check as that identity
 * without every service's options having to carry them. Explicit options win.
 */
export function bindCommandSecurity(nc: NatsConnection, security: CommandSecurity): void {
  bound.set(nc, { ...bound.get(nc), ...security });
}

export function commandSecurityOf(nc: NatsConnection): CommandSecurity | undefined {
  return bound.get(nc);
}

export const UNAUTHENTICATED = COMMAND_ERROR_CODES.unauthenticated;
