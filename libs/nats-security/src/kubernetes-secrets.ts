// A site's NATS security material (`cairn site init`) as Kubernetes Secrets, for the manifests of
// infra/kubernetes: one Secret for the nats-server pods (server certificate and key, the site CA,
// and nats-security.conf — mutual TLS with verify_and_map and one user per identity — with its
// paths where that Secret is mounted), and one per service holding only what that service
// connects with (site.json, the CA, its nkey seed, client certificate and key). No Secret holds
// the CA's key or another identity's seed: a pod that leaks gives away one identity.
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { SERVICE_IDENTITIES, type ServiceIdentity } from './permissions.ts';
import type { SiteFile } from './site-security.ts';

/** Where each service pod mounts its Secret (CAIRN_NATS_SECURITY_DIR). */
export const KUBERNETES_SECURITY_DIR = '/etc/cairn/security';
/**
 * Where the nats-server pods mount theirs: beside the chart's /etc/nats-config, whose nats.conf
 * includes `../cairn-security/nats-security.conf` (nats-server resolves includes from its config's directory).
 */
export const KUBERNETES_NATS_SECURITY_DIR = '/etc/cairn-security';
export const NATS_SERVER_SECRET = 'cairn-nats-server';
/** The in-cluster names the services reach the NATS chart's members at (CAIRN_NATS_URL). */
export const KUBERNETES_NATS_HOSTS = ['nats-0.nats-headless', 'nats-1.nats-headless', 'nats-2.nats-headless'] as const;

export const serviceSecretName = (identity: ServiceIdentity): string => `cairn-nats-${identity}`;

/** The files of one identity as its Secret's keys (a key cannot hold `/`: the pod maps them back, see serviceSecretItems). */
export function serviceSecretItems(identity: ServiceIdentity): Array<{ key: string; path: string }> {
  return [
    { key: 'site.json', path: 'site.json' },
    { key: 'ca.pem', path: 'ca.pem' },
    { key: `${identity}.nk`, path: `identities/${identity}.nk` },
    { key: `${identity}.pem`, path: `identities/${identity}.pem` },
    { key: `${identity}-key.pem`, path: `identities/${identity}-key.pem` },
  ];
}

export interface KubernetesSecret {
  readonly apiVersion: 'v1';
  readonly kind: 'Secret';
  readonly metadata: { readonly name: string; readonly namespace?: string; readonly labels: Record<string, string> };
  readonly type: 'Opaque';
  /** base64, as the API stores it. */
  readonly data: Record<string, string>;
}

export interface KubernetesSecretsOptions {
  readonly namespace?: string;
  /** Names the server certificate must carry (default KUBERNETES_NATS_HOSTS). */
  readonly natsHosts?: readonly string[];
}

const b64 = (text: string | Buffer) => Buffer.from(text).toString('base64');

/** The Secrets of a site's security directory; fails when the server certificate does not name the NATS members. */
export async function kubernetesSecrets(securityDir: string, o: KubernetesSecretsOptions = {}): Promise<KubernetesSecret[]> {
  const dir = resolve(securityDir);
  const read = (...p: string[]) => readFile(join(dir, ...p));
  const site = JSON.parse((await read('site.json')).toString('utf8')) as SiteFile;
  if ((site.role ?? 'site') !== 'site') throw new Error(`${dir} holds the hub's material; Kubernetes Secrets are made for a site`);
  const names = new Set((new X509Certificate(await read('server.pem')).subjectAltName ?? '').split(', ').map((s) => s.replace(/^(DNS|IP Address):/, '')));
  const missing = (o.natsHosts ?? KUBERNETES_NATS_HOSTS).filter((h) => !names.has(h));
  if (missing.length) {
    throw new Error(`the nats-server certificate in ${dir} does not name ${missing.join(', ')}: services would refuse it. Create the material with them, e.g. `
      + `cairn --site ${site.site} site init --dir <new dir> --host ${[...KUBERNETES_NATS_HOSTS, 'nats', `nats.${o.namespace ?? 'cairn'}.svc`].join(' ')}`);
  }
  // nats-security.conf names its files by this directory's path: the same files, where the nats pods mount them.
  const config = (await read('nats-security.conf')).toString('utf8').replaceAll(JSON.stringify(`${dir}/`).slice(0, -1), JSON.stringify(`${KUBERNETES_NATS_SECURITY_DIR}/`).slice(0, -1));
  if (config.includes(dir)) throw new Error(`${dir}/nats-security.conf names files outside its directory`);
  const meta = (name: string, component: string) => ({
    name, ...(o.namespace ? { namespace: o.namespace } : {}), labels: { 'app.kubernetes.io/name': 'cairn', 'app.kubernetes.io/component': component, 'cairn.io/site': site.site },
  });
  const ca = await read('ca.pem');
  const secrets: KubernetesSecret[] = [{
    apiVersion: 'v1', kind: 'Secret', type: 'Opaque', metadata: meta(NATS_SERVER_SECRET, 'nats'),
    data: { 'server.pem': b64(await read('server.pem')), 'server-key.pem': b64(await read('server-key.pem')), 'ca.pem': b64(ca), 'nats-security.conf': b64(config) },
  }];
  for (const id of SERVICE_IDENTITIES) {
    if (!site.identities[id]) throw new Error(`no NATS identity ${id} in ${dir} (run cairn site init)`);
    const data: Record<string, string> = {};
    for (const { key, path } of serviceSecretItems(id)) data[key] = b64(await read(...path.split('/')));
    secrets.push({ apiVersion: 'v1', kind: 'Secret', type: 'Opaque', metadata: meta(serviceSecretName(id), id), data });
  }
  return secrets;
}
