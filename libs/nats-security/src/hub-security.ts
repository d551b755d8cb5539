// The hub's NATS security (`cairn hub init`, `cairn hub add-site`, `cairn hub`):
//
//   <dir>/ca.pem, ca-key.pem          the hub CA: signs the hub's server certificate, its own
//                                     identities' client certificates and every site's leaf
//                                     client certificate (the sites' own CAs stay at the sites)
//   <dir>/server.pem, server-key.pem  the hub nats-server's certificate (client port and leaf listener)
//   <dir>/identities/<id>.nk, .pem    hub-relay, catalogue, gateway, admin (nkey + client certificate)
//   <dir>/nats-security.conf          tls { verify_and_map: true } + authorization { users }: the hub's
//                                     identities (certificate subject + hash of the password their
//                                     nkey makes) and one leaf user per site
//                                     (bcrypt hash of its password, leafPermissions, leaf only)
//   <dir>/site.json                   site "hub", role "hub", public nkeys, the leaf users
//                                     (user, bcrypt hash, peers) — no password, no seed
//
// A site's leaf credential bundle (`cairn hub add-site <site> --out <dir>`), handed to the
// site's operator and given to `cairn up --hub <url> --hub-credentials <dir>`:
//
//   <out>/leaf.json                   site, leaf user, password (0600), peers (the sites it
//                                     replicates with: its leaf user may send to them only, and
//                                     its receiver serves exactly them)
//   <out>/leaf.pem, leaf-key.pem      the site's leaf client certificate (hub CA), key 0600
//   <out>/hub-ca.pem                  the hub CA certificate (the only CA the site's remote trusts)
//
// The hub keeps no password: issuing the bundle again makes a new password (and certificate),
// which replaces the old one; a running hub applies it by itself (renderHubSecurity, reloaded
// by tools/cli/src/stack/hub-reload.ts).
import { createHash, randomBytes } from 'node:crypto';
import { chmod, copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { connect as tcpConnect } from 'node:net';
import { join, resolve } from 'node:path';
import { makeEscrowKey, type EscrowKeyStatement } from './key-escrow.ts';
import bcrypt from 'bcryptjs';
import { issueCertificate } from './pki.ts';
import { leafPermissions, renderLeafUsers } from './leaf.ts';
import { HUB, HUB_IDENTITIES, hubPermissions, type HubIdentity } from './permissions.ts';
import { initSecurityDir, renderNatsSecurityConfig, type LeafSiteEntry, type SiteFile, type SiteSecurity } from './site-security.ts';
import type { AnyIdentity } from './permissions.ts';
import type { CertificateFiles } from './pki.ts';

export interface HubSecurityOptions {
  readonly dir: string;
  /** Names and addresses the hub is reached at, by its clients and by the sites (default localhost, 127.0.0.1). */
  readonly hosts?: readonly string[];
  /** The operator's own CA instead of a new one. */
  readonly ca?: CertificateFiles;
  /** Sites the relay reads besides those with a leaf user (`cairn hub --sites`). */
  readonly sites?: readonly string[];
}

export interface HubSecurity extends SiteSecurity {
  /** The hub's leaf listener: its certificate and the hub CA that every leaf client certificate must come from. */
  readonly leafTls: { readonly cert: string; readonly key: string; readonly ca: string };
  /** Sites with a leaf user. */
  readonly leafSites: readonly string[];
  /** Every site the relay may read (leaf users and `sites`). */
  readonly sites: readonly string[];
}

export interface LeafCredentials {
  readonly site: string;
  readonly user: string;
  readonly password: string;
  readonly peers?: readonly string[];
  /** The tags the hub gave the site (global policies may select by them); none in older bundles. */
  readonly tags: readonly string[];
  /** The hub's id (`hubIdOf` its CA certificate): global policy statements name it. */
  readonly hubId: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string;
  /**
   * The site's escrow key (key escrow for disaster recovery): its X25519 private key file and
   * the statement of its public key signed by the hub CA. Absent in bundles made before escrow.
   */
  readonly escrow?: { readonly keyFile: string; readonly statement: EscrowKeyStatement };
}

interface LeafFile { readonly version: 1; readonly site: string; readonly user: string; readonly password: string; readonly peers?: readonly string[]; readonly tags?: readonly string[]; readonly hub?: string }

/** A hub's id: the SHA-256 of its CA certificate (PEM text, trimmed), hex, first 32 characters. */
export function hubIdOf(caPem: string): string {
  return createHash('sha256').update(caPem.trim()).digest('hex').slice(0, 32);
}

/** The tags of each site as the hub's site.json holds them (`cairn hub add-site --tag`). */
export async function hubSiteTags(dir: string): Promise<Record<string, readonly string[]>> {
  const file = JSON.parse(await readFile(join(resolve(dir), 'site.json'), 'utf8')) as SiteFile;
  return Object.fromEntries(Object.entries(file.leafSites ?? {}).map(([site, e]) => [site, [...(e.tags ?? [])]]));
}

const TAG = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

const SITE = /^[a-z][a-z0-9-]{0,30}$/;
export const leafUser = (site: string) => `leaf-${site}`;

const peersOf = (file: SiteFile, site: string): string[] => [...(file.leafSites?.[site]?.peers ?? [])];

function hubRules(file: SiteFile, extraSites?: readonly string[]) {
  const leaf = Object.keys(file.leafSites ?? {}).sort();
  const sites = [...new Set([...leaf, ...(extraSites ?? [])])];
  const permissions = hubPermissions(sites);
  return {
    sites,
    permissions: (id: AnyIdentity) => permissions[id as HubIdentity],
    extraUsers: renderLeafUsers(leaf.map((site) => ({
      site, user: file.leafSites![site]!.user, password: file.leafSites![site]!.passwordHash,
      permissions: leafPermissions(site, { peers: peersOf(file, site) }),
    }))),
  };
}

export interface RenderedHubSecurity {
  /** The nats-server include text, as `initHubSecurity` writes it to nats-security.conf. */
  readonly config: string;
  /** The sites' leaf users as site.json holds them (hashes only). */
  readonly leafSites: Readonly<Record<string, LeafSiteEntry>>;
  /** Every site the relay may read (leaf users and `sites`). */
  readonly sites: readonly string[];
}

/**
 * The hub's nats-server security config as it is now in `dir`'s site.json (after a
 * `cairn hub add-site`), rendered without writing anything: a running hub reloads it.
 */
export async function renderHubSecurity(dir: string, sites?: readonly string[]): Promise<RenderedHubSecurity> {
  const d = resolve(dir);
  const file = JSON.parse(await readFile(join(d, 'site.json'), 'utf8')) as SiteFile;
  if (file.role !== 'hub') throw new Error(`${d} holds the security material of site ${file.site}, not of the hub`);
  const r = hubRules(file, sites);
  const config = renderNatsSecurityConfig({
    tls: { cert: join(d, 'server.pem'), key: join(d, 'server-key.pem'), ca: join(d, 'ca.pem') },
    site: HUB,
    users: Object.entries(file.identities).map(([identity, { connectHash }]) => {
      if (!connectHash) throw new Error(`${d}/site.json has no connect hash for ${identity}: run cairn hub init (or start the hub) once to add it`);
      return { identity, connectHash, permissions: r.permissions(identity as AnyIdentity) };
    }),
    ...(r.extraUsers ? { extraUsers: r.extraUsers } : {}),
  });
  return { config, leafSites: { ...(file.leafSites ?? {}) }, sites: r.sites };
}

/** Creates what is missing of the hub's material in `dir` and (re)writes its nats-server config; idempotent. */
export async function initHubSecurity(options: HubSecurityOptions, update?: (file: SiteFile) => SiteFile | Promise<SiteFile>): Promise<HubSecurity> {
  let sites: string[] = [];
  const security = await initSecurityDir({
    dir: options.dir, site: HUB, role: 'hub', identities: HUB_IDENTITIES,
    ...(options.hosts ? { hosts: options.hosts } : {}), ...(options.ca ? { ca: options.ca } : {}),
    ...(update ? { update } : {}),
    render: (file) => {
      const r = hubRules(file, options.sites);
      sites = r.sites;
      return r;
    },
  });
  const file = JSON.parse(await readFile(join(security.dir, 'site.json'), 'utf8')) as SiteFile;
  return {
    ...security,
    leafTls: { cert: join(security.dir, 'server.pem'), key: join(security.dir, 'server-key.pem'), ca: join(security.dir, 'ca.pem') },
    leafSites: Object.keys(file.leafSites ?? {}).sort(),
    sites,
  };
}

/** The allowed gaps `cairn hub add-site --allowed-gap` recorded per site in the hub's site.json (none when it has none). */
export async function registeredAllowedGaps(dir: string): Promise<ReadonlyMap<string, number>> {
  const text = await readFile(join(resolve(dir), 'site.json'), 'utf8').catch(() => undefined);
  if (!text) return new Map();
  const file = JSON.parse(text) as SiteFile;
  return new Map(Object.entries(file.leafSites ?? {}).flatMap(([site, e]) => (typeof e.allowedGapMs === 'number' ? [[site, e.allowedGapMs] as const] : [])));
}

/** Opens the hub's material (`initHubSecurity` without creating anything new but the config). */
export async function loadHubSecurity(dir: string, sites?: readonly string[]): Promise<HubSecurity> {
  const file = JSON.parse(await readFile(join(resolve(dir), 'site.json'), 'utf8').catch(() => {
    throw new Error(`no hub security material in ${dir} (run cairn hub init)`);
  })) as SiteFile;
  if (file.role !== 'hub') throw new Error(`${dir} holds the security material of site ${file.site}, not of the hub`);
  return initHubSecurity({ dir, hosts: file.hosts, ...(sites ? { sites } : {}) });
}

/**
 * Registers `site` at the hub (a leaf user with a new random password, stored bcrypt-hashed)
 * and writes its credential bundle to `out`: the password, a leaf client certificate signed by
 * the hub CA, and the hub CA. Issuing again replaces the password and certificate.
 */
export async function addLeafSite(o: { readonly dir: string; readonly site: string; readonly out: string; readonly peers: readonly string[]; readonly tags?: readonly string[]; readonly hubUrl?: string; readonly hosts?: readonly string[]; readonly allowedGapMs?: number }): Promise<{ hub: HubSecurity; bundle: LeafCredentials; bundleDir: string }> {
  if (!SITE.test(o.site) || o.site === HUB) throw new Error(`not a site name: ${JSON.stringify(o.site)} (lower case letters, digits and -, not "hub")`);
  if (o.allowedGapMs !== undefined && !(Number.isInteger(o.allowedGapMs) && o.allowedGapMs >= 1000)) throw new Error(`an allowed gap is at least 1 s, not ${o.allowedGapMs} ms`);
  for (const p of o.peers) if (!SITE.test(p) || p === o.site) throw new Error(`not a peer site: ${JSON.stringify(p)}`);
  const tags = [...new Set(o.tags ?? [])];
  for (const t of tags) if (!TAG.test(t)) throw new Error(`not a tag: ${JSON.stringify(t)} (letters, digits, . _ -; at most 63)`);
  const password = randomBytes(24).toString('base64url');
  const passwordHash = await bcrypt.hash(password, 11);
  const hub = await initHubSecurity({ dir: o.dir, ...(o.hosts ? { hosts: o.hosts } : {}) }, (file) => ({
    ...file,
    leafSites: {
      ...(file.leafSites ?? {}),
      [o.site]: {
        user: leafUser(o.site), passwordHash, peers: [...o.peers], ...(tags.length ? { tags } : {}), issuedAt: new Date().toISOString(),
        // Issued again without --allowed-gap: the gap set before stays.
        ...(o.allowedGapMs ?? file.leafSites?.[o.site]?.allowedGapMs ? { allowedGapMs: o.allowedGapMs ?? file.leafSites?.[o.site]?.allowedGapMs } : {}),
      } satisfies LeafSiteEntry,
    },
  }));
  const out = resolve(o.out);
  await mkdir(out, { recursive: true, mode: 0o700 });
  await chmod(out, 0o700);
  await rm(join(out, 'leaf.pem'), { force: true });
  const cert = await issueCertificate({ cert: hub.caFile, key: join(hub.dir, 'ca-key.pem') }, out, { commonName: `leaf.${o.site}`, kind: 'client', fileName: 'leaf' });
  await rm(join(out, 'ca.srl'), { force: true });
  await copyFile(hub.caFile, join(out, 'hub-ca.pem'));
  const leaf: LeafFile = { version: 1, site: o.site, user: leafUser(o.site), password, peers: [...o.peers], ...(tags.length ? { tags } : {}), ...(o.hubUrl ? { hub: o.hubUrl } : {}) };
  await writeFile(join(out, 'leaf.json'), JSON.stringify(leaf, null, 2) + '\n', { mode: 0o600 });
  await chmod(join(out, 'leaf.json'), 0o600);
  // The site's escrow key pair: the private key only in the bundle, the public key signed by the hub CA.
  const escrow = makeEscrowKey(o.site, await readFile(join(hub.dir, 'ca-key.pem'), 'utf8'));
  await writeFile(join(out, 'escrow-key.pem'), escrow.privateKeyPem, { mode: 0o600 });
  await chmod(join(out, 'escrow-key.pem'), 0o600);
  await writeFile(join(out, 'escrow.json'), JSON.stringify(escrow.statement, null, 2) + '\n');
  return {
    hub, bundleDir: out,
    bundle: {
      site: o.site, user: leaf.user, password, ...(leaf.peers ? { peers: leaf.peers } : {}), tags, hubId: hubIdOf(await readFile(hub.caFile, 'utf8')), certFile: cert.cert, keyFile: cert.key, caFile: join(out, 'hub-ca.pem'),
      escrow: { keyFile: join(out, 'escrow-key.pem'), statement: escrow.statement },
    },
  };
}

/** Reads a site's leaf credential bundle (`cairn up --hub-credentials <dir>`). */
export async function loadLeafCredentials(dir: string): Promise<LeafCredentials> {
  const d = resolve(dir);
  const f = JSON.parse(await readFile(join(d, 'leaf.json'), 'utf8').catch((e: Error) => {
    throw new Error(`no leaf credentials in ${d} (leaf.json: ${e.message}); the hub's operator makes them with \`cairn hub add-site <site> --out <dir>\``);
  })) as LeafFile;
  if (f.version !== 1 || !f.site || !f.user || !f.password) throw new Error(`${join(d, 'leaf.json')} is not a Cairn leaf credential file`);
  const statement = await readFile(join(d, 'escrow.json'), 'utf8').then((t) => JSON.parse(t) as EscrowKeyStatement, () => undefined);
  const hubId = hubIdOf(await readFile(join(d, 'hub-ca.pem'), 'utf8').catch((e: Error) => {
    throw new Error(`no hub CA in ${d} (hub-ca.pem: ${e.message}); the hub's operator makes the bundle with \`cairn hub add-site <site> --out <dir>\``);
  }));
  return {
    site: f.site, user: f.user, password: f.password, ...(f.peers ? { peers: f.peers } : {}), tags: [...(f.tags ?? [])], hubId, certFile: join(d, 'leaf.pem'), keyFile: join(d, 'leaf-key.pem'), caFile: join(d, 'hub-ca.pem'),
    ...(statement ? { escrow: { keyFile: join(d, 'escrow-key.pem'), statement } } : {}),
  };
}

/**
 * What a hub's leaf listener asks for, from the INFO it sends first (before any TLS): whether
 * it needs TLS (`authRequired` is always true on a 2.9 leaf listener, so it tells nothing).
 * `undefined` when it cannot be reached within `timeoutMs`.
 */
export function probeLeafListener(url: string, timeoutMs = 3000): Promise<{ tlsRequired: boolean; authRequired: boolean } | undefined> {
  const u = new URL(url);
  return new Promise((done) => {
    const s = tcpConnect({ host: u.hostname, port: Number(u.port || 7422) });
    let buf = '';
    const finish = (v: { tlsRequired: boolean; authRequired: boolean } | undefined) => { clearTimeout(t); s.destroy(); done(v); };
    const t = setTimeout(() => finish(undefined), timeoutMs);
    s.on('data', (d) => {
      buf += d.toString('utf8');
      const line = buf.split('\r\n')[0]!;
      if (!buf.includes('\r\n')) return;
      try {
        const info = JSON.parse(line.replace(/^INFO\s+/, '')) as { tls_required?: boolean; auth_required?: boolean };
        finish({ tlsRequired: Boolean(info.tls_required), authRequired: Boolean(info.auth_required) });
      } catch { finish(undefined); }
    });
    s.on('error', () => finish(undefined));
  });
}
