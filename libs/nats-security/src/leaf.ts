// The leaf link between a site and the hub (docs/security.md, "Leaf links"). Verified on
// nats-server 2.9.10 (see the notes in docs/security.md):
// - `leafnodes { authorization { users } }` takes no `permissions` (config error "unknown
//   field"), so the hub lists one user per site in its top-level `authorization { users }`
//   and leaves `leafnodes.authorization` out: a leaf connection then authenticates as that
//   user and the server enforces the user's permissions on it (publish = what the site may
//   send to the hub, subscribe = what the hub forwards to the site).
// - `leafnodes { tls { verify: true } }` on the hub plus `tls { cert_file, key_file, ca_file }`
//   on the site's remote: mutual TLS; a remote without a certificate or with one from another
//   CA is refused in the handshake, a wrong password with "Authorization Violation".
// Trust: one hub CA signs the hub's leaf server certificate and every site's leaf client
// certificate (the site CAs stay local to their sites).
import type { Permissions } from './permissions.ts';

export interface LeafPermissionOptions {
  /** Sites this site replicates with (their replication inboxes are named, so no wildcard default). */
  readonly peers: readonly string[];
}

const inboxToken = (site: string, identity: string) => `_INBOX_${site.replace(/-/g, '_')}_${identity.replace(/-/g, '_')}`;

/**
 * The services whose commands the hub may carry to a site (commands through the hub, issue 24):
 * what an operator does — backups, policies, restores, deletions, replication. Each command is
 * checked at the site (signature, key, roles) as if it came from the site's own CLI; the hub's
 * identities sign nothing a site accepts. Not the coordinator (service-to-service commands) and
 * not the gateway (RecoverAccess is for the site's own host).
 */
export const HUB_RELAYED_SERVICES = ['scheduler', 'data-mover', 'replication'] as const;
/** And of the gateway, only four-eyes requests and decisions (never RecoverAccess). */
export const HUB_RELAYED_GATEWAY_COMMANDS = ['RequestApproval', 'DecideApproval'] as const;
/** The command subjects of `site` the hub may send (a service's `.*` or one gateway command each). */
export const hubRelayedCommandSubjects = (site: string, last: '*' | '>'): string[] => [
  ...HUB_RELAYED_SERVICES.map((service) => `cairn.${site}.cmd.${service}.${last}`),
  ...HUB_RELAYED_GATEWAY_COMMANDS.map((name) => `cairn.${site}.cmd.gateway.${name}`),
];
/**
 * What a site's leaf link lets through of the gateway's commands. nats-server 2.9 did not carry a
 * site's interest in one literal gateway command across the leaf link when the leaf user's
 * subscribe permission named that literal subject (no responders at the hub, seen in
 * sites-hub.e2e), while `….gateway.>` carries it: so the link allows the gateway's commands and
 * denies the one that must never cross. The hub's own identities may publish only the two.
 */
const GATEWAY_NEVER_RELAYED = ['RecoverAccess'] as const;
/** The hub identities that may send commands to the sites: the CLI at the hub and its gateway (API). */
export const HUB_COMMAND_SENDERS = ['admin', 'gateway'] as const;

/** What the hub lets the leaf connection of `site` carry: replication, the hub relay's reads of the site's event stream, and commands sent at the hub (with their replies). */
export function leafPermissions(site: string, options: LeafPermissionOptions): Permissions {
  const peers = options.peers;
  const stream = `CAIRN_EVT_${site.toUpperCase().replace(/-/g, '_')}`;
  return {
    // Into the hub: transfers to peers' repl subjects, and answers on inboxes (replies to
    // peers' replication requests and to the hub relay's JetStream API calls).
    publish: { allow: [
      ...peers.map((p) => `cairn.${p}.repl.${site}.>`), ...peers.map((p) => `${inboxToken(p, 'replication')}.>`),
      `${inboxToken('hub', 'hub-relay')}.>`,
      // Replies to the commands the hub's CLI and gateway sent the site.
      ...HUB_COMMAND_SENDERS.map((i) => `${inboxToken('hub', i)}.>`),
    ] },
    // Out to the site: peers' transfers addressed to it, the answers to its replication
    // service's requests, and the hub relay's JetStream API
    // calls on the site's event stream in its domain.
    subscribe: {
      allow: [
        `cairn.${site}.repl.*.>`, `${inboxToken(site, 'replication')}.>`,
        `$JS.${site}.API.STREAM.INFO.${stream}`, `$JS.${site}.API.CONSUMER.CREATE.${stream}`, `$JS.${site}.API.CONSUMER.CREATE.${stream}.>`,
        `$JS.${site}.API.CONSUMER.INFO.${stream}.*`, `$JS.${site}.API.CONSUMER.MSG.NEXT.${stream}.*`, `$JS.${site}.API.CONSUMER.DELETE.${stream}.*`,
        `$JS.ACK.${stream}.>`, `$JS.FC.${stream}.>`,
        // Commands sent at the hub for this site (checked at the site, never trusted for coming from the hub).
        ...HUB_RELAYED_SERVICES.map((service) => `cairn.${site}.cmd.${service}.>`), `cairn.${site}.cmd.gateway.>`,
      ],
      deny: GATEWAY_NEVER_RELAYED.map((name) => `cairn.${site}.cmd.gateway.${name}`),
    },
    allowResponses: false,
  };
}

/**
 * The hub's `authorization { users }` entries for the sites' leaf connections (user + bcrypt or
 * plain password given by the caller). Each may connect only as a leaf node
 * (`allowed_connection_types`): its password and certificate do not open the hub's client port.
 */
export function renderLeafUsers(users: ReadonlyArray<{ readonly site: string; readonly user: string; readonly password: string; readonly permissions: Permissions }>): string {
  const q = (s: string) => JSON.stringify(s);
  const rules = (r: { allow: readonly string[]; deny?: readonly string[] }) => `{ allow: [${r.allow.map(q).join(', ')}]${r.deny?.length ? `, deny: [${r.deny.map(q).join(', ')}]` : ''} }`;
  return users.map((u) => [
    `    # leaf link of site ${u.site}`,
    `    { user: ${q(u.user)}, password: ${q(u.password)}, permissions: {`,
    `        publish: ${rules(u.permissions.publish)}`,
    `        subscribe: ${rules(u.permissions.subscribe)}`,
    '      }, allowed_connection_types: ["LEAFNODE"] }',
  ].join('\n')).join('\n');
}

const q = (s: string) => JSON.stringify(s);

/** The hub's leaf listener: mutual TLS against the hub CA (a site without a hub-CA certificate is refused in the handshake). */
export function renderHubLeafListener(o: { readonly host: string; readonly port: number; readonly cert: string; readonly key: string; readonly ca: string }): string {
  return [
    'leafnodes {',
    `  host: ${q(o.host)}`,
    `  port: ${o.port}`,
    `  tls { cert_file: ${q(o.cert)}, key_file: ${q(o.key)}, ca_file: ${q(o.ca)}, verify: true, timeout: 5 }`,
    '}',
  ].join('\n');
}

/**
 * A site's leaf remote to the hub. With `credentials`: TLS with the site's leaf certificate,
 * trusting only the hub CA, as the site's leaf user; else a plain remote (an insecure hub).
 */
export function renderLeafRemote(hubUrl: string, credentials?: { readonly user: string; readonly password: string; readonly certFile: string; readonly keyFile: string; readonly caFile: string }): string {
  let url = hubUrl;
  let tls = '';
  if (credentials) {
    const u = new URL(hubUrl);
    u.username = encodeURIComponent(credentials.user);
    u.password = encodeURIComponent(credentials.password);
    url = u.toString().replace(/\/$/, '');
    tls = `, tls: { cert_file: ${q(credentials.certFile)}, key_file: ${q(credentials.keyFile)}, ca_file: ${q(credentials.caFile)}, timeout: 5 }`;
  }
  return `leafnodes {\n  reconnect: 1\n  remotes: [ { urls: [ ${q(url)} ]${tls} } ]\n}`;
}
