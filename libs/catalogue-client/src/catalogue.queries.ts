// The catalogue's queries: one request schema and one result schema per query name, the
// subjects they travel on, and the reply envelope. Queries go to a queue group, so any one
// replica answers; `catalogue.rebuild` goes to every replica.
import { Type, type Static } from '@sinclair/typebox';
import { assertSite } from '@cairn/contracts';
import {
  AuditEntry, CatalogueStats, CatalogueStatus, JobDetail, JobKind, JobState, JobView, PolicyView, RebuildResult, ReplicaView, ReplicationPolicyView, RestorePointView, TestRestoreView, VmView,
} from './catalogue.views.ts';
import { Cursor, Page } from './catalogue.paging.ts';

const Id = Type.String({ minLength: 1, maxLength: 200, pattern: '^[A-Za-z0-9_-]+$' });
const Limit = Type.Integer({ minimum: 1, maximum: 1000, description: 'At most this many items (default 100); `next` continues.' });
/** Lists that are short by nature (VMs, policies) give up to 1,000 items a page unless told less. */
const LongLimit = Type.Integer({ minimum: 1, maximum: 1000, description: 'At most this many items (default 1000); `next` continues.' });
const Time = Type.String({ format: 'date-time' });
const Strict = { additionalProperties: false } as const;

export const DEFAULT_LIMIT = 100;
export const DEFAULT_LONG_LIMIT = 1000;

export const QUERY_SCHEMAS = {
  'vm.list': { request: Type.Object({ limit: Type.Optional(LongLimit), after: Type.Optional(Cursor) }, Strict), result: Page(VmView) },
  'vm.get': { request: Type.Object({ vmId: Id }, Strict), result: VmView },
  'restorePoint.list': {
    request: Type.Object({
      vmId: Type.Optional(Id),
      includeExpired: Type.Optional(Type.Boolean()),
      limit: Type.Optional(Limit),
      after: Type.Optional(Cursor),
    }, Strict),
    result: Page(RestorePointView),
  },
  'restorePoint.get': { request: Type.Object({ restorePointId: Id }, Strict), result: RestorePointView },
  'testRestore.list': {
    request: Type.Object({
      vmId: Type.Optional(Id),
      restorePointId: Type.Optional(Id),
      status: Type.Optional(Type.Union([Type.Literal('running'), Type.Literal('passed'), Type.Literal('failed'), Type.Literal('refused')])),
      limit: Type.Optional(Limit),
      after: Type.Optional(Cursor),
    }, Strict),
    result: Page(TestRestoreView),
  },
  'job.list': {
    request: Type.Object({
      state: Type.Optional(JobState), vmId: Type.Optional(Id), kind: Type.Optional(JobKind), limit: Type.Optional(Limit), after: Type.Optional(Cursor),
    }, Strict),
    result: Page(JobView),
  },
  'job.get': { request: Type.Object({ jobId: Id }, Strict), result: JobDetail },
  'policy.list': {
    request: Type.Object({ includeDeleted: Type.Optional(Type.Boolean()), limit: Type.Optional(LongLimit), after: Type.Optional(Cursor) }, Strict),
    result: Page(PolicyView),
  },
  'policy.get': { request: Type.Object({ policyId: Id }, Strict), result: PolicyView },
  'audit.timeline': {
    request: Type.Object({
      correlationId: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
      /** Actor id (a user name or a service identity). */
      actor: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
      type: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
      streamId: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
      from: Type.Optional(Time),
      to: Type.Optional(Time),
      /** Only events after this log position (to page or to follow). */
      afterPosition: Type.Optional(Type.Integer({ minimum: 0 })),
      limit: Type.Optional(Limit),
      after: Type.Optional(Cursor),
    }, Strict),
    result: Page(AuditEntry),
  },
  'replica.list': {
    request: Type.Object({
      restorePointId: Type.Optional(Id),
      vmId: Type.Optional(Id),
      /** The VM's home site. */
      sourceSite: Type.Optional(Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$' })),
      /** The site holding the copy. */
      site: Type.Optional(Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$' })),
      limit: Type.Optional(Limit),
      after: Type.Optional(Cursor),
    }, Strict),
    result: Page(ReplicaView),
  },
  'replicationPolicy.list': {
    request: Type.Object({ includeDeleted: Type.Optional(Type.Boolean()), limit: Type.Optional(LongLimit), after: Type.Optional(Cursor) }, Strict),
    result: Page(ReplicationPolicyView),
  },
  /** Exact counts and byte sums over the read models (what the gateway's /metrics exports). */
  'catalogue.stats': { request: Type.Object({}, Strict), result: CatalogueStats },
  'catalogue.status': { request: Type.Object({}, Strict), result: CatalogueStatus },
  'catalogue.rebuild': { request: Type.Object({}, Strict), result: RebuildResult },
} as const;

export type QuerySchemas = typeof QUERY_SCHEMAS;
export type QueryName = keyof QuerySchemas;
export type QueryRequest<Q extends QueryName> = Static<QuerySchemas[Q]['request']>;
export type QueryResult<Q extends QueryName> = Static<QuerySchemas[Q]['result']>;

export const QUERY_NAMES = Object.keys(QUERY_SCHEMAS) as QueryName[];
/** Queries every replica answers (not load-balanced). */
export const BROADCAST_QUERIES: readonly QueryName[] = ['catalogue.rebuild'];
/** Queue group the replicas share. */
export const CATALOGUE_QUEUE = 'catalogue';

export function isQueryName(name: string): name is QueryName {
  return Object.hasOwn(QUERY_SCHEMAS, name);
}

/** `cairn.<site>.query.catalogue.<name>`; the name's dots make extra tokens (`vm.list`). */
export function catalogueQuerySubject(site: string, name: QueryName): string {
  return `${catalogueQueryPrefix(site)}.${name}`;
}

export function catalogueQueryPrefix(site: string): string {
  return `cairn.${assertSite(site)}.query.catalogue`;
}

export type QueryErrorCode = 'bad_request' | 'not_found' | 'unavailable' | 'internal';

export const QueryReply = Type.Union([
  Type.Object({ ok: Type.Literal(true), result: Type.Unknown() }),
  Type.Object({
    ok: Type.Literal(false),
    error: Type.Object({
      code: Type.Union([Type.Literal('bad_request'), Type.Literal('not_found'), Type.Literal('unavailable'), Type.Literal('internal')]),
      message: Type.String(),
    }),
  }),
]);
export type QueryReply = Static<typeof QueryReply>;

/** Header naming the replica that answered (to see the queue group share the load). */
export const REPLICA_HEADER = 'Cairn-Catalogue-Replica';
