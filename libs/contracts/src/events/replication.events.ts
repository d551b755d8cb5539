// Replication between sites. Policies live at the source site (stream
// `replpolicy-<policyId>`); a replica is recorded at the target site when its manifest is
// written there (stream `replica-<restorePointId>`); keyless verifications and repairs of a
// site's copy of another site's repository are recorded at the target too (stream
// `replicacheck-<sourceSite>`).
import { Type, type Static } from '@sinclair/typebox';
import { lazySchema } from '../lazy-schema.ts';
import { Bytes, Count, Id, Name, Timestamp } from './common.ts';

const Site = Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$', description: 'A site name.' });

export const ReplicationTrigger = lazySchema(() => Type.Union([
  /** Every restore point committed at the source, `delayMs` after its commit. */
  Type.Object({ kind: Type.Literal('after-backup') }, { additionalProperties: false }),
  /** Every `everyMs`, every restore point not yet at the target (the oldest first). */
  Type.Object({ kind: Type.Literal('schedule'), everyMs: Type.Integer({ minimum: 1000, maximum: 31 * 24 * 3600_000 }) }, { additionalProperties: false }),
  /** The same at each time of a cron expression (5 or 6 fields) in a time zone, e.g. nightly. */
  Type.Object({
    kind: Type.Literal('cron'),
    cron: Type.String({ minLength: 9, maxLength: 128 }),
    timezone: Type.String({ minLength: 1, maxLength: 64, description: 'IANA zone, e.g. Europe/Paris' }),
  }, { additionalProperties: false }),
]));

export const ReplicationPolicyFields = {
  policyId: Id,
  name: Name,
  sourceSite: Site,
  targetSites: Type.Array(Site, { minItems: 1, maxItems: 32 }),
  /** VM ids to replicate; every VM of the source site when omitted. */
  vmIds: Type.Optional(Type.Array(Id, { maxItems: 10_000 })),
  trigger: ReplicationTrigger,
  /** Wait this long after a backup before copying it (after-backup), 0 = at once. */
  delayMs: Type.Integer({ minimum: 0, maximum: 7 * 24 * 3600_000 }),
  /** Most bytes per second sent to each target; unlimited when omitted. */
  bandwidthBytesPerSec: Type.Optional(Type.Integer({ minimum: 1024 })),
  /**
   * How far a target may fall behind: the oldest restore point in scope not yet at a target may
   * be this many minutes old before ReplicationBehind is raised. Default (`replicationMaxLagMinutes`):
   * after-backup delay + 60 min; schedule 2 × everyMs + 60 min; cron 26 h.
   */
  maxLagMinutes: Type.Optional(Type.Integer({ minimum: 1, maximum: 31 * 24 * 60 })),
};

export const ReplicationPolicyCreatedV1 = lazySchema(() => Type.Object(ReplicationPolicyFields, { additionalProperties: false }));
export type ReplicationPolicy = Static<typeof ReplicationPolicyCreatedV1>;
export const ReplicationPolicyDeletedV1 = lazySchema(() => Type.Object({ policyId: Id }, { additionalProperties: false }));

export const ReplicaCommittedV1 = lazySchema(() => Type.Object({
  restorePointId: Id,
  vmId: Id,
  vmName: Type.String(),
  /** The backup job at the source, when the restore point came from one. */
  jobId: Type.Union([Id, Type.Null()]),
  policyId: Type.Union([Id, Type.Null()]),
  sourceSite: Site,
  targetSite: Site,
  /** The source repository this is a copy of (same id at both sites). */
  repositoryId: Type.String(),
  /** When the restore point was committed at the source. */
  sourceCommittedAt: Timestamp,
  disks: Type.Array(Type.Object({ name: Name, sizeBytes: Bytes }, { additionalProperties: false })),
  /** What this copy sent: objects the target lacked, and all bytes of the transfer (headers included). */
  chunksSent: Count,
  pagesSent: Count,
  bytesSent: Bytes,
}, { additionalProperties: false }));

const DamagedObject = lazySchema(() => Type.Object({
  kind: Type.Union([Type.Literal('chunk'), Type.Literal('index-page'), Type.Literal('manifest')]),
  id: Type.String(),
  damage: Type.String(),
}, { additionalProperties: false }));

export const ReplicaVerifiedV1 = lazySchema(() => Type.Object({
  sourceSite: Site,
  repositoryId: Type.String(),
  /** What started it: a copy into it went quiet, the schedule, or a person (absent before it was recorded). */
  trigger: Type.Optional(Type.Union([Type.Literal('after-copy'), Type.Literal('schedule'), Type.Literal('manual')])),
  ok: Type.Boolean(),
  objectsChecked: Count,
  bytesChecked: Bytes,
  damagedCount: Count,
  /** The first 100 damaged objects. */
  damaged: Type.Array(DamagedObject, { maxItems: 100 }),
}, { additionalProperties: false }));

export const ReplicaRepairedV1 = lazySchema(() => Type.Object({
  sourceSite: Site,
  repositoryId: Type.String(),
  /** Objects sent again by the source and checked here. */
  repaired: Type.Array(DamagedObject, { maxItems: 100 }),
  repairedCount: Count,
}, { additionalProperties: false }));

export const ReplicaExpiredV1 = lazySchema(() => Type.Object({
  restorePointId: Id,
  sourceSite: Site,
  targetSite: Site,
  /** Why the source let it go: retention (`expired: <reason>`) or a four-eyes deletion (`deleted`). */
  reason: Type.String(),
}, { additionalProperties: false }));

export const ReplicaGarbageCollectedV1 = lazySchema(() => Type.Object({
  sourceSite: Site,
  repositoryId: Type.String(),
  /** Replicas whose objects were kept (every restore point the copy holds). */
  liveReplicas: Count,
  /** Replicas committed before copies carried a refs list: their objects are unknown, so nothing was swept. */
  withoutRefs: Count,
  objectsDeleted: Count,
  bytesFreed: Bytes,
  /** Unreferenced objects younger than the grace period, kept for now. */
  objectsKeptYoung: Count,
}, { additionalProperties: false }));

/**
 * A source site's repository key arrived here sealed for this site (key escrow, stream
 * `replicacheck-<source>`): kept with its replicas, opened only once the source is declared lost.
 */
export const KeyEscrowReceivedV1 = lazySchema(() => Type.Object({
  sourceSite: Site,
  repositoryId: Type.String({ minLength: 1, maxLength: 128 }),
  /** The source's key ids it was wrapped for (a rotation there sends a new one). */
  keyIds: Type.Array(Type.String({ maxLength: 128 }), { maxItems: 64 }),
  wrappedAt: Type.String({ format: 'date-time' }),
  /** This site's escrow public key it is sealed to (base64url). */
  recipient: Type.String({ maxLength: 64 }),
}, { additionalProperties: false }));

/**
 * The hub heard nothing from a site for longer than its allowed gap (stream `sitehealth-<site>` in
 * the hub's log): its leaf link, or the site itself, is down. Raised once until contact returns.
 */
export const SiteSilentV1 = lazySchema(() => Type.Object({
  site: Site,
  /** Last time the hub reached the site's event stream (null: not since the hub started). */
  lastContactAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  allowedGapMs: Type.Integer({ minimum: 1 }),
  silentForMs: Type.Integer({ minimum: 0 }),
}, { additionalProperties: false }));

/**
 * The hub's allowed gap for one site changed (`cairn site set-gap <site> <duration>` at the hub,
 * the signed command SetSiteAllowedGap; stream `sitehealth-<site>`): from now on the site is
 * reported silent only after this long without contact.
 */
export const SiteAllowedGapSetV1 = lazySchema(() => Type.Object({
  site: Site,
  allowedGapMs: Type.Integer({ minimum: 1000, maximum: 30 * 24 * 3600_000 }),
  /** The gap it had before (from this stream, the hub's site registry or its default). */
  previousMs: Type.Integer({ minimum: 1 }),
}, { additionalProperties: false }));

/** The hub reaches a site again after it was reported silent. */
export const SiteContactRestoredV1 = lazySchema(() => Type.Object({
  site: Site,
  silentForMs: Type.Integer({ minimum: 0 }),
}, { additionalProperties: false }));

const Unreplicated = lazySchema(() => Type.Object({ restorePointId: Id, vmId: Id, committedAt: Timestamp }, { additionalProperties: false }));

/**
 * Replication lag watch (stream `repllag-<policyId>-<target>`, the source site's replication):
 * the oldest restore point in a policy's scope not yet at the target is older than the policy's
 * `maxLagMinutes`. Raised once until the target has caught up.
 */
export const ReplicationBehindV1 = lazySchema(() => Type.Object({
  policyId: Id,
  sourceSite: Site,
  targetSite: Site,
  maxLagMinutes: Type.Integer({ minimum: 1 }),
  /** Age of the oldest restore point not at the target, in whole minutes. */
  lagMinutes: Type.Integer({ minimum: 0 }),
  /** How many restore points in scope are not at the target. */
  unreplicated: Count,
  oldestUnreplicated: Unreplicated,
  newestUnreplicated: Unreplicated,
}, { additionalProperties: false }));

/** The target holds every restore point in scope older than the allowed lag again. */
export const ReplicationCaughtUpV1 = lazySchema(() => Type.Object({
  policyId: Id,
  sourceSite: Site,
  targetSite: Site,
  /** Restore points in scope still not at the target (younger than the allowed lag). */
  unreplicated: Count,
}, { additionalProperties: false }));
