// The Kubernetes manifests of infra/kubernetes, checked since no cluster runs here: every
// document validates against the Kubernetes schemas (kubernetes-models) or KEDA's
// (@kubernetes-models/keda); `kubectl kustomize` builds the site from them (the NATS chart left
// out: rendering it needs helm and the chart repository); and they agree with each other and with
// Cairn: each Deployment runs a `cairn run` service with its probes, every budget, policy and
// scaler selects pods that exist, the scaler watches the data movers' durable on the site's work
// stream, and the services connect to all three NATS members. NATS is secured as a secure site
// is: the Secrets `cairn site kubernetes-secrets` writes validate as Secrets, each workload mounts
// its own service's Secret (keys it has, where CAIRN_NATS_SECURITY_DIR points), the NATS chart
// includes the server Secret's config, and with the files laid out as those mounts lay them out a
// real nats-server takes every service's connection and refuses one without an identity.
import { execFile } from 'node:child_process';
import { copyFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments, parse } from 'yaml';
import { connect } from '@nats-io/transport-node';
import { natsServers } from '@cairn/contracts';
import { workStreamName } from '@cairn/jobs';
import { startNatsServer } from '@cairn/nats-server';
import { identityConnectOptions, loadSiteSecurity, type ServiceIdentity } from '@cairn/nats-security';
import { useHarness } from '@cairn/testing';
import { cli, ROOT } from './e2e-helpers.ts';

const run = promisify(execFile);
const kubectl = await run('kubectl', ['version', '--client']).then(() => true, () => false);
const DIR = join(ROOT, 'infra', 'kubernetes');
const SERVICES = ['scheduler', 'data-mover', 'catalogue', 'snapshot-coordinator', 'replication', 'audit-bridge', 'notifier', 'gateway'];

type Doc = { apiVersion: string; kind: string; metadata: { name: string; labels?: Record<string, string> }; spec?: Record<string, unknown>; data?: Record<string, string> };

/** The model that validates a document of this apiVersion and kind. */
async function modelOf(apiVersion: string, kind: string): Promise<new (data: unknown) => { validate(): void }> {
  const path = apiVersion === 'keda.sh/v1alpha1'
    ? `@kubernetes-models/keda/keda.sh/v1alpha1/${kind}`
    : `kubernetes-models/${apiVersion}/${kind}`;
  const m = (await import(path)) as Record<string, new (data: unknown) => { validate(): void }>;
  const model = m[kind];
  if (!model) throw new Error(`no schema for ${apiVersion} ${kind}`);
  return model;
}

async function manifests(): Promise<Array<{ file: string; doc: Doc }>> {
  const out: Array<{ file: string; doc: Doc }> = [];
  for (const file of (await readdir(DIR)).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')) {
    for (const d of parseAllDocuments(await readFile(join(DIR, file), 'utf8'))) {
      expect(d.errors, file).toEqual([]);
      const doc = d.toJS() as Doc | null;
      if (doc) out.push({ file, doc });
    }
  }
  return out;
}

const matches = (selector: Record<string, string>, labels: Record<string, string> | undefined) => Object.entries(selector).every(([k, v]) => labels?.[k] === v);

describe('infra/kubernetes', () => {
  const h = useHarness();

  it('every document validates against the Kubernetes and KEDA schemas (and a broken one does not)', async () => {
    const docs = await manifests();
    expect(new Set(docs.map((d) => d.doc.kind))).toEqual(new Set(['ConfigMap', 'PersistentVolumeClaim', 'Service', 'Deployment', 'DaemonSet', 'PodDisruptionBudget', 'NetworkPolicy', 'ScaledObject']));
    for (const { file, doc } of docs) {
      const Model = await modelOf(doc.apiVersion, doc.kind);
      expect(() => new Model(doc).validate(), `${file}: ${doc.kind} ${doc.metadata.name}`).not.toThrow();
    }
    const deployment = docs.find((d) => d.doc.kind === 'Deployment')!.doc;
    const Deployment = await modelOf('apps/v1', 'Deployment');
    expect(() => new Deployment({ ...deployment, spec: { ...deployment.spec, replicas: 'two' } }).validate()).toThrow();
    const ScaledObject = await modelOf('keda.sh/v1alpha1', 'ScaledObject');
    expect(() => new ScaledObject({ apiVersion: 'keda.sh/v1alpha1', kind: 'ScaledObject', metadata: { name: 'x' }, spec: { triggers: [] } }).validate()).toThrow();
  });

  it.skipIf(!kubectl)(`kubectl kustomize builds the site into the cairn namespace${kubectl ? '' : ' (skipped: no kubectl on this machine)'}`, async () => {
    const dir = await h.tmpDir('cairn-scale-kustomize-');
    const kustomization = await readFile(join(DIR, 'kustomization.yaml'), 'utf8');
    expect(kustomization).toMatch(/helmCharts:\n {2}- name: nats\n {4}repo: https:\/\/nats-io\.github\.io\/k8s\/helm\/charts\//);
    for (const f of (await readdir(DIR)).filter((x) => x.endsWith('.yaml') && x !== 'kustomization.yaml')) await copyFile(join(DIR, f), join(dir, f));
    await writeFile(join(dir, 'kustomization.yaml'), kustomization.slice(0, kustomization.indexOf('helmCharts:')));
    const { stdout } = await run('kubectl', ['kustomize', dir]);
    const built = parseAllDocuments(stdout).map((d) => d.toJS() as Doc & { metadata: { namespace?: string } });
    expect(built.length).toBe((await manifests()).length);
    expect(built.every((d) => d.metadata.namespace === 'cairn')).toBe(true);
  });

  it('the manifests agree with each other and with Cairn', async () => {
    const docs = (await manifests()).map((d) => d.doc);
    const workloads = docs.filter((d) => d.kind === 'Deployment' || d.kind === 'DaemonSet');
    type Pod = { metadata: { labels: Record<string, string> }; spec: { containers: Array<{ args: string[]; livenessProbe?: { httpGet: { path: string } }; readinessProbe?: { httpGet: { path: string } } }> } };
    const pods = workloads.map((w) => (w.spec!['template'] as Pod));
    // Every service runs, each as `cairn run <service>` with /health and /ready probes; the coordinator beside the hypervisors.
    expect(pods.map((p) => p.spec.containers[0]!.args[1]).sort()).toEqual([...SERVICES].sort());
    for (const p of pods) {
      const c = p.spec.containers[0]!;
      expect(c.args[0]).toBe('run');
      expect(c.livenessProbe?.httpGet.path).toBe('/health');
      expect(c.readinessProbe?.httpGet.path).toBe('/ready');
    }
    expect(workloads.find((w) => w.kind === 'DaemonSet')!.metadata.name).toBe('snapshot-coordinator');
    // Budgets and policies select pods that exist; every Cairn pod is covered by a policy of its own.
    for (const d of docs.filter((x) => x.kind === 'PodDisruptionBudget')) {
      const sel = (d.spec!['selector'] as { matchLabels: Record<string, string> }).matchLabels;
      expect(pods.some((p) => matches(sel, p.metadata.labels)), `budget ${d.metadata.name}`).toBe(true);
    }
    const policies = docs.filter((x) => x.kind === 'NetworkPolicy');
    for (const p of pods) {
      expect(policies.some((np) => { const sel = (np.spec!['podSelector'] as { matchLabels?: Record<string, string> }).matchLabels; return sel && Object.keys(sel).length > 0 && matches(sel, p.metadata.labels); }), p.metadata.labels['app.kubernetes.io/component']).toBe(true);
    }
    expect(policies.some((np) => Object.keys((np.spec!['podSelector'] as { matchLabels?: object }).matchLabels ?? {}).length === 0), 'a default deny').toBe(true);
    // KEDA scales the data movers on their durable of the site's work stream.
    const config = docs.find((d) => d.kind === 'ConfigMap' && d.metadata.name === 'cairn')!.data!;
    const scaler = docs.find((d) => d.kind === 'ScaledObject')!;
    expect((scaler.spec!['scaleTargetRef'] as { name: string }).name).toBe('data-mover');
    const trigger = (scaler.spec!['triggers'] as Array<{ type: string; metadata: Record<string, string> }>)[0]!;
    expect(trigger.type).toBe('nats-jetstream');
    expect(trigger.metadata['stream']).toBe(workStreamName(config['CAIRN_SITE']!));
    expect(trigger.metadata['consumer']).toBe('data-mover');
    // The services connect to all three members of the NATS chart's cluster.
    expect(natsServers(config['CAIRN_NATS_URL']!)).toEqual([0, 1, 2].map((i) => `nats://nats-${i}.nats-headless:4222`));
  });

  it('NATS runs with TLS and a user per service: the Secrets validate, each workload mounts only its own, and a real nats-server takes them', async () => {
    const tmp = await h.tmpDir('cairn-k8s-secrets-');
    const sec = join(tmp, 'security');
    const init = await cli(['--site', 'paris', 'site', 'init', '--dir', sec, '--host', 'nats-0.nats-headless', 'nats-1.nats-headless', 'nats-2.nats-headless', 'localhost', '127.0.0.1']);
    expect(init.code, init.stderr).toBe(0);
    const out = await cli(['site', 'kubernetes-secrets', '--dir', sec]);
    expect(out.code, out.stderr).toBe(0);
    type Secret = Doc & { data: Record<string, string>; metadata: { namespace?: string } };
    const secrets = parseAllDocuments(out.stdout).map((d) => d.toJS() as Secret);
    const Secret = await modelOf('v1', 'Secret');
    for (const x of secrets) expect(() => new Secret(x).validate(), x.metadata.name).not.toThrow();
    expect(secrets.map((x) => x.metadata.name).sort()).toEqual(['cairn-nats-server', ...SERVICES.map((x) => `cairn-nats-${x}`)].sort());
    expect(secrets.every((x) => x.metadata.namespace === 'cairn')).toBe(true);
    const text = (x: Secret, key: string) => Buffer.from(x.data[key]!, 'base64').toString('utf8');
    const byName = new Map(secrets.map((x) => [x.metadata.name, x]));
    // No Secret holds the CA's key; a service's holds its own seed and no other.
    const caKey = (await readFile(join(sec, 'ca-key.pem'), 'utf8')).trim();
    for (const x of secrets) for (const k of Object.keys(x.data)) expect(text(x, k)).not.toContain(caKey);
    for (const svc of SERVICES) expect(Object.keys(byName.get(`cairn-nats-${svc}`)!.data).sort()).toEqual(['ca.pem', 'site.json', `${svc}-key.pem`, `${svc}.nk`, `${svc}.pem`].sort());

    // Each workload mounts its own service's Secret, with keys it has, where CAIRN_NATS_SECURITY_DIR points.
    const docs = (await manifests()).map((d) => d.doc);
    const securityDir = docs.find((d) => d.kind === 'ConfigMap' && d.metadata.name === 'cairn')!.data!['CAIRN_NATS_SECURITY_DIR']!;
    type Items = Array<{ key: string; path: string }>;
    type Pod = { spec: { containers: Array<{ args: string[]; volumeMounts: Array<{ name: string; mountPath: string }> }>; volumes: Array<{ name: string; secret?: { secretName: string; items?: Items; optional?: boolean } }> } };
    const layouts = new Map<string, Items>();
    for (const w of docs.filter((d) => d.kind === 'Deployment' || d.kind === 'DaemonSet')) {
      const pod = w.spec!['template'] as Pod;
      const svc = pod.spec.containers[0]!.args[1]!;
      const mount = pod.spec.containers[0]!.volumeMounts.find((m) => m.mountPath === securityDir);
      expect(mount, svc).toBeDefined();
      const volume = pod.spec.volumes.find((v) => v.name === mount!.name)!;
      expect(volume.secret?.secretName, svc).toBe(`cairn-nats-${svc}`);
      expect(volume.secret?.optional, svc).toBeUndefined();
      for (const item of volume.secret!.items!) expect(Object.keys(byName.get(`cairn-nats-${svc}`)!.data), svc).toContain(item.key);
      // No other secret volume carries NATS material.
      expect(pod.spec.volumes.filter((v) => v.secret?.secretName.startsWith('cairn-nats-')).length, svc).toBe(1);
      layouts.set(svc, volume.secret!.items!);
    }
    // The NATS chart mounts cairn-nats-server beside /etc/nats-config and includes its config from there.
    type Values = { config: { merge: Record<string, unknown> }; container: { patch: Array<{ value: { name: string; mountPath: string } }> }; podTemplate: { patch: Array<{ value: { name: string; secret: { secretName: string } } }> } };
    const values = (parse(await readFile(join(DIR, 'kustomization.yaml'), 'utf8')) as { helmCharts: Array<{ valuesInline: Values }> }).helmCharts[0]!.valuesInline;
    const natsVolume = values.podTemplate.patch.map((p) => p.value).find((v) => v.secret?.secretName === 'cairn-nats-server')!;
    const natsMount = values.container.patch.map((p) => p.value).find((m) => m.name === natsVolume.name)!;
    const include = values.config.merge['00$include'] as string;
    expect(join('/etc/nats-config', include)).toBe(join(natsMount.mountPath, 'nats-security.conf'));
    const server = byName.get('cairn-nats-server')!;
    const natsConf = text(server, 'nats-security.conf');
    expect(natsConf).toContain('verify_and_map: true');
    expect(natsConf).not.toContain(sec);
    for (const f of ['server.pem', 'server-key.pem', 'ca.pem']) expect(natsConf).toContain(JSON.stringify(join(natsMount.mountPath, f)));

    // As mounted (the config's absolute mount paths moved under this test's directory): a real
    // nats-server takes each service's connection made from its mount alone, and refuses one without.
    const root = join(tmp, 'root');
    const natsDir = join(root, 'etc', 'nats-config');
    await mkdir(join(root, natsMount.mountPath), { recursive: true });
    for (const k of Object.keys(server.data)) {
      await writeFile(join(root, natsMount.mountPath, k), text(server, k).replaceAll(`"${natsMount.mountPath}/`, `"${join(root, natsMount.mountPath)}/`), { mode: 0o600 });
    }
    const nats = await startNatsServer({ dir: natsDir, jetstream: false, extraConfig: `include ${include}` });
    try {
      for (const svc of SERVICES) {
        const dir = join(root, svc, securityDir);
        for (const { key, path } of layouts.get(svc)!) {
          await mkdir(dirname(join(dir, path)), { recursive: true });
          await writeFile(join(dir, path), text(byName.get(`cairn-nats-${svc}`)!, key), { mode: 0o600 });
        }
        const security = await loadSiteSecurity(dir);
        const nc = await connect({ servers: `nats://127.0.0.1:${nats.port}`, ...identityConnectOptions(security.credentials(svc as ServiceIdentity)), reconnect: false });
        await nc.flush();
        await nc.close();
      }
      await expect(connect({ servers: `nats://127.0.0.1:${nats.port}`, reconnect: false, timeout: 5000 }).then((nc) => nc.close())).rejects.toThrow();
    } finally {
      await nats.stop();
    }

    // Material whose server certificate does not name the NATS members is refused, with the command to make it right.
    const local = join(tmp, 'local');
    expect((await cli(['--site', 'paris', 'site', 'init', '--dir', local])).code).toBe(0);
    const refused = await cli(['site', 'kubernetes-secrets', '--dir', local]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/does not name nats-0\.nats-headless.*site init --dir <new dir> --host nats-0\.nats-headless/s);
  }, 300_000);
});
