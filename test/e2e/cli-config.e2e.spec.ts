// cairn.yaml end to end: `cairn config check` names the line of a mistake (and refuses with
// exit 2 in the one JSON error shape); `cairn up --config` forwards the audit trail to the
// SIEM targets it lists; `cairn run audit-bridge` does the same as a process of its own.
import { spawn } from 'node:child_process';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useHarness, waitFor } from '@cairn/testing';
import { CAIRN, ROOT, cli } from './e2e-helpers.ts';

function start(args: readonly string[]) {
  const child = spawn(process.execPath, [CAIRN, ...args], { cwd: ROOT, env: { ...process.env, CAIRN_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
  child.stderr.setEncoding('utf8').on('data', (d: string) => { out += d; });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return { child, output: () => out, exited, stop: async () => { if (child.exitCode === null) { child.kill('SIGTERM'); await exited; } } };
}

const lines = async (file: string) => (await stat(file).then(() => readFile(file, 'utf8'), () => '')).split('\n').filter(Boolean);

describe('cairn.yaml (real stack)', () => {
  const h = useHarness();

  it('is checked line by line, and its SIEM targets get the audit trail from cairn up and from cairn run audit-bridge', async () => {
    const dir = await h.tmpDir('cairn-config-');
    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, 'site: paris\naudit:\n  targets:\n    - kind: syslog\n      name: siem\n      host: 127.0.0.1\n      port: seventy\n');
    const checked = await cli(['--json', 'config', 'check', bad]);
    expect(checked.code).toBe(2);
    expect(JSON.parse(checked.stdout)).toMatchObject({ error: { code: 'invalid_config', message: expect.stringContaining(`${bad}:7:`) as unknown } });

    const upFile = join(dir, 'ocsf-up.jsonl');
    const config = join(dir, 'cairn.yaml');
    await writeFile(config, `audit:\n  targets:\n    - { kind: ocsf-file, name: ocsf, path: ${upFile} }\nbandwidth:\n  hostBytesPerSec: 20MiB\nconcurrency:\n  maxJobsPerHost: 3\n  maxJobsPerRepository: 4\n`
      + 'notifications:\n  routes:\n    - name: ops-hook\n      target: { kind: webhook, url: "http://127.0.0.1:9/hook", format: slack }\n      match: { kinds: [job-failed] }\n');
    expect((await cli(['config', 'check', config])).stdout).toMatch(/ok \(site local, 1 SIEM targets\)[^]*notification routes: ops-hook \(webhook\)[^]*at most 4 backups at once per repository/);
    const data = join(dir, 'data');
    const up = start(['--data', data, 'up', '--insecure', '--config', config]);
    h.onClose(up.stop);
    await waitFor(() => {
      if (up.child.exitCode !== null) throw new Error(up.output());
      return up.output().includes('cairn is up;') || undefined;
    }, { timeoutMs: 240_000, intervalMs: 200, what: 'cairn up' });
    await waitFor(async () => (await lines(upFile)).length > 0 || undefined, { timeoutMs: 60_000, intervalMs: 200, what: 'OCSF lines from cairn up' });
    // The services took the file's bandwidth and concurrency (their health lines say so).
    expect(up.output()).toMatch(/at most 3 jobs per host, 4 per repository/);
    expect(up.output()).toMatch(/bandwidth host 20\.0 MiB\/s, site unlimited/);
    // The file's notification route is in the log, as `cairn notify route add` records it; applied again, it is unchanged.
    expect(up.output()).toMatch(/notification route +ops-hook → webhook recorded \(cairn\.yaml\)/);
    const routes = await cli(['--data', data, '--json', 'notify', 'route', 'list']);
    expect(routes.code, routes.stderr).toBe(0);
    expect(JSON.parse(routes.stdout)).toEqual([{ routeId: 'ops-hook', name: 'ops-hook', match: { kinds: ['job-failed'] }, target: { kind: 'webhook', url: 'http://127.0.0.1:9/hook', format: 'slack' } }]);
    const applied = await cli(['--data', data, '--json', 'notify', 'route', 'apply', config]);
    expect(applied.code, applied.stderr).toBe(0);
    expect(JSON.parse(applied.stdout)).toEqual([{ routeId: 'ops-hook', changed: false }]);

    const runFile = join(dir, 'ocsf-run.jsonl');
    const runConfig = join(dir, 'run.yaml');
    await writeFile(runConfig, `audit:\n  targets:\n    - { kind: ocsf-file, name: ocsf2, path: ${runFile} }\n`);
    const state = JSON.parse(await readFile(join(data, 'stack.json'), 'utf8')) as { natsUrl: string };
    const bridge = start(['--nats', state.natsUrl, '--data', join(dir, 'bridge'), 'run', 'audit-bridge', '--config', runConfig]);
    h.onClose(bridge.stop);
    await waitFor(async () => (await lines(runFile)).length > 0 || undefined, { timeoutMs: 60_000, intervalMs: 200, what: 'OCSF lines from cairn run audit-bridge' })
      .catch((e: Error) => { throw new Error(`${e.message}; it said: ${bridge.output()}`); });
    expect(JSON.parse((await lines(runFile))[0]!)).toHaveProperty('class_uid');
    await bridge.stop();
    await up.stop();
  }, 400_000);
});
