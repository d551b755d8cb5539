// Protection policies (stream `policy-<policyId>`), owned by the scheduler. Created and
// updated carry the whole policy so a read model never has to merge partial updates.
import { Type, type Static } from '@sinclair/typebox';
import { lazySchema } from '../lazy-schema.ts';
import { Id, Name } from './common.ts';

export const PolicySelector = lazySchema(() => Type.Object({
  names: Type.Optional(Type.Array(Name, { description: 'VM names (exact match)' })),
  tags: Type.Optional(Type.Array(Name, { description: 'VMs carrying all of these tags' })),
  hypervisor: Type.Optional(Name),
}, { additionalProperties: false }));

const ClockTime = Type.String({ pattern: '^([01][0-9]|2[0-3]):[0-5][0-9]$', description: 'HH:MM in the schedule time zone' });

export const PolicySchedule = lazySchema(() => Type.Object({
  cron: Type.String({ minLength: 9, maxLength: 128, description: 'cron expression (5 or 6 fields)' }),
  timezone: Type.String({ minLength: 1, maxLength: 64, description: 'IANA zone, e.g. Europe/Paris' }),
  /** Scheduled jobs start only inside this window (it may wrap midnight, e.g. 22:00–06:00). */
  window: Type.Optional(Type.Object({ start: ClockTime, end: ClockTime }, { additionalProperties: false })),
}, { additionalProperties: false }));

const Keep = Type.Integer({ minimum: 0, maximum: 10_000 });
/** GFS retention: how many of the latest daily/weekly/... restore points to keep, plus the last N. */
export const PolicyRetention = lazySchema(() => Type.Object({
  daily: Keep, weekly: Keep, monthly: Keep, yearly: Keep, last: Keep,
}, { additionalProperties: false }));

export const QuiescePolicy = lazySchema(() => Type.Union([Type.Literal('required'), Type.Literal('preferred'), Type.Literal('off')]));
export type QuiescePolicy = Static<typeof QuiescePolicy>;

/** What a test restore is judged by (the `TestRestore` command and a policy's `testRestore` schedule). */
export const TestRestoreCheckFields = {
  /** Passes when this text appears on the serial console. */
  serialPattern: Type.String({ minLength: 1, maxLength: 200 }),
  timeoutSeconds: Type.Optional(Type.Integer({ minimum: 10, maximum: 3600 })),
  /** Direct kernel boot for a guest without a boot loader: files under /boot only. */
  kernel: Type.Optional(Type.String({ pattern: '^/boot/[A-Za-z0-9._+-]+$' })),
  initrd: Type.Optional(Type.String({ pattern: '^/boot/[A-Za-z0-9._+-]+$' })),
  append: Type.Optional(Type.String({ minLength: 1, maxLength: 1024, pattern: '^[\\x20-\\x7e]+$' })),
  /** Checks after the serial pattern: the guest agent answering `guest-ping` and reporting its OS, optionally a command run through it (passes on exit 0). */
  agent: Type.Optional(Type.Object({
    exec: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 1024 }), { minItems: 1, maxItems: 16 })),
  }, { additionalProperties: false })),
  /** Guest TCP ports that must answer on the isolated network (user-mode, no route out; reached through a loopback forward). */
  tcpPorts: Type.Optional(Type.Array(Type.Integer({ minimum: 1, maximum: 65535 }), { minItems: 1, maxItems: 8, uniqueItems: true })),
  /** An operator script by name, from the data mover's `<data>/test-restore-scripts/` (never a path): run against the booted VM, passes on exit 0. */
  script: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$' })),
  scriptTimeoutSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 3600 })),
};

/**
 * A policy's test-restore schedule: at each slot of `cron` (in the policy's time zone) the newest
 * restore point of every VM the policy covers is booted in isolation and judged by the checks.
 */
export const PolicyTestRestore = lazySchema(() => Type.Object({
  cron: Type.String({ minLength: 9, maxLength: 128, description: 'cron expression (5 or 6 fields), in the policy schedule\'s time zone' }),
  /** Which restore point of each VM: its newest (the only choice today). */
  restorePoints: Type.Optional(Type.Literal('latest')),
  ...TestRestoreCheckFields,
}, { additionalProperties: false }));

export const PolicyFields = {
  policyId: Id,
  name: Name,
  selector: PolicySelector,
  schedule: PolicySchedule,
  retention: PolicyRetention,
  /** Target repository name. */
  repository: Name,
  /** Reference of the key that protects the repository (never the key itself). */
  keyRef: Name,
  /** Higher runs first when slots compete. */
  priority: Type.Integer({ minimum: 0, maximum: 1000 }),
  /**
   * Lock each new restore point of this policy until the latest time its retention can still
   * keep it (`immutabilityLockUntil`); turning it off, or shortening that time, needs a
   * four-eyes approval (disable-immutability). Locks already made are never shortened.
   */
  immutable: Type.Optional(Type.Boolean()),
  /** Most bytes per second each backup of this policy reads (per job; hosts and the site have their own limits). */
  bandwidthBytesPerSec: Type.Optional(Type.Integer({ minimum: 1024 })),
  /**
   * Freeze the guest's file systems through its agent at the point in time: `required` fails
   * the job when the agent does not answer, `preferred` (the default) falls back to a
   * crash-consistent backup and says why, `off` never asks.
   */
  quiesce: Type.Optional(QuiescePolicy),
  /**
   * Build a file index of each new restore point in the background (path, size, time and type
   * of every file; searchable without an appliance, docs/files.md). Default on.
   */
  fileIndex: Type.Optional(Type.Boolean()),
  /**
   * Recovery-point objective in minutes: a covered VM whose newest restore point is older than
   * this raises RpoMissed (once, until it has a younger one: RpoRestored). Default: the longest
   * gap between two slots of the schedule plus 2 h (26 h for a daily schedule).
   */
  rpoMinutes: Type.Optional(Type.Integer({ minimum: 1, maximum: 527_040 })),
  /** Boot-test the newest restore point of each covered VM on a schedule (issue 16). */
  testRestore: Type.Optional(PolicyTestRestore),
};

/**
 * A policy delivered by the hub (a global policy, docs/sites.md "Global policies"): `managedBy`
 * `hub` and the version of the hub's statement the site applied. Only the scheduler's
 * ApplyGlobalPolicy sets them; a local edit, pause or delete of such a policy is refused.
 */
export const ManagedPolicyFields = {
  managedBy: Type.Optional(Type.Literal('hub')),
  globalVersion: Type.Optional(Type.Integer({ minimum: 1 })),
  /** The hub's id of the global policy (this site's policy id is `sitePolicyId(globalPolicyId, site)`). */
  globalPolicyId: Type.Optional(Id),
};

export const PolicyCreatedV1 = lazySchema(() => Type.Object({ ...PolicyFields, ...ManagedPolicyFields }, { additionalProperties: false }));
export const PolicyUpdatedV1 = lazySchema(() => Type.Object({ ...PolicyFields, ...ManagedPolicyFields }, { additionalProperties: false }));
export const PolicyDeletedV1 = lazySchema(() => Type.Object({
  policyId: Id,
  /** A global policy withdrawn at the hub: the version of the statement that withdrew it (an older one applied later changes nothing). */
  globalVersion: Type.Optional(Type.Integer({ minimum: 1 })),
}, { additionalProperties: false }));
/** The policy schedules no new backups until resumed; its restore points and their retention stay. */
export const PolicyPausedV1 = lazySchema(() => Type.Object({ policyId: Id }, { additionalProperties: false }));
export const PolicyResumedV1 = lazySchema(() => Type.Object({ policyId: Id }, { additionalProperties: false }));
export type Policy = Static<typeof PolicyCreatedV1>;

/** Retention decisions (stream `restorepoint-<restorePointId>`). */
export const RestorePointExpiredV1 = lazySchema(() => Type.Object({
  restorePointId: Id,
  vmId: Id,
  policyId: Type.Union([Id, Type.Null()]),
  reason: Type.String({ minLength: 1, maxLength: 1024 }),
}, { additionalProperties: false }));

/** A restore point was locked (immutability, stream `restorepoint-<restorePointId>`). */
export const RestorePointLockedV1 = lazySchema(() => Type.Object({
  restorePointId: Id,
  retainUntil: Type.String({ format: 'date-time' }),
  objectsLocked: Type.Integer({ minimum: 0 }),
}, { additionalProperties: false }));
