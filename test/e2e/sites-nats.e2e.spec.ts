// The NATS topologies in infra/nats, run as written: a hub and two leaf sites started from
// hub.conf and leaf-site.conf (ports and directories from the environment), each site's
// JetStream in its own domain, requests crossing site to site through the hub; site.conf and
// the cluster member's config pass `nats-server -t` (nats-cluster.e2e.spec.ts runs three); hub-secure.conf and
// leaf-site-secure.conf with the material `cairn hub add-site` and `cairn site init` generate:
// only A's replication identity reaches B, over the TLS leaf links.
import { execFile, spawn } from 'node:child_process';
import { connect as tcpConnect } from 'node:net';
import { copyFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { freePort } from '@cairn/nats-server';
import { addLeafSite, identityConnectOptions, initSiteSecurity } from '@cairn/nats-security';
import { publishChecked } from '@cairn/messaging';
import { useHarness, waitFor } from '@cairn/testing';
import { ROOT } from './e2e-helpers.ts';

const h = useHarness();
const run = promisify(execFile);
const INFRA = join(ROOT, 'infra', 'nats');

async function natsFromConfig(config: string, env: Record<string, string>, port: number): Promise<void> {
  const p = spawn('nats-server', ['-c', resolve(INFRA, config)], { env: { ...process.env, ...env }, stdio: 'ignore' });
  h.onClose(async () => { p.kill('SIGKILL'); await new Promise((r) => (p.exitCode === null ? p.once('exit', r) : r(null))); });
  await waitFor(() => new Promise<boolean>((resolve) => {
    const s = tcpConnect({ host: '127.0.0.1', port });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  }), { timeoutMs: 15_000, intervalMs: 50, what: `${config} on port ${port}` });
}

describe('infra/nats topologies', () => {
  it('a hub and two leaf sites from the config files: JetStream per domain, requests across sites', async () => {
    const [hubPort, leafPort, aPort, bPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    await natsFromConfig('hub.conf', { CAIRN_NATS_PORT: String(hubPort), CAIRN_LEAF_PORT: String(leafPort), CAIRN_NATS_STORE: await h.tmpDir() }, hubPort);
    const leafEnv = (site: string, port: number, store: string) => ({
      CAIRN_SITE: site, CAIRN_NATS_PORT: String(port), CAIRN_NATS_STORE: store, CAIRN_HUB_LEAF_URL: `nats-leaf://127.0.0.1:${leafPort}`,
    });
    await natsFromConfig('leaf-site.conf', leafEnv('a', aPort, await h.tmpDir()), aPort);
    await natsFromConfig('leaf-site.conf', leafEnv('b', bPort, await h.tmpDir()), bPort);
    const na = await connect({ servers: `127.0.0.1:${aPort}` });
    const nb = await connect({ servers: `127.0.0.1:${bPort}` });
    const nh = await connect({ servers: `127.0.0.1:${hubPort}` });
    h.onClose(() => Promise.all([na.close(), nb.close(), nh.close()]));

    // Site B answers on its own subjects; site A reaches it through the hub.
    nb.subscribe('cairn.b.repl.a.ping', { callback: (_e, m) => { m.respond('pong from b'); } });
    const reply = await waitFor(() => na.request('cairn.b.repl.a.ping', '', { timeout: 500 }).then((m) => m.string(), () => ''),
      { timeoutMs: 20_000, intervalMs: 200, what: 'a request from A to answer at B' });
    expect(reply).toBe('pong from b');

    // Each site's JetStream is its own domain: a stream made at A is A's only, and the hub
    // reaches it through the domain.
    await (await jetstreamManager(na)).streams.add({ name: 'CAIRN_EVT_A', subjects: ['cairn.a.evt.>'] });
    await jetstream(na).publish('cairn.a.evt.vm.vm-1', 'x');
    const fromHub = await jetstreamManager(nh, { domain: 'a' });
    expect((await fromHub.streams.info('CAIRN_EVT_A')).state.messages).toBe(1);
    await expect((await jetstreamManager(nb)).streams.info('CAIRN_EVT_A')).rejects.toThrow(/stream not found/);
    expect((await jetstreamManager(nh, { domain: 'b' }).then((m) => m.getAccountInfo())).domain).toBe('b');

    // Interest crosses the leaf connections, so the site prefix is what keeps events apart: B's
    // events land in B's stream only, and A's stream takes A's subjects from anywhere.
    await (await jetstreamManager(nb)).streams.add({ name: 'CAIRN_EVT_B', subjects: ['cairn.b.evt.>'] });
    await jetstream(nb).publish('cairn.b.evt.vm.vm-2', 'y');
    expect((await fromHub.streams.info('CAIRN_EVT_A')).state.messages).toBe(1);
    expect((await (await jetstreamManager(nh, { domain: 'b' })).streams.info('CAIRN_EVT_B')).state.messages).toBe(1);
    const ack = await jetstream(nb).publish('cairn.a.evt.vm.vm-3', 'z'); // sent at B, stored at A
    expect(ack.stream).toBe('CAIRN_EVT_A');
    expect((await fromHub.streams.info('CAIRN_EVT_A')).state.messages).toBe(2);
  }, 60_000);

  it('site.conf and the cluster member config are valid for nats-server', async () => {
    const env = {
      ...process.env, CAIRN_SITE: 'paris', CAIRN_NODE_NAME: 'paris-1', CAIRN_NATS_HOST: '127.0.0.1', CAIRN_NATS_PORT: '14222', CAIRN_ROUTE_PORT: '16222',
      CAIRN_ROUTE_1: 'nats-route://127.0.0.1:16222', CAIRN_ROUTE_2: 'nats-route://127.0.0.1:16223', CAIRN_ROUTE_3: 'nats-route://127.0.0.1:16224', CAIRN_NATS_STORE: await h.tmpDir(),
    };
    for (const f of ['site.conf', 'cluster/node.conf']) {
      const r = await run('nats-server', ['-t', '-c', join(INFRA, f)], { env });
      expect(`${r.stdout}${r.stderr}`).toMatch(/valid/);
    }
  });

  it('hub-secure.conf and leaf-site-secure.conf with generated material: only replication crosses, over TLS', async () => {
    const dir = await h.tmpDir();
    const [hubPort, leafPort, aPort, bPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const hubDir = join(dir, 'hub');
    await copyFile(join(INFRA, 'hub-secure.conf'), join(dir, 'hub-secure.conf'));
    const bundles: Record<string, Awaited<ReturnType<typeof addLeafSite>>['bundle']> = {};
    for (const [site, peer] of [['a', 'b'], ['b', 'a']] as const) {
      bundles[site] = (await addLeafSite({ dir: hubDir, site, peers: [peer], out: join(dir, `bundle-${site}`) })).bundle;
    }
    await copyFile(join(hubDir, 'nats-security.conf'), join(dir, 'hub-security.conf'));
    await natsFromConfig(join(dir, 'hub-secure.conf'), {
      CAIRN_NATS_PORT: String(hubPort), CAIRN_LEAF_PORT: String(leafPort), CAIRN_NATS_STORE: await h.tmpDir(),
      CAIRN_HUB_LEAF_CERT: join(hubDir, 'server.pem'), CAIRN_HUB_LEAF_KEY: join(hubDir, 'server-key.pem'), CAIRN_HUB_CA: join(hubDir, 'ca.pem'),
    }, hubPort);
    const sites: Record<string, Awaited<ReturnType<typeof initSiteSecurity>>> = {};
    for (const [site, port] of [['a', aPort], ['b', bPort]] as const) {
      const siteDir = join(dir, `site-${site}`);
      sites[site] = await initSiteSecurity({ dir: join(siteDir, 'security'), site, peers: [site === 'a' ? 'b' : 'a'] });
      await copyFile(join(INFRA, 'leaf-site-secure.conf'), join(siteDir, 'leaf-site-secure.conf'));
      await copyFile(sites[site].configFile, join(siteDir, 'site-security.conf'));
      const leaf = bundles[site]!;
      await natsFromConfig(join(siteDir, 'leaf-site-secure.conf'), {
        CAIRN_SITE: site, CAIRN_NATS_PORT: String(port), CAIRN_NATS_STORE: await h.tmpDir(),
        CAIRN_HUB_LEAF_URL: `nats-leaf://${leaf.user}:${leaf.password}@127.0.0.1:${leafPort}`,
        CAIRN_LEAF_CERT: leaf.certFile, CAIRN_LEAF_KEY: leaf.keyFile, CAIRN_HUB_CA: leaf.caFile,
      }, port);
    }
    const as = async (site: string, port: number, identity: 'replication' | 'data-mover') => {
      const nc = await connect({ servers: `tls://127.0.0.1:${port}`, ...identityConnectOptions(sites[site]!.credentials(identity)) });
      h.onClose(() => nc.close());
      return nc;
    };
    const replB = await as('b', bPort, 'replication');
    replB.subscribe('cairn.b.repl.a.*', { queue: 'replication', callback: (_e, m) => { m.respond('from b'); } });
    await replB.flush();
    const replA = await as('a', aPort, 'replication');
    const reply = await waitFor(() => replA.request('cairn.b.repl.a.has-rp', '', { timeout: 500 }).then((m) => m.string(), () => ''),
      { timeoutMs: 30_000, intervalMs: 200, what: 'A\'s replication to reach B through the secure hub' });
    expect(reply).toBe('from b');
    await expect(publishChecked(await as('a', aPort, 'data-mover'), 'cairn.b.repl.a.put', 'x')).rejects.toThrow(/permission to publish/);
  }, 60_000);
});
