// A site's NATS security material, created once by `cairn site init` (or `cairn up --secure`):
//
//   <dir>/ca.pem, ca-key.pem          the site CA (or the operator's CA certificate, key elsewhere)
//   <dir>/server.pem, server-key.pem   the nats-server certificate (hosts as subjectAltName)
//   <dir>/identities/<id>.nk           the identity's nkey seed (0600): its NATS credential
//   <dir>/identities/<id>.pem, -key    its client certificate (mutual TLS)
//   <dir>/nats-security.conf           tls { verify_and_map: true } + authorization { users } for nats-server
//   <dir>/site.json                    site, hosts, public nkeys, connect-password hashes (no secrets)
//
// The server config holds certificate subjects and bcrypt hashes of passwords only the nkeys
// can make (identity-binding.ts): a leaked config lets nobody in.
import { createUser } from '@nats-io/nkeys';
import { nativeSigner } from '@cairn/eventlog/ed25519';
import { chmod, copyFile, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createCertificateAuthority, issueCertificate, type CertificateFiles } from './pki.ts';
import { hashIdentityPassword, identityPassword, identityUser } from './identity-binding.ts';
import { ALL_IDENTITIES, inboxPrefix, sitePermissions, type AnyIdentity, type Identity, type Permissions, type SitePermissionOptions } from './permissions.ts';

export interface SiteSecurityOptions extends SitePermissionOptions {
  readonly dir: string;
  readonly site: string;
  /** Names and addresses nats-server is reached at (default localhost, 127.0.0.1). */
  readonly hosts?: readonly string[];
  /** The operator's own CA instead of a new one (its key signs the server and client certificates). */
  readonly ca?: CertificateFiles;
  /** Identities to create (default: every service and admin). */
  readonly identities?: readonly Identity[];
}

export interface SiteFile {
  readonly version: 1;
  readonly site: string;
  /** `hub` for the material of `cairn hub` (hub-security.ts). */
  readonly role?: 'site' | 'hub';
  readonly hosts: readonly string[];
  readonly peers?: readonly string[];
  /** Each identity's public nkey, and the bcrypt hash of the connect password that nkey makes (identity-binding.ts). */
  readonly identities: Readonly<Record<string, { readonly nkey: string; readonly connectHash?: string }>>;
  /** Hub only: the sites' leaf users (bcrypt hash of each password, never the password). */
  readonly leafSites?: Readonly<Record<string, LeafSiteEntry>>;
}

export interface LeafSiteEntry {
  readonly user: string;
  /** bcrypt (`$2b$…`), as nats-server checks it. */
  readonly passwordHash: string;
  /** Sites it replicates with (default: every other site of the hub). */
  readonly peers?: readonly string[];
  /** The site's tags (`cairn hub add-site --tag`): global policies may select sites by them. */
  readonly tags?: readonly string[];
  readonly issuedAt: string;
  /** How long the hub lets it go without contact before reporting it silent (`cairn hub add-site --allowed-gap`; default the hub's). */
  readonly allowedGapMs?: number;
}

export interface IdentityCredentials {
  readonly identity: AnyIdentity;
  readonly site: string;
  readonly seedFile: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string;
  readonly inboxPrefix: string;
}

export interface SiteSecurity {
  readonly dir: string;
  readonly site: string;
  readonly caFile: string;
  /** Path of the nats-server include file (tls + authorization). */
  readonly configFile: string;
  readonly identities: readonly AnyIdentity[];
  credentials(identity: AnyIdentity): IdentityCredentials;
}

const exists = (p: string) => stat(p).then(() => true, () => false);
const q = (s: string) => JSON.stringify(s);

function renderRules(r: { allow: readonly string[]; deny?: readonly string[] }): string {
  const parts = [`allow: [${r.allow.map(q).join(', ')}]`];
  if (r.deny?.length) parts.push(`deny: [${r.deny.map(q).join(', ')}]`);
  return `{ ${parts.join(', ')} }`;
}

/**
 * nats-server config text: mutual TLS with each client certificate mapped to its identity's
 * user, whose password only that identity's nkey can make (identity-binding.ts), with its permissions.
 */
export function renderNatsSecurityConfig(o: {
  readonly tls: { readonly cert: string; readonly key: string; readonly ca: string };
  readonly site: string;
  readonly users: ReadonlyArray<{ readonly identity: string; readonly connectHash: string; readonly permissions: Permissions }>;
  /** More `authorization { users }` entries, rendered (the hub's leaf users, renderLeafUsers). */
  readonly extraUsers?: string;
}): string {
  const users = o.users.map((u) => [
    `    # ${u.identity}`,
    `    { user: ${q(identityUser(u.identity, o.site))}, password: ${q(u.connectHash)}, permissions: {`,
    `        publish: ${renderRules(u.permissions.publish)}`,
    `        subscribe: ${renderRules(u.permissions.subscribe)}`,
    ...(u.permissions.allowResponses ? ['        allow_responses: true'] : []),
    '    } }',
  ].join('\n'));
  return [
    '# Generated by Cairn (libs/nats-security): mutual TLS, each certificate mapped to its identity,',
    '# whose password only its nkey makes; least-privilege permissions.',
    'tls {',
    `  cert_file: ${q(o.tls.cert)}`,
    `  key_file: ${q(o.tls.key)}`,
    `  ca_file: ${q(o.tls.ca)}`,
    '  verify: true',
    '  verify_and_map: true',
    '  timeout: 5',
    '}',
    'authorization {',
    '  timeout: 5',
    '  users: [',
    users.join('\n'),
    ...(o.extraUsers ? [o.extraUsers] : []),
    '  ]',
    '}',
    '',
  ].join('\n');
}

/** Creates what is missing of a site's security material in `dir` and returns it; idempotent. */
export async function initSiteSecurity(options: SiteSecurityOptions): Promise<SiteSecurity> {
  return initSecurityDir({
    dir: options.dir, site: options.site, role: 'site', identities: options.identities ?? ALL_IDENTITIES,
    ...(options.hosts ? { hosts: options.hosts } : {}), ...(options.ca ? { ca: options.ca } : {}), ...(options.peers ? { peers: options.peers } : {}),
    render: (file) => {
      const permissions = sitePermissions(options.site, { ...(file.peers ? { peers: file.peers } : {}) });
      return { permissions: (id) => permissions[id as Identity] };
    },
  });
}

/** @internal The CA, server certificate, identities and nats-server config of a site or of the hub. */
export async function initSecurityDir(options: {
  readonly dir: string;
  readonly site: string;
  readonly role: 'site' | 'hub';
  readonly identities: readonly AnyIdentity[];
  readonly hosts?: readonly string[];
  readonly ca?: CertificateFiles;
  readonly peers?: readonly string[];
  /** Changes the file before it is written (the hub's leaf users). */
  readonly update?: (file: SiteFile) => SiteFile | Promise<SiteFile>;
  readonly render: (file: SiteFile) => { permissions: (identity: AnyIdentity) => Permissions; extraUsers?: string };
}): Promise<SiteSecurity> {
  const dir = resolve(options.dir);
  const idDir = join(dir, 'identities');
  await mkdir(idDir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const hosts = options.hosts?.length ? [...options.hosts] : ['localhost', '127.0.0.1'];

  let ca: CertificateFiles;
  if (options.ca) {
    if (!(await exists(join(dir, 'ca.pem')))) await copyFile(options.ca.cert, join(dir, 'ca.pem'));
    ca = { cert: join(dir, 'ca.pem'), key: resolve(options.ca.key) };
  } else if (await exists(join(dir, 'ca-key.pem'))) {
    ca = { cert: join(dir, 'ca.pem'), key: join(dir, 'ca-key.pem') };
  } else {
    ca = await createCertificateAuthority(dir, `Cairn ${options.site} CA`);
  }
  if (!(await exists(join(dir, 'server.pem')))) {
    await issueCertificate(ca, dir, { commonName: `nats.${options.site}`, kind: 'server', hosts, fileName: 'server' });
  }

  const site: SiteFile = await readFile(join(dir, 'site.json'), 'utf8').then((t) => JSON.parse(t) as SiteFile, () => ({
    version: 1, site: options.site, ...(options.role === 'hub' ? { role: 'hub' as const } : {}), hosts,
    ...(options.peers ? { peers: options.peers } : {}), identities: {},
  }));
  if (site.site !== options.site) throw new Error(`${dir} holds the security material of ${site.role === 'hub' ? 'the hub' : `site ${site.site}`}, not ${options.role === 'hub' ? 'the hub' : `site ${options.site}`}`);
  if ((site.role ?? 'site') !== options.role) throw new Error(`${dir} holds the security material of a ${site.role ?? 'site'}, not of a ${options.role}`);
  const ids: Record<string, { nkey: string; connectHash?: string }> = { ...site.identities };
  for (const id of options.identities) {
    const seedFile = join(idDir, `${id}.nk`);
    if (!(await exists(seedFile))) {
      const kp = createUser();
      await writeFile(seedFile, new TextDecoder().decode(kp.getSeed()) + '\n', { mode: 0o600, flag: 'wx' });
    }
    const seed = (await readFile(seedFile, 'utf8')).trim();
    // Node's ed25519: tweetnacl's key-pair derivation cost ~8 ms of CPU per identity at every `cairn up`.
    const nkey = nativeSigner(seed).publicKey;
    // The hash is kept while the nkey stays: a second run writes the same config.
    const known = ids[id];
    const connectHash = known?.nkey === nkey && known.connectHash ? known.connectHash : await hashIdentityPassword(identityPassword(seed, id, options.site));
    ids[id] = { nkey, connectHash };
    if (!(await exists(join(idDir, `${id}.pem`)))) {
      await issueCertificate(ca, idDir, { commonName: `${id}@${options.site}`, kind: 'client', fileName: id });
    }
  }
  let file: SiteFile = { ...site, identities: ids };
  if (options.update) file = await options.update(file);
  await writeFile(join(dir, 'site.json'), JSON.stringify(file, null, 2) + '\n');

  const r = options.render(file);
  const configFile = join(dir, 'nats-security.conf');
  await writeFile(configFile, renderNatsSecurityConfig({
    tls: { cert: join(dir, 'server.pem'), key: join(dir, 'server-key.pem'), ca: join(dir, 'ca.pem') },
    site: options.site,
    users: Object.entries(ids).map(([identity, { connectHash }]) => ({ identity, connectHash: connectHash!, permissions: r.permissions(identity as AnyIdentity) })),
    ...(r.extraUsers ? { extraUsers: r.extraUsers } : {}),
  }), { mode: 0o600 });
  return siteSecurityAt(dir, options.site, Object.keys(ids) as AnyIdentity[]);
}

/** Opens the material `initSiteSecurity` made (for the services and the CLI). */
export async function loadSiteSecurity(dir: string): Promise<SiteSecurity> {
  const file = JSON.parse(await readFile(join(resolve(dir), 'site.json'), 'utf8')) as SiteFile;
  return siteSecurityAt(resolve(dir), file.site, Object.keys(file.identities) as AnyIdentity[]);
}

function siteSecurityAt(dir: string, site: string, identities: AnyIdentity[]): SiteSecurity {
  return {
    dir, site, identities,
    caFile: join(dir, 'ca.pem'),
    configFile: join(dir, 'nats-security.conf'),
    credentials(identity) {
      if (!identities.includes(identity)) throw new Error(`no NATS identity "${identity}" for site ${site} in ${dir} (run cairn site init)`);
      return {
        identity, site,
        seedFile: join(dir, 'identities', `${identity}.nk`),
        certFile: join(dir, 'identities', `${identity}.pem`),
        keyFile: join(dir, 'identities', `${identity}-key.pem`),
        caFile: join(dir, 'ca.pem'),
        inboxPrefix: inboxPrefix(site, identity),
      };
    },
  };
}

/**
 * Public keys of the site's service identities (public key → identity), from `site.json`;
 * `admin` (the CLI's and `cairn up`'s NATS identity) is left out: it does not vouch for commands.
 * Services accept a command signed by one of these keys (docs/security.md, signed commands).
 */
export async function servicePublicKeys(dir: string): Promise<Map<string, string>> {
  const file = JSON.parse(await readFile(join(resolve(dir), 'site.json'), 'utf8')) as SiteFile;
  return new Map(Object.entries(file.identities).filter(([id]) => id !== 'admin').map(([id, { nkey }]) => [nkey, id]));
}
