// Request and response shapes of the REST API that are not catalogue views: the bodies of the
// command routes (the command payloads, with HTTP-friendly defaults) and small result objects.
import { Type, type TSchema } from '@sinclair/typebox';
import { ApprovalAction, Endorsement, PersonSignature, PolicyFields, CreatePolicyV1, RequestBackupV1, RestoreDiskResult, RestoreDiskV1, Role, UserId } from '@cairn/contracts';
import { Cursor, Page, QUERY_SCHEMAS } from '@cairn/catalogue-client';

const Id = Type.String({ minLength: 1, maxLength: 200, pattern: '^[A-Za-z0-9_-]+$' });

/** Every list answers a page: `items` and the cursor `next` (pass it as `after`; null on the last page). */
export const Items = <T extends TSchema>(item: T) => Page(item);
/** `limit` and `after` of a list the gateway keeps in memory (users, tokens, approvals). */
export const Paging = {
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: 'At most this many items (default 100); `next` continues.' })),
  after: Type.Optional(Cursor),
};
export const DEFAULT_PAGE = 100;

export const VmParams = Type.Object({ vmId: Id });
export const JobParams = Type.Object({ jobId: Id });
export const PolicyParams = Type.Object({ policyId: Id });
export const RestorePointParams = Type.Object({ restorePointId: Id });
export const RepositoryParams = Type.Object({ repository: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' }) });
export const SiteParams = Type.Object({ site: Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$' }) });

export const ListVmsQuery = QUERY_SCHEMAS['vm.list'].request;
export const ListRestorePointsQuery = QUERY_SCHEMAS['restorePoint.list'].request;
export const ListJobsQuery = QUERY_SCHEMAS['job.list'].request;
export const ListPoliciesQuery = QUERY_SCHEMAS['policy.list'].request;
export const AuditQuery = QUERY_SCHEMAS['audit.timeline'].request;
export const ListReplicasQuery = QUERY_SCHEMAS['replica.list'].request;
export const ListTestRestoresQuery = QUERY_SCHEMAS['testRestore.list'].request;

export const BackupBody = Type.Object({
  vmId: RequestBackupV1.properties.vmId,
  policyId: RequestBackupV1.properties.policyId,
  mode: Type.Optional(Type.Union([Type.Literal('auto'), Type.Literal('full')], { default: 'auto', description: 'auto: incremental when possible (default).' })),
}, { $id: 'BackupRequest', additionalProperties: false });

export const CreatePolicyBody = Type.Composite([CreatePolicyV1], { $id: 'CreatePolicyRequest', additionalProperties: false });
export const RestoreBody = Type.Composite([RestoreDiskV1], { $id: 'RestoreRequest', additionalProperties: false });

export const RestoreResult = Type.Composite([RestoreDiskResult], { $id: 'RestoreResult' });

export const JobAccepted = Type.Object({
  jobId: Id,
  /** Where to follow the job. */
  href: Type.String(),
}, { $id: 'JobAccepted' });

export const PolicyCreated = Type.Object({ policyId: Id, href: Type.String() }, { $id: 'PolicyCreatedResponse' });

/**
 * A person's signed request for a four-eyes approval, made before the gateway knows whether it
 * needs one (the CLI signs it with the operator key; docs/security.md, four-eyes).
 */
const SignedRequest = Type.Object({
  /** The approval's id, chosen by the requester (the signature covers it). */
  approvalId: Type.String({ format: 'uuid' }),
  signature: PersonSignature,
}, { additionalProperties: false });

const { policyId: _policyId, ...PolicyBodyFields } = PolicyFields;
/** A policy's new version (its id is in the path); `approval`: the signed request, should the change need one (secure sites). */
export const UpdatePolicyBody = Type.Object({ ...PolicyBodyFields, approval: Type.Optional(SignedRequest) }, { $id: 'UpdatePolicyRequest', additionalProperties: false });

export const Health = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('degraded')]),
  site: Type.String(),
  nats: Type.Union([Type.Literal('connected'), Type.Literal('disconnected'), Type.Literal('closed')], { description: 'the gateway\'s connection to NATS now (disconnected: the client is reconnecting)' }),
  natsServer: Type.Optional(Type.Object({
    state: Type.Union([Type.Literal('running'), Type.Literal('restarting'), Type.Literal('stopped')]),
    restarts: Type.Integer({ minimum: 0 }),
  }, { additionalProperties: true, description: 'the nats-server `cairn up` started and supervises (absent when NATS is not its own)' })),
  catalogue: Type.Object({
    reachable: Type.Boolean(),
    position: Type.Optional(Type.Integer()),
    lag: Type.Optional(Type.Integer()),
    detail: Type.Optional(Type.String()),
  }),
}, { $id: 'Health' });

// ---- users, tokens, approvals ------------------------------------------------------------

const RoleList = Type.Array(Role, { minItems: 1, maxItems: 4, uniqueItems: true });
const When = Type.String({ format: 'date-time' });

export const UserParams = Type.Object({ userId: UserId });
export const TokenParams = Type.Object({ tokenId: Id });
const PublicKey = Type.String({ pattern: '^U[A-Z2-7]{55}$', format: 'nkey-user', description: 'An nkey public key (ed25519) with a valid checksum' });
export const UserKeyParams = Type.Object({ userId: UserId, publicKey: PublicKey });
export const AddUserKeyBody = Type.Object({
  publicKey: PublicKey,
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 256, format: 'plain-name' })),
  /** An administrator's endorsement of the key (required on a secure site). */
  endorsement: Type.Optional(Endorsement),
  /** When the key is for another administrator on a site with two or more: the signed approval request. */
  approval: Type.Optional(SignedRequest),
}, { $id: 'AddUserKeyRequest', additionalProperties: false });
export const ApprovalParams = Type.Object({ approvalId: Id });

export const CreateUserBody = Type.Object({
  userId: UserId,
  roles: RoleList,
  displayName: Type.Optional(Type.String({ minLength: 1, maxLength: 256, format: 'plain-name' })),
  /** For the administrator role: an administrator's endorsement (required on a secure site). */
  endorsement: Type.Optional(Endorsement),
  /** For the administrator role on a site with two or more: the signed approval request. */
  approval: Type.Optional(SignedRequest),
}, { $id: 'CreateUserRequest', additionalProperties: false });
export const SetRolesBody = Type.Object({
  roles: RoleList,
  endorsement: Type.Optional(Endorsement),
  approval: Type.Optional(SignedRequest),
}, { $id: 'SetRolesRequest', additionalProperties: false });
export const ReasonBody = Type.Object({ reason: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })) }, { $id: 'ReasonRequest', additionalProperties: false });
/** Asking for a deletion: the reason, and on a secure site the requester's signed request. */
export const DeletionBody = Type.Object({
  reason: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
  approvalId: Type.Optional(Type.String({ format: 'uuid' })),
  signature: Type.Optional(PersonSignature),
}, { $id: 'DeletionRequest', additionalProperties: false });
/** A decision on an approval; on a secure site signed by the deciding administrator. The body may be left out. */
export const DecisionBody = Type.Object({
  reason: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
  signature: Type.Optional(PersonSignature),
}, { $id: 'DecisionRequest', additionalProperties: false, 'x-cairn-optional-body': true });

export const UserView = Type.Object({
  userId: UserId,
  roles: Type.Array(Role),
  disabled: Type.Boolean(),
  displayName: Type.Optional(Type.String()),
  createdAt: When,
  createdBy: Type.String(),
  /** Public halves of the user's current operator keys (signing commands sent over NATS). */
  keys: Type.Array(Type.String()),
}, { $id: 'User' });

export const CreateTokenBody = Type.Object({
  userId: UserId,
  name: Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9 ._-]+$' }),
  /** Default: no expiry. */
  expiresInDays: Type.Optional(Type.Integer({ minimum: 1, maximum: 3650 })),
}, { $id: 'CreateTokenRequest', additionalProperties: false });

export const TokenView = Type.Object({
  tokenId: Id,
  userId: UserId,
  name: Type.String(),
  issuedAt: When,
  issuedBy: Type.String(),
  expiresAt: Type.Union([When, Type.Null()]),
  revoked: Type.Boolean(),
  revokedAt: Type.Optional(When),
  revokedBy: Type.Optional(Type.String()),
}, { $id: 'Token' });

export const TokenCreated = Type.Object({
  tokenId: Id,
  userId: UserId,
  expiresAt: Type.Union([When, Type.Null()]),
  /** The token: shown this once, never stored (only its SHA-256 is). */
  token: Type.String(),
}, { $id: 'TokenCreated' });

export const WhoAmI = Type.Object({
  actor: Type.Object({ kind: Type.Literal('user'), id: Type.String() }),
  roles: Type.Array(Role),
  permissions: Type.Array(Type.String()),
  /** This site needs four-eyes acts signed with the person's own operator key (the CLI signs; docs/security.md). */
  signaturesRequired: Type.Optional(Type.Boolean()),
}, { $id: 'WhoAmI' });

export const ApprovalView = Type.Object({
  approvalId: Id,
  action: ApprovalAction,
  requestedBy: Type.String(),
  requestedAt: When,
  reason: Type.Optional(Type.String()),
  status: Type.Union(['pending', 'approved', 'rejected', 'done', 'failed'].map((s) => Type.Literal(s))),
  approvedBy: Type.Optional(Type.String()),
  rejectedBy: Type.Optional(Type.String()),
  decidedAt: Type.Optional(When),
  detail: Type.Optional(Type.String()),
  href: Type.String(),
}, { $id: 'Approval' });

export const CreateApprovalBody = Type.Object({
  action: ApprovalAction,
  reason: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
  approvalId: Type.Optional(Type.String({ format: 'uuid' })),
  signature: Type.Optional(PersonSignature),
}, { $id: 'ApprovalRequest', additionalProperties: false });

export const ListApprovalsQuery = Type.Object({
  status: Type.Optional(Type.Union(['pending', 'approved', 'rejected', 'done', 'failed'].map((s) => Type.Literal(s)))),
  ...Paging,
}, { additionalProperties: false });
export const ListTokensQuery = Type.Object({ userId: Type.Optional(UserId), ...Paging }, { additionalProperties: false });
export const ListUsersQuery = Type.Object({ ...Paging }, { additionalProperties: false });

/** One site as the hub sees it (tools/cli/src/stack/site-health.ts, SiteHealth). */
export const SiteHealthView = Type.Object({
  site: Type.String(),
  leafLink: Type.Union([Type.Literal('up'), Type.Literal('down')], { description: 'Whether the last probe across the site\'s leaf link answered.' }),
  lastContactAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  silent: Type.Boolean({ description: 'Not reached for longer than its allowed gap (SiteSilent).' }),
  allowedGapMs: Type.Integer({ description: 'This site\'s allowed gap: the latest `cairn site set-gap` (SiteAllowedGapSet), else `cairn hub add-site --allowed-gap`, else the hub\'s default (300 s).' }),
  eventsAtSite: Type.Union([Type.Integer(), Type.Null()]),
  eventsCopied: Type.Integer(),
  eventLag: Type.Union([Type.Integer(), Type.Null()], { description: 'Events at the site not yet copied to the hub (null: never reached).' }),
  relayConnected: Type.Boolean(),
  failedJobs24h: Type.Integer(),
  rpoMisses24h: Type.Integer(),
  restorePoints: Type.Integer(),
  repositoryBytes: Type.Integer(),
  replication: Type.Array(Type.Object({
    target: Type.String(), replicas: Type.Integer(), lastReplicaAt: Type.String({ format: 'date-time' }),
    lagMs: Type.Integer({ description: 'How long after its source commit the latest replica landed.' }),
  })),
});

export const SitesHealthView = Type.Object({
  generatedAt: Type.String({ format: 'date-time' }),
  items: Type.Array(SiteHealthView),
});

/** A global policy and each site it selects or that held an earlier version, as the hub sees them (tools/cli/src/stack/global-policies.ts, GlobalPolicyStatus). */
export const GlobalPolicyView = Type.Object({
  policyId: Type.String(),
  name: Type.String(),
  version: Type.Integer({ minimum: 1, description: 'The hub\'s newest version (one more per `policy edit --global`).' }),
  withdrawn: Type.Boolean({ description: 'Withdrawn at the hub (`policy delete --global`): current at a site once its copy is deleted.' }),
  selector: Type.Unknown({ description: '{ all: true }, { sites: [...] } or { tags: [...] }' }),
  selects: Type.String({ description: 'The selector in words.' }),
  signedBy: Type.Array(Type.String(), { description: 'The users whose signatures the statement carries.' }),
  publishedAt: Type.String({ format: 'date-time' }),
  sites: Type.Array(Type.Object({
    site: Type.String(),
    selected: Type.Boolean({ description: 'Whether the newest version selects the site; false: it held an earlier version and its copy goes (withdrawn: not selected), current once deleted.' }),
    appliedVersion: Type.Union([Type.Integer(), Type.Null()], { description: 'The version the site\'s own log says it runs (null: none yet).' }),
    state: Type.Union([Type.Literal('current'), Type.Literal('behind'), Type.Literal('refused')], { description: 'behind or refused: drift.' }),
    lastError: Type.Union([Type.String(), Type.Null()], { description: 'The site\'s reason for refusing, or why the last offer was not answered.' }),
    lastOfferAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  })),
  drift: Type.Integer({ minimum: 0, description: 'Sites behind or refusing.' }),
});

export const GlobalPoliciesView = Type.Object({
  generatedAt: Type.String({ format: 'date-time' }),
  items: Type.Array(GlobalPolicyView),
});
