// Who may publish and subscribe to what on a site's NATS: one identity per service (and the
// operator's `admin`), each allowed only its own subjects. docs/security.md has the matrix.
//
// Subjects (libs/contracts/src/subjects.ts): cairn.<site>.evt.<category>.<streamId>,
// .cmd.<service>.<name>, .progress.<jobId>, .work.<queue>, .query.catalogue.<name>,
// .audit.chain, and cairn.<target>.repl.<source>.<op> between sites. JetStream is reached
// through $JS.API.* (per stream), KV buckets through $KV.<bucket>.*, and replies come back on
// each identity's own inbox prefix (_INBOX_<site>_<identity>), so nobody reads others' replies.
//
// Event subjects: each identity publishes only `cairn.<site>.evt.<category>.>` of the categories
// its event kinds live in, from the writer table (libs/contracts provenance.ts).
//
// Rules every identity shares: nothing outside its site except replication; no stream or
// message deletion, purge or stream update (the event log and the audit chain are append-only
// for services); no subscription to another identity's inbox.

import { GLOBAL_POLICIES_SUBJECT, SITE_HEALTH_SUBJECT, writableCategories } from '@cairn/contracts';
import { hubRelayedCommandSubjects } from './leaf.ts';

export const SERVICE_IDENTITIES = [
  'scheduler', 'snapshot-coordinator', 'data-mover', 'catalogue', 'gateway', 'audit-bridge', 'replication', 'notifier',
] as const;
export type ServiceIdentity = (typeof SERVICE_IDENTITIES)[number];
/** `admin`: the operator's CLI and `cairn up` itself (creates streams, reads everything on its site). */
export type Identity = ServiceIdentity | 'admin';
export const ALL_IDENTITIES: readonly Identity[] = [...SERVICE_IDENTITIES, 'admin'];

/** The hub's own clients (`cairn hub`): the relay copying every site's events, and a catalogue, gateway and admin in site `hub`. */
export const HUB_IDENTITIES = ['hub-relay', 'catalogue', 'gateway', 'admin'] as const;
export type HubIdentity = (typeof HUB_IDENTITIES)[number];
/** An identity of a site or of the hub. */
export type AnyIdentity = Identity | HubIdentity;

export interface SubjectRules {
  readonly allow: readonly string[];
  readonly deny?: readonly string[];
}

export interface Permissions {
  readonly publish: SubjectRules;
  readonly subscribe: SubjectRules;
  /** May answer requests sent to it (publish once to the reply subject of a message it got). */
  readonly allowResponses: boolean;
}

export interface SitePermissionOptions {
  /** Sites this site replicates to or receives from (replication only). Default: any site (`*`). */
  readonly peers?: readonly string[];
}

const token = (site: string) => site.toUpperCase().replace(/-/g, '_');
export const eventStream = (site: string) => `CAIRN_EVT_${token(site)}`;
export const workStream = (site: string) => `CAIRN_WORK_${token(site)}`;
export const auditStream = (site: string) => `CAIRN_AUDIT_${token(site)}`;

/** The inbox prefix an identity must use (connect option `inboxPrefix`); it may subscribe only there. */
export function inboxPrefix(site: string, identity: AnyIdentity): string {
  return `_INBOX_${site.replace(/-/g, '_')}_${identity.replace(/-/g, '_')}`;
}

/** Destructive JetStream calls no service may make. */
const DESTRUCTIVE = [
  '$JS.API.STREAM.DELETE.>', '$JS.API.STREAM.PURGE.>', '$JS.API.STREAM.MSG.DELETE.>', '$JS.API.STREAM.UPDATE.>',
  '$JS.API.STREAM.RESTORE.>', '$JS.API.STREAM.SNAPSHOT.>', '$JS.API.ACCOUNT.>', '$JS.API.SERVER.>', '$JS.API.META.>',
];

interface StreamUse {
  readonly create?: boolean;
  /** Stream info, get message by sequence or last-by-subject, direct get. */
  readonly read?: boolean;
  /** Durable or ephemeral consumers: create, info, next, ack, delete. */
  readonly consume?: boolean;
}

function streamApi(stream: string, use: StreamUse): string[] {
  const out: string[] = [];
  if (use.create) out.push(`$JS.API.STREAM.CREATE.${stream}`);
  if (use.read || use.consume) out.push(`$JS.API.STREAM.INFO.${stream}`);
  if (use.read) out.push(`$JS.API.STREAM.MSG.GET.${stream}`, `$JS.API.DIRECT.GET.${stream}`, `$JS.API.DIRECT.GET.${stream}.>`);
  if (use.consume) {
    out.push(
      `$JS.API.CONSUMER.CREATE.${stream}`, `$JS.API.CONSUMER.CREATE.${stream}.>`, `$JS.API.CONSUMER.DURABLE.CREATE.${stream}.*`,
      `$JS.API.CONSUMER.INFO.${stream}.*`, `$JS.API.CONSUMER.MSG.NEXT.${stream}.*`, `$JS.API.CONSUMER.DELETE.${stream}.*`,
      `$JS.API.CONSUMER.NAMES.${stream}`, `$JS.API.CONSUMER.LIST.${stream}`, `$JS.ACK.${stream}.>`, `$JS.FC.${stream}.>`,
    );
  }
  return out;
}

/** A KV bucket: create/bind, read, watch; write the keys under `keys` (default all); never delete or reconfigure it. */
function kv(bucket: string, keys: readonly string[] = ['>']): string[] {
  return [...keys.map((k) => `$KV.${bucket}.${k}`), ...streamApi(`KV_${bucket}`, { create: true, read: true, consume: true })];
}

/** Command idempotency entries are `<service>.<token>`: a service writes only its own. */
const commandReplies = (service: string) => kv('cairn_command_replies', [`${service}.>`]);
/** Processed-message entries are `<durable>.<id>`: a consumer writes only its own durables'. */
const processed = (durables: readonly string[]) => kv('cairn_processed', durables.map((d) => `${d}.>`));

const under = (site: string) => `cairn.${site}`;

/** The event subjects an identity may publish: the categories of the event kinds the writer table gives it. */
const eventSubjects = (site: string, id: Identity) => writableCategories(id).map((c) => `${under(site)}.evt.${c}.>`);

/** The permissions of every identity of `site`. */
export function sitePermissions(site: string, options: SitePermissionOptions = {}): Record<Identity, Permissions> {
  const s = under(site);
  const evt = eventStream(site);
  const work = workStream(site);
  const audit = auditStream(site);
  const siteKv = site.replace(/-/g, '_');
  const base = ['$JS.API.INFO', '$JS.API.STREAM.NAMES'];
  // Reading and appending the event log (append = JetStream publish on an event subject).
  const eventLog = streamApi(evt, { create: true, read: true, consume: true });
  const inbox = (id: Identity) => `${inboxPrefix(site, id)}.>`;
  const peers = options.peers?.length ? options.peers : ['*'];

  const make = (id: Identity, publish: string[], subscribe: string[], allowResponses = true): Permissions => ({
    publish: { allow: [...new Set([...base, ...publish])], deny: id === 'admin' ? [] : DESTRUCTIVE },
    subscribe: { allow: [...new Set([inbox(id), ...subscribe])] },
    allowResponses,
  });

  return {
    scheduler: make('scheduler', [
      ...eventSubjects(site, 'scheduler'), ...eventLog, ...commandReplies('scheduler'), ...kv(`cairn_leases_${siteKv}`),
      `${s}.work.>`, ...streamApi(work, { create: true, read: true }),
      `${s}.cmd.snapshot-coordinator.>`,
      // A policy's testRestore schedule: the boot test is asked of a data mover.
      `${s}.cmd.data-mover.TestRestore`,
    ], [`${s}.cmd.scheduler.>`]),
    'snapshot-coordinator': make('snapshot-coordinator', [
      ...eventSubjects(site, 'snapshot-coordinator'), ...eventLog, ...commandReplies('snapshot-coordinator'),
      // Pulls the files it writes into a guest from the data mover (WriteGuestFiles).
      `${s}.filestream.*`,
    ], [`${s}.cmd.snapshot-coordinator.>`]),
    'data-mover': make('data-mover', [
      ...eventSubjects(site, 'data-mover'), ...eventLog, ...commandReplies('data-mover'), ...processed(['data-mover', 'data-mover-retention', 'data-mover-file-index', 'data-mover-file-index-expiry']),
      `${s}.progress.>`, ...streamApi(work, { create: true, consume: true }),
      // Restore jobs: the mover that records a request queues its work, and has a restored
      // VM defined on a libvirt hypervisor by the coordinator.
      // An in-place restore's safety backup is asked of the scheduler like any backup.
      `${s}.work.restores`, `${s}.cmd.snapshot-coordinator.DefineRestoredVm`, `${s}.cmd.snapshot-coordinator.PrepareInPlaceRestore`,
      // Instant recovery onto libvirt: its domain defined, mirrored, pivoted, removed by the coordinator.
      `${s}.cmd.snapshot-coordinator.ManageInstantDomain`,
      `${s}.cmd.scheduler.RequestBackup`,
      // Files restored into a VM: the coordinator holds the guest agent.
      `${s}.cmd.snapshot-coordinator.WriteGuestFiles`,
    ], [`${s}.cmd.data-mover.>`, `${s}.filestream.*`]),
    // Builds the views from the log and answers queries; writes only the events it refused (ProvenanceViolation).
    catalogue: make('catalogue', [
      ...eventSubjects(site, 'catalogue'), ...streamApi(evt, { read: true, consume: true }), ...kv(`cairn_checkpoints_${siteKv}`),
    ], [`${s}.query.catalogue.>`, `${s}.cmd.catalogue.>`]),
    // The API: sends commands to every service, asks the catalogue, reports progress; may
    // record security events.
    gateway: make('gateway', [
      `${s}.cmd.*.*`, `${s}.query.catalogue.>`, ...eventSubjects(site, 'gateway'), ...eventLog,
      ...streamApi(work, { read: true }), ...streamApi(audit, { read: true }), ...commandReplies('gateway'),
      // File downloads: pulled chunk by chunk from the data mover that opened them.
      `${s}.filestream.*`,
    ], [`${s}.progress.>`, `${s}.cmd.gateway.>`]),
    // Read-only: reads the log, writes only its own hash chain, checkpoints and the events it refused.
    'audit-bridge': make('audit-bridge', [
      ...eventSubjects(site, 'audit-bridge'), ...streamApi(evt, { read: true, consume: true }),
      `${s}.audit.chain`, ...streamApi(audit, { create: true, read: true, consume: true }),
      ...kv(`cairn_audit_${siteKv}`),
    ], [], false),
    // Read-only like the audit bridge: follows the log, keeps its state in its own KV bucket,
    // writes only the events it refused; it talks to the outside world (SMTP, webhooks, syslog).
    notifier: make('notifier', [
      ...eventSubjects(site, 'notifier'), ...streamApi(evt, { read: true, consume: true }), ...kv(`cairn_notifier_${siteKv}`),
    ], [], false),
    // The one identity that crosses sites: sends transfers to peers' repl subjects and
    // serves its own; reads peers' JetStream through their domains.
    replication: make('replication', [
      ...eventSubjects(site, 'replication'), ...eventLog, ...commandReplies('replication'),
      ...kv(`cairn_replication_${siteKv}`),
      ...peers.map((p) => `cairn.${p}.repl.${site}.>`),
    ], [`${s}.cmd.replication.>`, `${s}.repl.*.*`, ...peers.map((p) => `cairn.${p}.evt.>`)]),
    // The operator (CLI, `cairn up`): everything on its own site, including stream admin.
    admin: make('admin', [`${s}.>`, '$JS.API.>', '$KV.>', '$JS.ACK.>', '$JS.FC.>'], [`${s}.>`]),
  };
}

/** The site name of the hub (`cairn hub`): its JetStream domain, its stream CAIRN_EVT_HUB. */
export const HUB = 'hub';

/**
 * The permissions of the hub's own identities on the hub's nats-server. The catalogue, gateway
 * and admin are those of a site named `hub` (the catalogue reads CAIRN_EVT_HUB, which holds
 * every site's events on `cairn.hub.sites.<site>`). The hub relay reads each site's event
 * stream in the site's domain (`$JS.<site>.API`, the calls the sites' leaf users let through,
 * see leafPermissions) and appends to `cairn.hub.sites.*` of the hub's stream; nothing else.
 */
export function hubPermissions(sites: readonly string[]): Record<HubIdentity, Permissions> {
  const hub = sitePermissions(HUB);
  const hubStream = eventStream(HUB);
  const siteReads = sites.flatMap((site) => {
    const stream = eventStream(site);
    const api = `$JS.${site}.API`;
    return [
      `${api}.STREAM.INFO.${stream}`, `${api}.CONSUMER.CREATE.${stream}`, `${api}.CONSUMER.CREATE.${stream}.>`,
      `${api}.CONSUMER.INFO.${stream}.*`, `${api}.CONSUMER.MSG.NEXT.${stream}.*`, `${api}.CONSUMER.DELETE.${stream}.*`,
      `$JS.ACK.${stream}.>`, `$JS.FC.${stream}.>`,
    ];
  });
  return {
    'hub-relay': {
      publish: {
        allow: [...new Set(['$JS.API.INFO', `${HUB_SITES}.*`, ...streamApi(hubStream, { read: true }), ...siteReads])],
        deny: DESTRUCTIVE,
      },
      subscribe: { allow: [`${inboxPrefix(HUB, 'hub-relay')}.>`] },
      allowResponses: false,
    },
    catalogue: hub.catalogue,
    // The gateway relays the hub's site health report (GET /v1/sites/health) and global policy report (GET /v1/global-policies).
    gateway: withSiteCommands({ ...hub.gateway, publish: { ...hub.gateway.publish, allow: [...hub.gateway.publish.allow, SITE_HEALTH_SUBJECT, GLOBAL_POLICIES_SUBJECT] } }, sites),
    admin: withSiteCommands(hub.admin, sites),
  };
}

/** The hub's CLI and gateway may send the sites the commands their leaf links carry (checked at each site). */
function withSiteCommands(p: Permissions, sites: readonly string[]): Permissions {
  const commands = sites.flatMap((site) => hubRelayedCommandSubjects(site, '*'));
  return { ...p, publish: { ...p.publish, allow: [...p.publish.allow, ...commands] } };
}

/** Where the hub relay copies each site's events (libs/eventlog HUB_SITES_PREFIX). */
const HUB_SITES = 'cairn.hub.sites';
