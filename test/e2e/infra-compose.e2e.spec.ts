// infra/container: the compose file and the Containerfile, checked since no Docker engine runs
// here: every service runs from the one image as `cairn run <service>` with its probe port the
// healthcheck asks; the services connect to all three NATS members the file defines; each member
// runs infra/nats/cluster/node.conf with its environment, which nats-server accepts; the image's
// entrypoint is the CLI.
import { execFile } from 'node:child_process';
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { natsServers } from '@cairn/contracts';
import { useHarness } from '@cairn/testing';
import { ROOT } from './e2e-helpers.ts';

const run = promisify(execFile);
const DIR = join(ROOT, 'infra', 'container');
const SERVICES = ['scheduler', 'data-mover', 'catalogue', 'snapshot-coordinator', 'replication', 'audit-bridge', 'notifier', 'gateway'];

interface ComposeService {
  image: string;
  command: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  healthcheck?: { test: string[] };
  depends_on?: string[];
  deploy?: { replicas?: number };
  build?: { context: string; dockerfile: string };
}

describe('infra/container', () => {
  const h = useHarness();

  it('the compose file runs every service from the image against the three NATS members it defines', async () => {
    const compose = parse(await readFile(join(DIR, 'compose.yaml'), 'utf8'), { merge: true }) as { services: Record<string, ComposeService> };
    const names = Object.keys(compose.services);
    const nats = names.filter((n) => n.startsWith('nats-'));
    expect(nats).toEqual(['nats-1', 'nats-2', 'nats-3']);
    const cairn = names.filter((n) => !n.startsWith('nats-'));
    expect(cairn.sort()).toEqual([...SERVICES].sort());
    for (const name of cairn) {
      const s = compose.services[name]!;
      expect(s.command.slice(0, 2), name).toEqual(['run', name]);
      const http = s.command[s.command.indexOf('--http') + 1]!;
      expect(s.healthcheck?.test.join(' '), name).toContain(`:${http.split(':')[1]}/ready`);
      expect(s.build, name).toEqual({ context: '../..', dockerfile: 'infra/container/Containerfile' });
      expect(natsServers(s.environment!['CAIRN_NATS_URL']!), name).toEqual(nats.map((n) => `nats://${n}:4222`));
      expect(s.depends_on, name).toEqual(nats);
    }
    expect(compose.services['data-mover']!.deploy?.replicas).toBe(2);
    expect(compose.services['data-mover']!.environment!['CAIRN_REPO_PASSPHRASE']).toMatch(/^\$\{CAIRN_REPO_PASSPHRASE:\?/);

    // Each member: the cluster config from infra/nats with its environment, accepted by nats-server.
    for (const n of nats) {
      const s = compose.services[n]!;
      expect(s.volumes).toContain('../nats/cluster/node.conf:/etc/nats/node.conf:ro');
      const env = s.environment!;
      expect([env['CAIRN_ROUTE_1'], env['CAIRN_ROUTE_2'], env['CAIRN_ROUTE_3']]).toEqual(nats.map((m) => `nats-route://${m}:6222`));
      const r = await run('nats-server', ['-t', '-c', join(ROOT, 'infra', 'nats', 'cluster', 'node.conf')], { env: { ...process.env, ...env, CAIRN_NATS_STORE: await h.tmpDir() } });
      expect(`${r.stdout}${r.stderr}`, n).toMatch(/valid/);
    }
  });

  it('the Containerfile\'s entrypoint is the CLI, run as a user of its own', async () => {
    const text = await readFile(join(DIR, 'Containerfile'), 'utf8');
    const entry = JSON.parse(/^ENTRYPOINT (\[.*\])$/m.exec(text)![1]!) as string[];
    expect(entry[0]).toBe('node');
    await access(join(ROOT, entry[1]!.replace('/opt/cairn/', '')));
    expect(text).toMatch(/^USER 10001:10001$/m);
    expect(text).toMatch(/^FROM node:24-/m);
  });
});
