// A running secure hub takes a site added with `cairn hub add-site` without a restart: it
// notices the change of its security directory, has its nats-server reload the leaf users and
// permissions (SIGHUP) and lets its relay copy the new site's events. Shows: with site A joined
// and copied, `cairn hub add-site c` while the hub runs, then site C started with that bundle
// joins over TLS and its restore point reaches the hub's catalogue and API; A's leaf link was
// never closed and A's later events still arrive; a config nats-server refuses leaves the hub
// running on the previous one; a reissued leaf user is reloaded, a removed one dropped (the relay
// stops reading its site first); no "Violation" in any server's log.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { CatalogueClient } from '@cairn/catalogue-client';
import { startHub, startStack, type Hub, type Stack } from '@cairn/cli';
import { useHarness, waitFor } from '@cairn/testing';
import { cli } from './e2e-helpers.ts';
import { backup, discoverVm, makeImage, type Vm } from './sites-helpers.ts';

const h = useHarness();
const MiB = 1024 * 1024;
const lines = async (file: string, re: RegExp) => (await readFile(file, 'utf8')).split('\n').filter((l) => re.test(l));

describe('several sites, secure: a site added while the hub runs joins without a hub restart', () => {
  let hub: Hub;
  let a: Stack;
  let c: Stack;
  let hubDir: string;
  const said: string[] = [];
  const bundles: Record<string, string> = {};
  const vmA: Vm = { vmId: 'vm-a-1', name: 'alpha', size: 2 * MiB };
  const vmC: Vm = { vmId: 'vm-c-1', name: 'charlie', size: 2 * MiB };
  const hubRestorePoints = async () => (await new CatalogueClient(hub.nc, { site: 'hub' }).query('restorePoint.list', { limit: 1000 })).items;
  const addSite = async (site: string) => {
    bundles[site] = join(await h.tmpDir(`cairn-bundle-${site}-`), 'bundle');
    const r = await cli(['--data', hubDir, '--json', 'hub', 'add-site', site, '--peers', 'none', '--out', bundles[site]]);
    expect(r.code, r.stderr).toBe(0);
  };

  beforeAll(async () => {
    hubDir = await h.tmpDir('cairn-hub-reload-');
    await addSite('a');
    hub = await startHub({ dataDir: hubDir, sites: [], secure: true, log: (l) => said.push(l), securityRecheckMs: 2_000 });
    h.onClose(() => hub.stop());
    a = await startStack({ dataDir: await h.tmpDir('cairn-site-a-'), site: 'a', hub: hub.leafUrl, hubCredentials: bundles['a']!, secure: true, without: ['scheduler'] });
    h.onClose(() => a.stop());
    await discoverVm(a, vmA);
    const id = await backup(a, vmA, makeImage(vmA.size, 3));
    await waitFor(async () => (await hubRestorePoints()).some((r) => r.restorePointId === id), { timeoutMs: 60_000, intervalMs: 250, what: 'A\'s restore point at the hub' });
    expect(hub.relay.status().map((s) => s.site)).toEqual(['a']);
  }, 180_000);

  it('cairn hub add-site c while the hub runs: C joins over TLS and its events reach the hub; A is never disconnected', async () => {
    const leafLinksBefore = (await lines(hub.nats.logFile, /Leafnode connection created/)).length;
    expect(leafLinksBefore).toBe(1);
    await addSite('c');
    // The hub applies it by itself (directory watch, or the periodic re-check).
    await waitFor(async () => said.some((l) => /^security reload +ok .*added c.*relay now copies c/.test(l)), { timeoutMs: 30_000, intervalMs: 100, what: 'the hub to reload its security config' })
      .catch((e: Error) => { throw new Error(`${e.message}; said ${JSON.stringify(said)}`); });
    expect((await lines(hub.nats.logFile, /Reloaded server configuration/)).length).toBe(1);
    expect(hub.relay.status().map((s) => s.site).sort()).toEqual(['a', 'c']);

    c = await startStack({ dataDir: await h.tmpDir('cairn-site-c-'), site: 'c', hub: hub.leafUrl, hubCredentials: bundles['c']!, secure: true, without: ['scheduler'] });
    h.onClose(() => c.stop());
    expect(c.natsUrl).toMatch(/^tls:\/\//);
    await discoverVm(c, vmC);
    const idC = await backup(c, vmC, makeImage(vmC.size, 5));
    const rps = await waitFor(async () => {
      const items = await hubRestorePoints();
      return items.some((r) => r.restorePointId === idC) ? items : undefined;
    }, { timeoutMs: 90_000, intervalMs: 250, what: 'C\'s restore point at the hub' }).catch((e: Error) => {
      throw new Error(`${e.message}; relay ${JSON.stringify(hub.relay.status())}`);
    });
    expect(rps.find((r) => r.restorePointId === idC)).toMatchObject({ site: 'c', vmId: vmC.vmId });
    const r = await fetch(`${hub.gatewayUrl}/v1/restore-points?limit=1000`, { headers: { Authorization: `Bearer ${hub.gatewayToken}` } });
    expect(r.status).toBe(200);
    expect(((await r.json()) as { items: Array<{ site: string }> }).items.map((x) => x.site).sort()).toEqual(['a', 'c']);

    // A's leaf link stayed up through the reload: the hub and A saw one link each, none closed;
    // and A's next events still reach the hub.
    const idA = await backup(a, vmA, makeImage(vmA.size, 7));
    await waitFor(async () => (await hubRestorePoints()).some((x) => x.restorePointId === idA), { timeoutMs: 60_000, intervalMs: 250, what: 'A\'s second restore point at the hub' });
    expect((await lines(hub.nats.logFile, /Leafnode connection created/)).length).toBe(2);
    expect(await lines(hub.nats.logFile, /Leafnode connection closed/)).toEqual([]);
    expect((await lines(a.nats!.logFile, /Leafnode connection created/)).length).toBe(1);
    expect(await lines(a.nats!.logFile, /Leafnode connection closed/)).toEqual([]);
    expect(hub.relay.status().every((s) => s.connected)).toBe(true);
  }, 240_000);

  it('a config nats-server refuses leaves the hub running on the previous one', async () => {
    const before = await readFile(hub.nats.configFile, 'utf8');
    await expect(hub.nats.reload('authorization { users: [ ')).rejects.toThrow(/did not reload.*keeps the previous one/);
    expect(await readFile(hub.nats.configFile, 'utf8')).toBe(before);
    expect((await hubRestorePoints()).length).toBe(3);
    // Nothing changed in the directory: a check applies nothing and reloads nothing.
    await hub.reloadSecurity();
    expect((await lines(hub.nats.logFile, /Reloaded server configuration/)).length).toBe(1);
  }, 60_000);

  it('a reissued leaf user is reloaded; a removed one is dropped and the relay stops reading its site first', async () => {
    await addSite('c');
    await waitFor(async () => said.some((l) => /^security reload +ok .*reissued c/.test(l)), { timeoutMs: 30_000, intervalMs: 100, what: 'the reissue to be applied' });
    expect(await readFile(join(hubDir, 'security', 'nats-security.conf'), 'utf8')).toContain('user: "leaf-c"');
    // No CLI removes a site yet: by hand in site.json, as an operator would.
    const file = join(hubDir, 'security', 'site.json');
    const json = JSON.parse(await readFile(file, 'utf8')) as { leafSites: Record<string, unknown> };
    delete json.leafSites['c'];
    await writeFile(file, JSON.stringify(json, null, 2) + '\n');
    await waitFor(async () => said.some((l) => /^security reload +ok .*removed c.*relay stopped copying c/.test(l)), { timeoutMs: 30_000, intervalMs: 100, what: 'the removal to be applied' });
    expect(hub.relay.status().map((s) => s.site)).toEqual(['a']);
    expect((await lines(hub.nats.logFile, /Reloaded server configuration/)).length).toBe(3);
    // A still reaches the hub.
    const idA = await backup(a, vmA, makeImage(vmA.size, 9));
    await waitFor(async () => (await hubRestorePoints()).some((x) => x.restorePointId === idA), { timeoutMs: 60_000, intervalMs: 250, what: 'A\'s third restore point at the hub' });
  }, 120_000);

  it('no permission violation in any server\'s log', async () => {
    for (const [name, file] of [['hub', hub.nats.logFile], ['a', a.nats!.logFile], ['c', c.nats!.logFile]] as const) {
      expect(await lines(file, /Violation/i), name).toEqual([]);
    }
  });
});
