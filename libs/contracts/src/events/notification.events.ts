// Notifications (issue 16). Routes live in stream `notifyroute-<routeId>`, written by the
// operator's CLI (`cairn notify route add|remove`) through the route decider (libs/notifications);
// the notifier folds them from the log. A route names what it wants to hear (event kinds,
// severity, sites, VMs), where to (webhook, e-mail, syslog) and how often at most (digests).
// Secrets (SMTP password) are never in an event: a route names the environment variable or
// file the notifier reads them from.
import { Type, type Static } from '@sinclair/typebox';
import { lazySchema } from '../lazy-schema.ts';
import { Id, Name, PlainName, Timestamp } from './common.ts';

export const NotificationSeverity = lazySchema(() => Type.Union([Type.Literal('info'), Type.Literal('warning'), Type.Literal('error'), Type.Literal('critical')]));
export type NotificationSeverity = Static<typeof NotificationSeverity>;

export const NotificationKind = lazySchema(() => Type.Union([
  Type.Literal('job-failed'),
  Type.Literal('damage-found'),
  Type.Literal('test-restore-failed'),
  Type.Literal('rpo-missed'),
  Type.Literal('rpo-restored'),
  Type.Literal('approval-waiting'),
  Type.Literal('dead-letter'),
  Type.Literal('credential-expiring'),
  Type.Literal('replication-behind'),
  Type.Literal('replication-caught-up'),
  Type.Literal('test'),
]));
export type NotificationKind = Static<typeof NotificationKind>;

export const NotificationMatch = lazySchema(() => Type.Object({
  /** Notification kinds; the defaults that matter (every kind but `rpo-restored` and `test`) when omitted. */
  kinds: Type.Optional(Type.Array(NotificationKind, { minItems: 1, maxItems: 16 })),
  /** Lowest severity sent (default `warning`). */
  minSeverity: Type.Optional(NotificationSeverity),
  sites: Type.Optional(Type.Array(Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$' }), { minItems: 1, maxItems: 64 })),
  vmIds: Type.Optional(Type.Array(Id, { minItems: 1, maxItems: 1000 })),
}, { additionalProperties: false }));
export type NotificationMatch = Static<typeof NotificationMatch>;

const HttpUrl = Type.String({ minLength: 8, maxLength: 2048, pattern: '^https?://' });
const Email = Type.String({ minLength: 3, maxLength: 320, pattern: '^[^\\s@<>]+@[^\\s@<>]+$' });
const Host = Type.String({ minLength: 1, maxLength: 253, pattern: '^[A-Za-z0-9._:-]+$' });
const Port = Type.Integer({ minimum: 1, maximum: 65535 });
const EnvName = Type.String({ pattern: '^[A-Z_][A-Z0-9_]{0,127}$' });

export const WebhookTarget = lazySchema(() => Type.Object({
  kind: Type.Literal('webhook'),
  url: HttpUrl,
  /** Body shape: Cairn's JSON (default), a Slack incoming webhook, or a Teams MessageCard. */
  format: Type.Optional(Type.Union([Type.Literal('json'), Type.Literal('slack'), Type.Literal('teams')])),
}, { additionalProperties: false }));

export const EmailTarget = lazySchema(() => Type.Object({
  kind: Type.Literal('email'),
  host: Host,
  port: Port,
  /** `starttls` (default, refuses a server that does not offer it), `tls` (implicit, port 465) or `none` (loopback relays only). */
  security: Type.Optional(Type.Union([Type.Literal('starttls'), Type.Literal('tls'), Type.Literal('none')])),
  from: Email,
  to: Type.Array(Email, { minItems: 1, maxItems: 50 }),
  user: Type.Optional(Name),
  /** Environment variable of the notifier that holds the SMTP password (never the password itself). */
  passwordEnv: Type.Optional(EnvName),
  /** PEM file of the CA the SMTP server's certificate must chain to (default: the system's). */
  caFile: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })),
}, { additionalProperties: false }));

export const SyslogTarget = lazySchema(() => Type.Object({
  kind: Type.Literal('syslog'),
  host: Host,
  port: Port,
  tls: Type.Optional(Type.Boolean()),
  caFile: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })),
}, { additionalProperties: false }));

export const NotificationTarget = lazySchema(() => Type.Union([WebhookTarget, EmailTarget, SyslogTarget]));
export type NotificationTarget = Static<typeof NotificationTarget>;

export const DigestSettings = lazySchema(() => Type.Object({
  /** Quiet time after the last notice before a group is sent (default 30 s): a storm becomes one message. */
  groupWaitSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 3600 })),
  /** A group waits at most this long however the storm goes on (default 300 s). */
  maxGroupWaitSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 86_400 })),
  /** At most one message per this many minutes on the route (default 60). */
  intervalMinutes: Type.Optional(Type.Integer({ minimum: 0, maximum: 10_080 })),
}, { additionalProperties: false }));
export type DigestSettings = Static<typeof DigestSettings>;

export const NotificationRouteFields = {
  routeId: Id,
  name: PlainName,
  match: NotificationMatch,
  target: NotificationTarget,
  digest: Type.Optional(DigestSettings),
};

export const NotificationRouteAddedV1 = lazySchema(() => Type.Object(NotificationRouteFields, { additionalProperties: false }));
export type NotificationRoute = Static<typeof NotificationRouteAddedV1>;
export const NotificationRouteRemovedV1 = lazySchema(() => Type.Object({ routeId: Id }, { additionalProperties: false }));

/** RPO watch (stream `rpo-<vmId>`, the scheduler): the VM's newest restore point is older than its policy's RPO. */
export const RpoMissedV1 = lazySchema(() => Type.Object({
  vmId: Id,
  policyId: Id,
  rpoMinutes: Type.Integer({ minimum: 1 }),
  /** Its newest restore point's time, null when it has none. */
  lastRestorePointAt: Type.Union([Timestamp, Type.Null()]),
  /** When the RPO ran out (last restore point, or the policy's start, plus the RPO). */
  missedSince: Timestamp,
}, { additionalProperties: false }));

/**
 * Expiry watch (stream `expiry-<kind>-<id>`, the scheduler): a credential with an expiry (API token, TLS certificate) is
 * within its warning time of it (raised once per expiry time: a renewed one warns again).
 */
export const CredentialExpiringV1 = lazySchema(() => Type.Object({
  /** What expires: an API token, or a TLS certificate of the site's security directory. */
  credential: Type.Union([Type.Literal('api-token'), Type.Literal('certificate')]),
  /** The token's id; a certificate's file as an id (`identities/scheduler.pem` → `identities_scheduler`). */
  id: Id,
  /** Whose it is (a token's user; a certificate's subject, e.g. `CN=nats.site-a`) and its name (a token's name; a certificate's file relative to the security directory). */
  owner: Type.String({ minLength: 1, maxLength: 256 }),
  name: Type.String({ minLength: 1, maxLength: 256 }),
  expiresAt: Timestamp,
  /** Whole days left when raised (0: expires within a day). */
  daysLeft: Type.Integer({ minimum: 0 }),
}, { additionalProperties: false }));

/** The VM has a restore point younger than its RPO again. */
export const RpoRestoredV1 = lazySchema(() => Type.Object({
  vmId: Id,
  policyId: Id,
  restorePointId: Id,
  restorePointAt: Timestamp,
}, { additionalProperties: false }));
