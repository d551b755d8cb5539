// Every service as its own process (`cairn run <service> --http`), on a three-node NATS
// cluster, the way a site runs in production: two schedulers (one active, one standby), two
// data movers on the work queue, two catalogues each projecting the log, the coordinator of a
// real QEMU VM, the audit bridge, the notifier, replication and the gateway. Each answers
// /health, /ready and /metrics; a backup and a restore go through them; a catalogue SIGKILLed
// leaves the other answering every query.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { natsServers } from '@cairn/contracts';
import { startNatsCluster } from '@cairn/nats-server';
import { useHarness, waitFor } from '@cairn/testing';
import { CatalogueClient } from '@cairn/catalogue-client';
import { startDemoVm } from '@cairn/cli';
import { checkRestoredDemoImage, cli, runService, waitForJobEnd, type ServiceProcess } from './e2e-helpers.ts';

const PASSPHRASE = 'scale-e2e-passphrase';
const TOKEN = 'scale-e2e-api-token-0123456789';

/** The HTTP address a `cairn run … --http 127.0.0.1:0` printed. */
const httpOf = (p: ServiceProcess) => /http (http:\/\/[^ ]+) \(/.exec(p.output())?.[1];

/** A sample's value in Prometheus text, by name and a label it must carry. */
function sample(text: string, name: string, label = ''): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(label));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : undefined;
}

describe('every service as its own process on a three-node cluster', () => {
  const h = useHarness();

  it('/health, /ready and /metrics of each; a backup and a restore through them; two catalogues share the queries', async () => {
    const dir = await h.tmpDir('cairn-e2e-scale-procs-');
    const cluster = await startNatsCluster({ dir: join(dir, 'nats'), size: 3, name: 'cairn-local', maxPayload: 8 * 1024 * 1024 });
    h.onClose(() => cluster.stop());
    const nats = cluster.url;
    const vm = await startDemoVm(join(dir, 'demo'));
    h.onClose(() => vm.stop());
    const repo = join(dir, 'repository');
    await mkdir(join(dir, 'restores'));
    const env = { CAIRN_REPO_PASSPHRASE: PASSPHRASE, CAIRN_API_TOKEN: TOKEN, CAIRN_RESTORE_ROOTS: join(dir, 'restores') };
    const init = await cli(['--nats', nats, 'repo', '--repo', repo, 'init'], env);
    expect(init.code, init.stderr).toBe(0);

    const services: Array<[string, string, string[]]> = [
      ['scheduler-1', 'scheduler', ['--instance', 'scheduler-1']],
      ['scheduler-2', 'scheduler', ['--instance', 'scheduler-2']],
      ['snapshot-coordinator', 'snapshot-coordinator', ['--qmp', vm.qmpPath]],
      ['data-mover-1', 'data-mover', ['--repo', repo]],
      ['data-mover-2', 'data-mover', ['--repo', repo]],
      ['catalogue-1', 'catalogue', []],
      ['catalogue-2', 'catalogue', []],
      ['audit-bridge', 'audit-bridge', []],
      ['notifier', 'notifier', []],
      ['replication', 'replication', ['--repo', repo]],
      ['gateway', 'gateway', ['--port', '0']],
    ];
    const procs = new Map<string, ServiceProcess>();
    for (const [name, service, args] of services) {
      const p = runService(name, ['--nats', nats, '--site', 'local', '--data', join(dir, name), 'run', service, '--http', '127.0.0.1:0', ...args], env);
      h.onClose(async () => { p.kill('SIGTERM'); await p.exited; });
      procs.set(name, p);
    }
    await Promise.all([...procs.values()].map((p) => p.ready));

    // Each: alive, ready, and its figures.
    for (const [name, p] of procs) {
      const url = httpOf(p);
      expect(url, `${name} printed no http address: ${p.output().slice(-500)}`).toBeDefined();
      const health = await fetch(`${url}/health`);
      expect(health.status, name).toBe(200);
      expect(await health.json()).toMatchObject({ status: 'ok', nats: 'connected' });
      const ready = await waitFor(async () => { const r = await fetch(`${url}/ready`); return r.status === 200 ? r : undefined; }, { timeoutMs: 60_000, intervalMs: 250, what: `${name} ready` });
      expect(await ready.json()).toEqual({ status: 'ready' });
      const metrics = await (await fetch(`${url}/metrics`)).text();
      expect(sample(metrics, 'cairn_service_ready', `service="${services.find((s) => s[0] === name)![1]}"`), name).toBe(1);
      expect(sample(metrics, 'process_resident_memory_bytes'), name).toBeGreaterThan(0);
    }
    // One active scheduler, one standby (the KV lease).
    const leaders = await Promise.all(['scheduler-1', 'scheduler-2'].map(async (n) => sample(await (await fetch(`${httpOf(procs.get(n)!)}/metrics`)).text(), 'cairn_scheduler_leader')));
    expect(leaders.sort()).toEqual([0, 1]);

    // A backup and a restore through the separate processes, driven by the CLI against the cluster.
    const nc = await connect({ servers: natsServers(nats) });
    h.onClose(() => nc.close());
    const catalogue = new CatalogueClient(nc, { site: 'local' });
    await waitFor(async () => (await catalogue.query('vm.list', {})).items.some((v) => v.name === 'demo'), { timeoutMs: 60_000, what: 'demo VM in the catalogue' });
    await vm.write(10);
    const backup = await cli(['--nats', nats, '--site', 'local', '--json', 'backup', 'demo'], env);
    expect(backup.code, backup.stderr).toBe(0);
    const { jobId } = JSON.parse(backup.stdout) as { jobId: string };
    const job = await waitForJobEnd(catalogue, jobId, 180_000);
    expect(job.state, JSON.stringify(job.failure)).toBe('completed');
    const worker = (job.events.find((e) => e.type === 'TransferStarted')!.data as { worker: string }).worker;
    expect(['data-mover-1', 'data-mover-2'].some((n) => worker.startsWith(`data-mover@${procs.get(n)!.pid}-`)), worker).toBe(true);
    const target = join(dir, 'restores', 'demo.raw');
    const restore = await cli(['--nats', nats, '--site', 'local', 'restore', job.restorePointId!, '--to', target], env);
    expect(restore.code, restore.stderr).toBe(0);
    const check = await checkRestoredDemoImage(target, vm.writes);
    expect(check, check.reason).toMatchObject({ ok: true });

    // Both catalogues project the whole log on their own…
    const head = await waitFor(async () => {
      const positions = await Promise.all(['catalogue-1', 'catalogue-2'].map(async (n) => sample(await (await fetch(`${httpOf(procs.get(n)!)}/metrics`)).text(), 'cairn_catalogue_status_position')));
      return positions[0] === positions[1] && positions[0]! > 0 ? positions[0] : undefined;
    }, { timeoutMs: 60_000, intervalMs: 250, what: 'both catalogues at the same position' });
    expect(head).toBeGreaterThan(0);
    // …so with one of them gone, the other answers every query of the queue group.
    procs.get('catalogue-1')!.kill('SIGKILL');
    await procs.get('catalogue-1')!.exited;
    for (let i = 0; i < 10; i++) {
      expect((await catalogue.query('job.get', { jobId })).state).toBe('completed');
    }
    // The gateway (its own process) serves the same job from the catalogue that is left.
    const gatewayUrl = /gateway listening on (http:\/\/\S+)/.exec(procs.get('gateway')!.output())![1];
    const res = await fetch(`${gatewayUrl}/v1/jobs/${jobId}`, { headers: { Authorization: `Bearer ${TOKEN}` } });
    expect(res.status).toBe(200);
  }, 420_000);
});
