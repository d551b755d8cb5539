// Maps Cairn events to OCSF 1.1.0 "Entity Management" (class 3004, category 3 "Identity &
// Access Management"): every Cairn event is an act by an actor (a person or a service) on a
// managed entity, the aggregate its stream names (a job, a VM, a policy, a restore point).
// The class mapping is documented in docs/audit-siem.md; `OcsfEntityManagement` is the
// TypeBox schema of exactly the fields written here.
import { Type, type Static } from '@sinclair/typebox';
import type { CairnEvent } from '@cairn/contracts';
import { cefSeverity, forSiem } from './cef.format.ts';

export const OCSF_VERSION = '1.1.0';
export const OCSF_CLASS_UID = 3004;
export const OCSF_CATEGORY_UID = 3;

export const OCSF_ACTIVITIES = { Create: 1, Read: 2, Update: 3, Delete: 4, Other: 99 } as const;
type ActivityName = keyof typeof OCSF_ACTIVITIES;

/** Which OCSF activity each Cairn event type is; a type not listed is "Update". */
export const ACTIVITY_OF: Readonly<Record<string, ActivityName>> = {
  JobRequested: 'Create',
  PolicyCreated: 'Create',
  VmDiscovered: 'Create',
  RestorePointCommitted: 'Create',
  SnapshotTaken: 'Create',
  PolicyDeleted: 'Delete',
  RestorePointExpired: 'Delete',
  SnapshotReleased: 'Delete',
  DiskDetached: 'Update',
  VmPowerStateChanged: 'Update',
  VmRemoved: 'Delete',
  MessageDeadLettered: 'Other',
  UserCreated: 'Create',
  UserRolesChanged: 'Update',
  UserDisabled: 'Update',
  UserKeyAdded: 'Create',
  UserKeyRevoked: 'Delete',
  TokenIssued: 'Create',
  TokenRevoked: 'Delete',
  SignedIn: 'Read',
  AccessDenied: 'Other',
  AuthFailed: 'Other',
  AccessRecovered: 'Create',
  ApprovalRequested: 'Create',
  ApprovalGranted: 'Update',
  ApprovalRejected: 'Update',
  ApprovalExecuted: 'Update',
  RestorePointDeleted: 'Delete',
  DiskRestored: 'Read',
  RepositoryInitialized: 'Create',
  RepositoryKeyRotated: 'Update',
  RepositoryDeleted: 'Delete',
  RecoveryKeyExported: 'Read',
};

const FAILURES = new Set(['JobFailed', 'SnapshotFailed', 'MessageDeadLettered', 'AccessDenied', 'AuthFailed']);

const Str = Type.String({ minLength: 1 });
export const OcsfEntityManagement = Type.Object({
  activity_id: Type.Union(Object.values(OCSF_ACTIVITIES).map((v) => Type.Literal(v))),
  activity_name: Str,
  category_uid: Type.Literal(OCSF_CATEGORY_UID),
  category_name: Type.Literal('Identity & Access Management'),
  class_uid: Type.Literal(OCSF_CLASS_UID),
  class_name: Type.Literal('Entity Management'),
  type_uid: Type.Integer({ minimum: 300400, maximum: 300499 }),
  type_name: Str,
  severity_id: Type.Integer({ minimum: 0, maximum: 6 }),
  severity: Str,
  status_id: Type.Union([Type.Literal(1), Type.Literal(2)]),
  status: Type.Union([Type.Literal('Success'), Type.Literal('Failure')]),
  /** Event time, milliseconds since the epoch. */
  time: Type.Integer({ minimum: 0 }),
  message: Str,
  actor: Type.Union([
    Type.Object({ user: Type.Object({ uid: Str, name: Str, type_id: Type.Literal(1), type: Type.Literal('User') }, { additionalProperties: false }) }, { additionalProperties: false }),
    Type.Object({ app_name: Str, app_uid: Str }, { additionalProperties: false }),
  ]),
  entity: Type.Object({ uid: Str, name: Str, type: Str }, { additionalProperties: false }),
  metadata: Type.Object({
    version: Type.Literal(OCSF_VERSION),
    uid: Type.String({ format: 'uuid' }),
    correlation_uid: Str,
    sequence: Type.Integer({ minimum: 1 }),
    product: Type.Object({ name: Type.Literal('Cairn'), vendor_name: Type.Literal('Cairn'), version: Str }, { additionalProperties: false }),
  }, { additionalProperties: false }),
  unmapped: Type.Object({
    cairn: Type.Object({
      type: Str,
      schemaVersion: Type.Integer({ minimum: 1 }),
      site: Str,
      causationId: Type.Union([Str, Type.Null()]),
      traceparent: Type.Optional(Str),
      /** Present (false) when the actor is a person's name nobody verified. */
      actorAuthenticated: Type.Optional(Type.Literal(false)),
      /** The identity that wrote and signed the event (secure sites). */
      writer: Type.Optional(Type.String()),
      data: Type.Unknown(),
    }, { additionalProperties: false }),
  }, { additionalProperties: false }),
}, { $id: 'OcsfEntityManagement', additionalProperties: false });
export type OcsfEntityManagement = Static<typeof OcsfEntityManagement>;

/** OCSF severity_id: 1 Informational, 3 Medium, 4 High (from the CEF severity). */
function severityOf(type: string): { id: number; name: string } {
  const cef = cefSeverity(type);
  return cef >= 7 ? { id: 4, name: 'High' } : cef >= 5 ? { id: 3, name: 'Medium' } : { id: 1, name: 'Informational' };
}

/** The OCSF record of one event. */
export function toOcsf(event: CairnEvent, position: bigint, productVersion: string): OcsfEntityManagement {
  const activity = ACTIVITY_OF[event.type] ?? 'Update';
  const activityId = OCSF_ACTIVITIES[activity];
  const severity = severityOf(event.type);
  const failed = FAILURES.has(event.type);
  const dash = event.streamId.indexOf('-');
  return {
    activity_id: activityId,
    activity_name: activity,
    category_uid: OCSF_CATEGORY_UID,
    category_name: 'Identity & Access Management',
    class_uid: OCSF_CLASS_UID,
    class_name: 'Entity Management',
    type_uid: OCSF_CLASS_UID * 100 + activityId,
    type_name: `Entity Management: ${activity}`,
    severity_id: severity.id,
    severity: severity.name,
    status_id: failed ? 2 : 1,
    status: failed ? 'Failure' : 'Success',
    time: Date.parse(event.time),
    message: `${event.type} ${event.streamId}`,
    actor: event.actor.kind === 'user'
      ? { user: { uid: event.actor.id, name: event.actor.id, type_id: 1, type: 'User' } }
      : { app_name: event.actor.id, app_uid: event.actor.id },
    entity: { uid: event.streamId, name: event.streamId.slice(dash + 1), type: event.streamId.slice(0, dash) },
    metadata: {
      version: OCSF_VERSION,
      uid: event.id,
      correlation_uid: event.correlationId,
      sequence: Number(position),
      product: { name: 'Cairn', vendor_name: 'Cairn', version: productVersion },
    },
    unmapped: {
      cairn: {
        type: event.type,
        schemaVersion: event.schemaVersion,
        site: event.site,
        causationId: event.causationId,
        ...(event.trace ? { traceparent: event.trace.traceparent } : {}),
        ...(event.actor.authenticated === false ? { actorAuthenticated: false as const } : {}),
        ...(event.provenance ? { writer: event.provenance.writer } : {}),
        data: forSiem(event).data,
      },
    },
  };
}
