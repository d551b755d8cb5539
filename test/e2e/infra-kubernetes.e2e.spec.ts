// The Kubernetes manifests of infra/kubernetes, checked since no cluster runs here: every
// document validates against the Kubernetes schemas (kubernetes-models) or KEDA's
// (@kubernetes-models/keda); `kubectl kustomize` builds the site from them (the NATS chart left
// out: rendering it needs helm and the chart repository); and they agree with each other and with
// Cairn: each Deployment runs a `cairn run` service with its probes, every budget, policy and
// scaler selects pods that exist, the scaler watches the data movers' durable on the site's work
// stream, and the services connect to all three NATS members.
import { execFile } from 'node:child_process';
import { copyFile, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { natsServers } from '@cairn/contracts';
import { workStreamName } from '@cairn/jobs';
import { useHarness } from '@cairn/testing';
import { ROOT } from './e2e-helpers.ts';

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
});
