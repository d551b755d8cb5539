// Request and response shapes of the REST API that are not catalogue views: the bodies of the
// command routes (the command payloads, with HTTP-friendly defaults) and small result objects.
import { Type, type TSchema } from '@sinclair/typebox';
import { CreatePolicyV1, RequestBackupV1, RestoreDiskResult, RestoreDiskV1 } from '@cairn/contracts';
import { QUERY_SCHEMAS } from '@cairn/catalogue-client';

const Id = Type.String({ minLength: 1, maxLength: 200, pattern: '^[A-Za-z0-9_-]+$' });

export const Items = <T extends TSchema>(item: T) => Type.Object({ items: Type.Array(item) });

export const VmParams = Type.Object({ vmId: Id });
export const JobParams = Type.Object({ jobId: Id });
export const PolicyParams = Type.Object({ policyId: Id });
export const RestorePointParams = Type.Object({ restorePointId: Id });

export const ListRestorePointsQuery = QUERY_SCHEMAS['restorePoint.list'].request;
export const ListJobsQuery = QUERY_SCHEMAS['job.list'].request;
export const ListPoliciesQuery = QUERY_SCHEMAS['policy.list'].request;
export const AuditQuery = QUERY_SCHEMAS['audit.timeline'].request;
export const ListReplicasQuery = QUERY_SCHEMAS['replica.list'].request;

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

export const Health = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('degraded')]),
  site: Type.String(),
  nats: Type.Union([Type.Literal('connected'), Type.Literal('closed')]),
  catalogue: Type.Object({
    reachable: Type.Boolean(),
    position: Type.Optional(Type.Integer()),
    lag: Type.Optional(Type.Integer()),
    detail: Type.Optional(Type.String()),
  }),
}, { $id: 'Health' });
