// The systemd units of infra/systemd: `systemd-analyze verify` accepts every one, `systemd-analyze
// security` rates each hardened (exposure ≤ 3.0, a service user, no capabilities). Then a site
// started from the units' own command lines and environment, without systemd (ExecStart,
// Environment=, EnvironmentFile= with the example files as an operator fills them in, paths moved
// under a test directory, a drop-in's worth of port overrides): three nats-servers from
// cairn-nats@, two schedulers (one leader), the coordinator of a real QEMU VM, two data movers,
// two catalogues, replication, the audit bridge, the notifier and the gateway, each its own
// process answering /health, /ready and /metrics; a backup and an exact restore go through them,
// and a catalogue SIGKILLed leaves the other answering every query.
import { execFile, spawn } from 'node:child_process';
import { copyFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { natsServers } from '@cairn/contracts';
import { freePort } from '@cairn/nats-server';
import { useHarness, waitFor } from '@cairn/testing';
import { CatalogueClient } from '@cairn/catalogue-client';
import { startDemoVm } from '@cairn/cli';
import { checkRestoredDemoImage, cli, ROOT, waitForJobEnd } from './e2e-helpers.ts';
import { unitCommand } from './systemd-units.ts';

const run = promisify(execFile);
const UNITS = join(ROOT, 'infra', 'systemd');
const PASSPHRASE = 'scale-e2e-passphrase';
const TOKEN = 'scale-e2e-api-token-0123456789';

/** A sample's value in Prometheus text, by name and a label it must carry. */
function sample(text: string, name: string, label = ''): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(label));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : undefined;
}

describe('infra/systemd', () => {
  const h = useHarness();

  it('systemd-analyze verifies every unit and rates each hardened', async () => {
    const dir = await h.tmpDir('cairn-scale-units-');
    const files = (await readdir(UNITS)).filter((f) => f.endsWith('.service') || f.endsWith('.target'));
    expect(files.length).toBeGreaterThanOrEqual(10);
    const named: string[] = [];
    for (const f of files) {
      const as = f.replace('@.', '@9111.'); // a template is verified as one of its instances
      await copyFile(join(UNITS, f), join(dir, as));
      named.push(join(dir, as));
    }
    const verify = await run('systemd-analyze', ['verify', '--man=no', ...named]).then((r) => ({ code: 0, out: r.stdout + r.stderr }), (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }));
    expect(verify, verify.out).toEqual({ code: 0, out: '' });
    for (const unit of named.filter((n) => n.endsWith('.service'))) {
      const text = await readFile(unit, 'utf8');
      for (const line of ['User=cairn', 'NoNewPrivileges=yes', 'ProtectSystem=strict', 'PrivateTmp=yes', 'CapabilityBoundingSet=\n']) expect(text, `${unit}: ${line}`).toContain(line);
      const r = await run('systemd-analyze', ['security', '--offline=yes', unit]);
      const exposure = Number(/Overall exposure level for .*: ([\d.]+)/.exec(r.stdout)?.[1]);
      expect(exposure, `${unit}: ${r.stdout.split('\n').at(-2)}`).toBeLessThanOrEqual(3.0);
    }
  });

  it('a site started from the units\' command lines: /health, /ready and /metrics of each, a backup and a restore, a catalogue lost', async () => {
    const root = await h.tmpDir('cairn-e2e-scale-units-');
    // Where the units' absolute paths live here.
    const path = (p: string) => {
      if (p === '/usr/bin/node') return process.execPath;
      if (p.startsWith('/opt/cairn/')) return join(ROOT, p.slice('/opt/cairn/'.length));
      for (const prefix of ['/etc/cairn', '/var/lib', '/run']) if (p === prefix || p.startsWith(`${prefix}/`)) return join(root, p);
      return p;
    };
    // /etc/cairn as an operator fills it in from the examples: this machine's addresses and secrets.
    const ports = await Promise.all([1, 2, 3].map(async () => ({ client: await freePort(), route: await freePort() })));
    const nats = ports.map((p) => `nats://127.0.0.1:${p.client}`).join(',');
    await mkdir(path('/etc/cairn/nats'), { recursive: true });
    await copyFile(join(ROOT, 'infra', 'nats', 'cluster', 'node.conf'), path('/etc/cairn/nats/node.conf'));
    const edit = async (example: string, target: string, values: Record<string, string>) => {
      let text = await readFile(join(UNITS, example), 'utf8');
      for (const [k, v] of Object.entries(values)) {
        text = new RegExp(`^#?${k}=`, 'm').test(text) ? text.replace(new RegExp(`^#?${k}=.*$`, 'm'), `${k}=${v}`) : `${text}${k}=${v}\n`;
      }
      await writeFile(path(target), text);
    };
    await edit('cairn.env', '/etc/cairn/cairn.env', { CAIRN_SITE: 'local', CAIRN_NATS_URL: nats, CAIRN_LOG_LEVEL: 'info' });
    await edit('secrets.env', '/etc/cairn/secrets.env', { CAIRN_REPO_PASSPHRASE: PASSPHRASE, CAIRN_API_TOKEN: TOKEN });
    for (const [i, p] of ports.entries()) {
      await edit('nats-1.env', `/etc/cairn/nats/${i + 1}.env`, {
        CAIRN_SITE: 'local', CAIRN_NODE_NAME: `local-${i + 1}`, CAIRN_NATS_HOST: '127.0.0.1', CAIRN_NATS_PORT: String(p.client), CAIRN_ROUTE_PORT: String(p.route),
        ...Object.fromEntries(ports.map((q, j) => [`CAIRN_ROUTE_${j + 1}`, `nats-route://127.0.0.1:${q.route}`])),
      });
    }
    for (const d of ['/var/lib/cairn/repository', '/var/lib/cairn/restores']) await mkdir(path(d), { recursive: true }); // cairn.tmpfiles.conf
    const vm = await startDemoVm(path('/run/qemu/demo'));
    h.onClose(() => vm.stop());
    await edit('coordinator.env', '/etc/cairn/coordinator.env', { CAIRN_COORDINATOR_ARGS: `--qmp ${vm.qmpPath}` });

    const procs = new Map<string, { pid: number; http?: string; output: () => string; kill: (s?: NodeJS.Signals) => Promise<void> }>();
    // As systemd runs a unit: its command line and environment, and started again after it
    // failed when the unit says Restart=on-failure (after RestartSec=, at most 5 times, systemd's
    // default start limit). A process the test kills counts as stopped, not failed.
    const start = async (unit: string, instance?: string, override?: Record<string, string>) => {
      const name = instance ? unit.replace('@.', `@${instance}.`) : unit;
      const cmd = await unitCommand(join(UNITS, unit), { path, ...(instance ? { instance } : {}), ...(override ? { override } : {}) });
      for (const d of cmd.stateDirectories) await mkdir(d, { recursive: true });
      let out = '';
      let stopped = false;
      let restarts = 0;
      let child!: ReturnType<typeof spawn>;
      let exited!: Promise<void>;
      const run = () => {
        child = spawn(cmd.argv[0]!, cmd.argv.slice(1), { cwd: root, env: { PATH: process.env['PATH']!, HOME: root, ...cmd.env }, stdio: ['ignore', 'pipe', 'pipe'] });
        child.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
        child.stderr!.setEncoding('utf8').on('data', (d: string) => { out += d; });
        exited = new Promise<void>((r) => child.once('exit', (code, signal) => {
          r();
          if (stopped || !cmd.restart.onFailure || (code === 0 && signal === null) || restarts >= 5) return;
          restarts++;
          out += `[test: ${name} exited (${signal ?? `code ${String(code)}`}); started again in ${cmd.restart.delayMs} ms, as Restart=on-failure does (restart ${restarts})]\n`;
          setTimeout(() => { if (!stopped) run(); }, cmd.restart.delayMs);
        }));
      };
      run();
      const kill = async (signal: NodeJS.Signals = 'SIGTERM') => { stopped = true; if (child.exitCode === null && child.signalCode === null) { child.kill(signal); await exited; } };
      h.onClose(() => kill('SIGKILL'));
      const http = cmd.env['CAIRN_HTTP'] ?? (/--http (\S+)/.exec(cmd.argv.join(' '))?.[1]);
      procs.set(name, { get pid() { return child.pid!; }, ...(http ? { http: `http://${http}` } : {}), output: () => out, kill });
      return procs.get(name)!;
    };

    for (const i of ['1', '2', '3']) await start('cairn-nats@.service', i);
    const nc = await waitFor(() => connect({ servers: natsServers(nats), maxReconnectAttempts: -1 }).catch(() => undefined), { timeoutMs: 30_000, what: 'NATS from cairn-nats@' });
    h.onClose(() => nc.close());
    await waitFor(() => jetstreamManager(nc, { timeout: 2000 }).catch(() => undefined), { timeoutMs: 60_000, intervalMs: 250, what: 'the cluster\'s JetStream' });
    await waitFor(() => nc.info?.connect_urls?.length === 3 || undefined, { timeoutMs: 30_000, what: 'all three members' });

    const env = { CAIRN_NATS_URL: nats, CAIRN_SITE: 'local', CAIRN_REPO_PASSPHRASE: PASSPHRASE };
    const init = await cli(['repo', '--repo', path('/var/lib/cairn/repository'), 'init'], env);
    expect(init.code, init.stderr).toBe(0);

    // Port overrides, as a drop-in would set them on a shared machine.
    const at = async () => ({ CAIRN_HTTP: `127.0.0.1:${await freePort()}` });
    const services: Array<Promise<unknown>> = [];
    for (const unit of ['cairn-scheduler@.service', 'cairn-scheduler@.service', 'cairn-data-mover@.service', 'cairn-data-mover@.service', 'cairn-catalogue@.service', 'cairn-catalogue@.service']) {
      services.push(start(unit, String(await freePort())));
    }
    for (const unit of ['cairn-snapshot-coordinator.service', 'cairn-replication.service', 'cairn-audit-bridge.service', 'cairn-notifier.service']) services.push(start(unit, undefined, await at()));
    const gatewayPort = await freePort();
    services.push(start('cairn-gateway.service', undefined, { ...(await at()), CAIRN_GATEWAY_PORT: String(gatewayPort) }));
    await Promise.all(services);
    const cairnUnits = [...procs].filter(([n]) => !n.startsWith('cairn-nats@'));
    expect(cairnUnits).toHaveLength(11);

    // Each: alive, ready, and its figures.
    for (const [name, p] of cairnUnits) {
      const ready = await waitFor(async () => {
        const r = await fetch(`${p.http}/ready`).catch(() => undefined);
        return r?.status === 200 ? r : undefined;
      }, { timeoutMs: 120_000, intervalMs: 250, what: `${name} ready (output: ${p.output().slice(-300)})` });
      expect(await ready.json()).toEqual({ status: 'ready' });
      const health = await fetch(`${p.http}/health`);
      expect(health.status, name).toBe(200);
      expect(await health.json(), name).toMatchObject({ status: 'ok', nats: 'connected' });
      const metrics = await (await fetch(`${p.http}/metrics`)).text();
      expect(sample(metrics, 'cairn_service_ready'), name).toBe(1);
      expect(sample(metrics, 'process_resident_memory_bytes'), name).toBeGreaterThan(0);
    }
    const of = (prefix: string) => cairnUnits.filter(([n]) => n.startsWith(prefix)).map(([, p]) => p);
    // One active scheduler, one standby (the KV lease).
    const leaders = await Promise.all(of('cairn-scheduler@').map(async (p) => sample(await (await fetch(`${p.http}/metrics`)).text(), 'cairn_scheduler_leader')));
    expect(leaders.sort()).toEqual([0, 1]);

    // A backup and a restore through them, driven by the CLI against the cluster.
    const catalogue = new CatalogueClient(nc, { site: 'local' });
    await waitFor(async () => (await catalogue.query('vm.list', {})).items.some((v) => v.name === 'demo'), { timeoutMs: 60_000, what: 'demo VM in the catalogue' });
    await vm.write(10);
    const backup = await cli(['--json', 'backup', 'demo'], env);
    expect(backup.code, backup.stderr).toBe(0);
    const { jobId } = JSON.parse(backup.stdout) as { jobId: string };
    const job = await waitForJobEnd(catalogue, jobId, 180_000);
    expect(job.state, JSON.stringify(job.failure)).toBe('completed');
    const worker = (job.events.find((e) => e.type === 'TransferStarted')!.data as { worker: string }).worker;
    expect(of('cairn-data-mover@').some((p) => worker.startsWith(`data-mover@${p.pid}-`)), worker).toBe(true);
    const target = join(path('/var/lib/cairn/restores'), 'demo.raw');
    const restore = await cli(['restore', job.restorePointId!, '--to', target], env);
    expect(restore.code, restore.stderr).toBe(0);
    const check = await checkRestoredDemoImage(target, vm.writes);
    expect(check, check.reason).toMatchObject({ ok: true });

    // Both catalogues project the whole log on their own…
    const [first, second] = of('cairn-catalogue@');
    await waitFor(async () => {
      const positions = await Promise.all([first!, second!].map(async (p) => sample(await (await fetch(`${p.http}/metrics`)).text(), 'cairn_catalogue_status_position')));
      return positions[0] === positions[1] && positions[0]! > 0 || undefined;
    }, { timeoutMs: 60_000, intervalMs: 250, what: 'both catalogues at the same position' });
    // …so with one of them gone, the other answers every query of the queue group.
    await first!.kill('SIGKILL');
    for (let i = 0; i < 10; i++) expect((await catalogue.query('job.get', { jobId })).state).toBe('completed');
    // The gateway (its own process, on its API port) serves the job from the catalogue left.
    const res = await fetch(`http://127.0.0.1:${gatewayPort}/v1/jobs/${jobId}`, { headers: { Authorization: `Bearer ${TOKEN}` } });
    expect(res.status).toBe(200);
  }, 480_000);
});
