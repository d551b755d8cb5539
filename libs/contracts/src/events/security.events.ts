// Security events: who may use the API (users and their tokens, streams `user-<userId>` and
// `token-<tokenId>`), who signed in or was refused (stream `access-<yyyy-mm-dd>`), four-eyes
// approvals of destructive acts (stream `approval-<approvalId>`), and the destructive acts
// themselves (restore-point deletion, restores). Owned by the gateway, except RestorePointDeleted
// and DiskRestored, which the data mover records when it did the act.
import { Type, type Static } from '@sinclair/typebox';
import { lazySchema } from '../lazy-schema.ts';
import { Id, Name, Reason, Timestamp } from './common.ts';
import { PolicyFields } from './policy.events.ts';

/** API roles: administrator (everything), operator (backups, policies, restores), restore-operator (restores), auditor (read only). */
export const Role = lazySchema(() => Type.Union([
  Type.Literal('administrator'), Type.Literal('operator'), Type.Literal('restore-operator'), Type.Literal('auditor'),
], { $id: 'Role' }));
export type Role = Static<typeof Role>;
export const ROLES: readonly Role[] = ['administrator', 'operator', 'restore-operator', 'auditor'];

/** A local user id: also the `<id>` of its stream and the actor id of what it does. */
export const UserId = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' });
/** Who a person is as an actor (a local user id, or the subject of an OIDC token). */
const Principal = Type.String({ minLength: 1, maxLength: 256 });

/** An nkey public key (`U…`): a person's operator key for signing commands sent over NATS. */
const PublicKey = Type.String({ pattern: '^U[A-Z2-7]{55}$' });
/** An ed25519 signature, base64url. */
const Signature = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_-]+$' });

/**
 * A person's own signature with one of their operator keys over a statement
 * (`approvalStatement` in person-signing.ts): what a gateway can pass on but not make.
 */
export const PersonSignature = lazySchema(() => Type.Object({
  publicKey: PublicKey,
  signature: Signature,
  issuedAt: Timestamp,
}, { additionalProperties: false, $id: 'PersonSignature' }));

/**
 * An administrator vouching, with a current operator key of theirs, for an operator key or the
 * administrator role of a user (`endorsementStatement`): readers trust a key or the role only
 * along a chain of these that ends at the site's root operator (docs/security.md, four-eyes).
 */
export const Endorsement = lazySchema(() => Type.Object({
  /** The administrator who endorses. */
  userId: UserId,
  publicKey: PublicKey,
  signature: Signature,
  issuedAt: Timestamp,
}, { additionalProperties: false, $id: 'Endorsement' }));

export const UserCreatedV1 = lazySchema(() => Type.Object({
  userId: UserId,
  roles: Type.Array(Role, { minItems: 1, maxItems: 4, uniqueItems: true }),
  displayName: Type.Optional(Name),
  /** For the administrator role: an administrator's endorsement of it. */
  endorsement: Type.Optional(Endorsement),
}, { additionalProperties: false }));

export const UserRolesChangedV1 = lazySchema(() => Type.Object({
  userId: UserId,
  roles: Type.Array(Role, { minItems: 1, maxItems: 4, uniqueItems: true }),
  /** For the administrator role: an administrator's endorsement of it. */
  endorsement: Type.Optional(Endorsement),
}, { additionalProperties: false }));

/** The user can no longer sign in; all its tokens stop working at once. */
export const UserDisabledV1 = lazySchema(() => Type.Object({
  userId: UserId,
  reason: Type.Optional(Reason),
}, { additionalProperties: false }));

/** The user may sign commands with this key (the seed stays in the file the CLI wrote). */
export const UserKeyAddedV1 = lazySchema(() => Type.Object({
  userId: UserId,
  publicKey: PublicKey,
  name: Type.Optional(Name),
  /** An administrator's endorsement of this key (all but the root operator's first key). */
  endorsement: Type.Optional(Endorsement),
}, { additionalProperties: false }));

/** Commands signed by this key are refused from now on. */
export const UserKeyRevokedV1 = lazySchema(() => Type.Object({
  userId: UserId,
  publicKey: PublicKey,
  reason: Type.Optional(Reason),
}, { additionalProperties: false }));

export const TokenIssuedV1 = lazySchema(() => Type.Object({
  tokenId: Id,
  userId: UserId,
  name: Name,
  /** SHA-256 (hex) of the token: the token itself is shown once and never stored. */
  tokenSha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  expiresAt: Type.Union([Timestamp, Type.Null()]),
}, { additionalProperties: false }));

export const TokenRevokedV1 = lazySchema(() => Type.Object({
  tokenId: Id,
  userId: UserId,
  reason: Type.Optional(Reason),
}, { additionalProperties: false }));

/** A first authentication: one per token per gateway process, one per OIDC token (not per request). */
export const SignedInV1 = lazySchema(() => Type.Object({
  userId: Principal,
  method: Type.Union([Type.Literal('token'), Type.Literal('oidc')]),
  tokenId: Type.Optional(Id),
  issuer: Type.Optional(Type.String({ maxLength: 1024 })),
  roles: Type.Array(Role, { maxItems: 4 }),
}, { additionalProperties: false }));

/** An authenticated caller asked for something its roles do not allow (HTTP 403). */
export const AccessDeniedV1 = lazySchema(() => Type.Object({
  userId: Principal,
  roles: Type.Array(Role, { maxItems: 4 }),
  /** The API operation (operationId) or command refused. */
  operation: Type.String({ minLength: 1, maxLength: 128 }),
  /** What was missing: a permission, or `four-eyes` (own request approved by oneself). */
  needed: Type.String({ minLength: 1, maxLength: 128 }),
  method: Type.String({ maxLength: 16 }),
  path: Type.String({ maxLength: 2048 }),
}, { additionalProperties: false }));

/**
 * Failed authentication, aggregated (docs/security.md, Edges): per source address and per user,
 * one at the first failure of a window, one when throttling starts, one with the count when a
 * window with unreported failures ends; never one per attempt.
 */
export const AuthFailedV1 = lazySchema(() => Type.Object({
  /** What was counted: the caller's address, or the user whose (revoked, expired, disabled) token it was. */
  scope: Type.Union([Type.Literal('source'), Type.Literal('user')]),
  /** The caller's address (scope source) or the last one seen (scope user). */
  source: Type.String({ maxLength: 64 }),
  userId: Type.Optional(Principal),
  /** Failures in this window so far (a summary: all of them). */
  attempts: Type.Integer({ minimum: 1 }),
  /** Why they failed, e.g. unknown, revoked, expired, user-disabled, oidc, throttled. */
  reasons: Type.Array(Type.String({ maxLength: 32 }), { maxItems: 8 }),
  windowStart: Timestamp,
  /** Set while further attempts are refused with 429 without being checked. */
  blockedUntil: Type.Optional(Timestamp),
}, { additionalProperties: false }));

/** An administrator got back into a locked-out site with their own operator key (RecoverAccess). */
export const AccessRecoveredV1 = lazySchema(() => Type.Object({
  userId: Principal,
  /** The token issued (its TokenIssued follows). */
  tokenId: Id,
  /** The operator key that signed the request. */
  publicKey: PublicKey,
  reason: Reason,
}, { additionalProperties: false }));

/** What a four-eyes approval is for. */
export const ApprovalAction = lazySchema(() => Type.Union([
  Type.Object({ kind: Type.Literal('delete-restore-point'), restorePointId: Id }, { additionalProperties: false }),
  Type.Object({
    kind: Type.Literal('shorten-retention'),
    policyId: Id,
    /** The policy as it will be once approved (UpdatePolicy carries exactly this). */
    policy: Type.Optional(Type.Object(PolicyFields, { additionalProperties: false })),
  }, { additionalProperties: false }),
  Type.Object({
    kind: Type.Literal('disable-immutability'),
    policyId: Id,
    /** The policy as it will be once approved: immutable off, or a shorter lock period. */
    policy: Type.Optional(Type.Object(PolicyFields, { additionalProperties: false })),
  }, { additionalProperties: false }),
  Type.Object({ kind: Type.Literal('delete-repository'), repository: Name }, { additionalProperties: false }),
  /** Declaring another site lost (disaster recovery): this site may then open the key that site escrowed for it. */
  Type.Object({ kind: Type.Literal('declare-site-lost'), site: Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$' }) }, { additionalProperties: false }),
  /** Making a user an administrator while the site has two or more (the requester's endorsement rides along). */
  Type.Object({
    kind: Type.Literal('grant-administrator'),
    userId: UserId,
    /** The roles the user will have (administrator among them); a new user is created with them. */
    roles: Type.Array(Role, { minItems: 1, maxItems: 4, uniqueItems: true }),
    displayName: Type.Optional(Name),
    endorsement: Endorsement,
  }, { additionalProperties: false }),
  /** Adding an operator key to another administrator's account while the site has two or more. */
  Type.Object({
    kind: Type.Literal('add-operator-key'),
    userId: UserId,
    publicKey: PublicKey,
    name: Type.Optional(Name),
    endorsement: Endorsement,
  }, { additionalProperties: false }),
  /** Overwrite the disks of a VM under an immutable policy with a restore point of it (`cairn restore --in-place`). */
  Type.Object({ kind: Type.Literal('restore-in-place'), vm: Name, restorePointId: Id }, { additionalProperties: false }),
], { $id: 'ApprovalAction' }));
export type ApprovalAction = Static<typeof ApprovalAction>;

export const ApprovalRequestedV1 = lazySchema(() => Type.Object({
  approvalId: Id,
  action: ApprovalAction,
  requestedBy: Principal,
  reason: Type.Optional(Reason),
  /** The requester's own signature (required on a secure site). */
  signature: Type.Optional(PersonSignature),
}, { additionalProperties: false }));

/** A second administrator approved; the act follows (ApprovalExecuted says how it went). */
export const ApprovalGrantedV1 = lazySchema(() => Type.Object({
  approvalId: Id,
  approvedBy: Principal,
  /** The approver's own signature (required on a secure site). */
  signature: Type.Optional(PersonSignature),
}, { additionalProperties: false }));

export const ApprovalRejectedV1 = lazySchema(() => Type.Object({
  approvalId: Id,
  rejectedBy: Principal,
  reason: Type.Optional(Reason),
  signature: Type.Optional(PersonSignature),
}, { additionalProperties: false }));

export const ApprovalExecutedV1 = lazySchema(() => Type.Object({
  approvalId: Id,
  outcome: Type.Union([Type.Literal('done'), Type.Literal('failed')]),
  detail: Type.Optional(Type.String({ maxLength: 4096 })),
}, { additionalProperties: false }));

/** A restore point was deleted after a four-eyes approval (stream `restorepoint-<id>`). */
export const RestorePointDeletedV1 = lazySchema(() => Type.Object({
  restorePointId: Id,
  approvalId: Id,
  requestedBy: Principal,
  approvedBy: Principal,
}, { additionalProperties: false }));

/**
 * A repository was deleted after a four-eyes approval: its restore points, chunks, index, key
 * journal, keys and config (stream `repository-<repositoryId>`).
 */
export const RepositoryDeletedV1 = lazySchema(() => Type.Object({
  /** The repository's name on the site (`default`, ...). */
  repository: Name,
  repositoryId: Type.String({ minLength: 1, maxLength: 128 }),
  location: Type.String({ maxLength: 4096 }),
  approvalId: Id,
  requestedBy: Principal,
  approvedBy: Principal,
  restorePointsDeleted: Type.Integer({ minimum: 0 }),
  objectsDeleted: Type.Integer({ minimum: 0 }),
}, { additionalProperties: false }));

/**
 * Another site was declared lost here after a four-eyes approval (stream
 * `repository-sitelost-<site>`): from now on this site opens the repository key that site
 * escrowed for it, and restores that site's replicas with it (docs/sites.md, disaster recovery).
 */
export const SiteDeclaredLostV1 = lazySchema(() => Type.Object({
  site: Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$' }),
  /** The lost site's repository, as its escrow and its replica here name it. */
  repositoryId: Type.String({ minLength: 1, maxLength: 128 }),
  /** Key ids the escrow was wrapped for, and when the lost site wrapped it. */
  keyIds: Type.Array(Type.String({ maxLength: 128 }), { maxItems: 64 }),
  escrowWrappedAt: Timestamp,
  approvalId: Id,
  requestedBy: Principal,
  approvedBy: Principal,
}, { additionalProperties: false }));

/** A disk of a restore point was restored (stream `restore-<restoreId>`). */
export const DiskRestoredV1 = lazySchema(() => Type.Object({
  restoreId: Id,
  restorePointId: Id,
  disk: Name,
  target: Type.Union([Type.Literal('file'), Type.Literal('vm-disk'), Type.Literal('nbd-export')]),
  /** File target: the path written. */
  path: Type.Optional(Type.String({ maxLength: 4096 })),
  sizeBytes: Type.Integer({ minimum: 0 }),
}, { additionalProperties: false }));
