// Several sites, all secure, started the way the CLI starts them: `cairn hub add-site` makes
// each site's leaf credential bundle, the hub runs with mutual TLS, its own identities and one
// leaf user per site (startHub secure, as `cairn hub`), and sites A and B run with their own
// CA and identities and a TLS leaf remote as their leaf user (startStack secure with
// hubCredentials, as `cairn up --site X --hub <url> --hub-credentials <dir>`). Shows:
// replication A→B after a backup; the hub's catalogue, API and CLI list both sites' restore
// points; a restore point expired at A leaves B (and the hub's view), B's replica GC through the CLI; no permission violation in any server's log for that traffic; A's other identities
// cannot reach B, and a leaf link holding A's leaf credentials carries nothing but replication;
// a leaf remote without a certificate, or a site without credentials, is refused.
import { randomUUID } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { CatalogueClient } from '@cairn/catalogue-client';
import { newEvent, replicationSubject } from '@cairn/contracts';
import { CommandBus, NatsPermissionDeniedError, publishChecked } from '@cairn/messaging';
import { identityConnectOptions, loadLeafCredentials, type AnyIdentity } from '@cairn/nats-security';
import { startNatsServer } from '@cairn/nats-server';
import { startHub, startStack, type Hub, type Stack } from '@cairn/cli';
import { useHarness, waitFor } from '@cairn/testing';
import { cli } from './e2e-helpers.ts';
import { backup, discoverVm, makeImage, type Vm } from './sites-helpers.ts';
import { logAs } from './provenance-helpers.ts';

const h = useHarness();
const MiB = 1024 * 1024;
const VIOLATION = /Violation/i;

describe('several sites, secure: hub, A and B with mutual TLS, identities and leaf users', () => {
  let hub: Hub;
  let a: Stack;
  let b: Stack;
  let hubDir: string;
  const bundles: Record<string, string> = {};
  const vmA: Vm = { vmId: 'vm-a-1', name: 'alpha', size: 4 * MiB };
  const vmB: Vm = { vmId: 'vm-b-1', name: 'bravo', size: 2 * MiB };
  const points: Record<string, string[]> = { a: [], b: [] };

  const as = async (stack: Stack, identity: AnyIdentity): Promise<NatsConnection> => {
    const nc = await connect({ servers: stack.natsUrl, reconnect: false, ...identityConnectOptions(stack.security!.credentials(identity)) });
    h.onClose(() => nc.close());
    return nc;
  };
  const replicasAt = async (stack: Stack) => (await new CatalogueClient(stack.nc, { site: stack.site }).query('replica.list', { limit: 1000 })).items;
  const violations = async (file: string) => (await readFile(file, 'utf8')).split('\n').filter((l) => VIOLATION.test(l));

  beforeAll(async () => {
    hubDir = await h.tmpDir('cairn-hub-secure-');
    // The hub's operator registers each site and hands over its bundle (as a user would: the CLI).
    for (const [site, peer] of [['a', 'b'], ['b', 'a']] as const) {
      bundles[site] = join(await h.tmpDir(`cairn-bundle-${site}-`), 'bundle');
      const r = await cli(['--data', hubDir, '--json', 'hub', 'add-site', site, '--peers', peer, '--out', bundles[site]]);
      expect(r.code, r.stderr).toBe(0);
    }
    hub = await startHub({ dataDir: hubDir, sites: [], secure: true });
    h.onClose(() => hub.stop());
    expect(hub.natsUrl).toMatch(/^tls:\/\//);
    const quick = { ackWaitMs: 3000, maxRetryDelayMs: 1000 };
    a = await startStack({ dataDir: await h.tmpDir('cairn-site-a-'), site: 'a', hub: hub.leafUrl, hubCredentials: bundles['a']!, secure: true, without: ['scheduler'], replication: quick });
    h.onClose(() => a.stop());
    b = await startStack({
      dataDir: await h.tmpDir('cairn-site-b-'), site: 'b', hub: hub.leafUrl, hubCredentials: bundles['b']!, secure: true, without: ['scheduler'], replication: quick,
      replicaPassphrases: { a: a.passphrase },
    });
    h.onClose(() => b.stop());
    expect(a.natsUrl).toMatch(/^tls:\/\//);
    // The leaf links are up when A's replication identity reaches B's receiver through the hub.
    const replA = await as(a, 'replication');
    await waitFor(async () => (await replA.request(replicationSubject('b', 'a', 'has-rp'), '20000101T000000Z-000000000000', { timeout: 1000 })).headers?.get('Cairn-Status') === 'ok',
      { timeoutMs: 30_000, intervalMs: 200, what: 'site A to reach site B through the hub' }).catch(async (e: Error) => {
      const tail = async (f: string) => (await readFile(f, 'utf8')).split('\n').filter((l) => /ERR|WRN|Leafnode|Violation/.test(l)).slice(-12).join('\n');
      throw new Error(`${e.message}\nHUB\n${await tail(hub.nats.logFile)}\nA\n${await tail(a.nats!.logFile)}\nB\n${await tail(b.nats!.logFile)}`);
    });
    await discoverVm(a, vmA);
    await discoverVm(b, vmB);
  }, 180_000);

  it('replicates A to B after a backup, across the TLS leaf links', async () => {
    // A secure site takes only signed commands: `a.nc` signs with the local operator's key (cairn up made it).
    const bus = new CommandBus(a.nc, { site: 'a', actor: a.operator!.actor, defaultTimeoutMs: 30_000 });
    const created = await bus.send('replication', 'CreateReplicationPolicy', { name: 'a-to-b', targetSites: ['b'], vmIds: [vmA.vmId], trigger: { kind: 'after-backup' }, delayMs: 0 }, { idempotencyKey: randomUUID() });
    expect(created.accepted, JSON.stringify(created)).toBe(true);
    const id = await backup(a, vmA, makeImage(vmA.size, 3));
    points['a']!.push(id);
    const replica = await waitFor(async () => (await replicasAt(b)).find((r) => r.restorePointId === id), { timeoutMs: 90_000, intervalMs: 250, what: 'A\'s restore point at B' });
    expect(replica).toMatchObject({ sourceSite: 'a', site: 'b', vmId: vmA.vmId });
  }, 180_000);

  it('the hub\'s catalogue, API and CLI list both sites\' restore points', async () => {
    points['b']!.push(await backup(b, vmB, makeImage(vmB.size, 5)));
    const global = new CatalogueClient(hub.nc, { site: 'hub' });
    const rps = await waitFor(async () => {
      const items = (await global.query('restorePoint.list', { limit: 1000 })).items;
      return items.length === 2 ? items : undefined;
    }, { timeoutMs: 60_000, intervalMs: 250, what: 'the hub to see both sites\' restore points' }).catch((e: Error) => {
      throw new Error(`${e.message}; relay ${JSON.stringify(hub.relay.status())}`);
    });
    expect(rps.map((r) => [r.site, r.restorePointId]).sort()).toEqual([['a', points['a']![0]], ['b', points['b']![0]]]);
    await waitFor(async () => (await global.query('replica.list', { limit: 1000 })).items.length === 1, { timeoutMs: 30_000, intervalMs: 250, what: 'the replica at the hub' });
    const r = await fetch(`${hub.gatewayUrl}/v1/restore-points?limit=1000`, { headers: { Authorization: `Bearer ${hub.gatewayToken}` } });
    expect(r.status).toBe(200);
    expect(((await r.json()) as { items: Array<{ site: string }> }).items.map((x) => x.site).sort()).toEqual(['a', 'b']);
    // The CLI at the hub connects as the hub's admin (security directory from its stack.json).
    const listed = await cli(['--data', hubDir, '--site', 'hub', '--json', 'restore-point', 'list']);
    expect(listed.code, listed.stderr).toBe(0);
    expect((JSON.parse(listed.stdout) as Array<{ site: string }>).map((x) => x.site).sort()).toEqual(['a', 'b']);
  }, 180_000);

  it('a restore point expired at A leaves B and the hub\'s view, across the TLS leaf links; B\'s replica GC frees its chunks (CLI)', async () => {
    // A second backup of A, copied to B, then expired by retention at A.
    const id = await backup(a, vmA, makeImage(vmA.size, 11));
    await waitFor(async () => (await replicasAt(b)).some((r) => r.restorePointId === id), { timeoutMs: 90_000, intervalMs: 250, what: 'the second restore point at B' });
    await (await logAs(a, 'scheduler')).append(`restorepoint-${id}`, [newEvent('RestorePointExpired', { restorePointId: id, vmId: vmA.vmId, policyId: randomUUID(), reason: 'keepLast 0' },
      { site: 'a', actor: { kind: 'service', id: 'scheduler@a' }, streamId: `restorepoint-${id}` })], { expectedRevision: 'no_stream' });
    await waitFor(async () => !(await replicasAt(b)).some((r) => r.restorePointId === id), { timeoutMs: 90_000, intervalMs: 250, what: 'the replica gone from B' });
    expect(await b.replication.receiver.target('a').hasRestorePoint(id)).toBe(false);
    await waitFor(async () => !(await new CatalogueClient(hub.nc, { site: 'hub' }).query('replica.list', { limit: 1000 })).items.some((r) => r.restorePointId === id),
      { timeoutMs: 60_000, intervalMs: 250, what: 'the hub to drop the replica' });
    const gc = await waitFor(async () => {
      const r = await cli(['--data', b.dataDir, '--site', 'b', '--json', 'replication', 'gc', '--from', 'a', '--grace', '0']);
      if (r.code !== 0 && r.code !== 4) throw new Error(`cairn replication gc: ${r.code} ${r.stderr}`);
      return r.code === 0 ? JSON.parse(r.stdout) as { objectsDeleted: number; liveReplicas: number } : undefined;
    }, { timeoutMs: 60_000, intervalMs: 500, what: 'a replica GC at B' });
    expect(gc.liveReplicas).toBe(1);
    // The automatic run after the expiry (grace 1 hour) kept them; this one frees its own chunks.
    expect(gc.objectsDeleted).toBeGreaterThan(0);
  }, 180_000);

  it('legitimate traffic leaves no permission violation in any server\'s log, and no leaf password in logs', async () => {
    for (const [name, file] of [['hub', hub.nats.logFile], ['a', a.nats!.logFile], ['b', b.nats!.logFile]] as const) {
      expect(await violations(file), name).toEqual([]);
    }
    for (const site of ['a', 'b']) {
      const { password } = await loadLeafCredentials(bundles[site]!);
      for (const file of [hub.nats.logFile, a.nats!.logFile, b.nats!.logFile, a.logFile, b.logFile]) {
        expect((await readFile(file, 'utf8')).includes(password), file).toBe(false);
      }
    }
    // The site's nats-server config holds its leaf password: owner only.
    expect((await stat(join(a.dataDir, 'nats', 'nats-server.conf'))).mode & 0o077).toBe(0);
    expect(await readFile(join(hubDir, 'security', 'nats-security.conf'), 'utf8')).toMatch(/user: "leaf-a", password: "\$2[aby]\$11\$/);
  });

  it('only replication crosses: A\'s other identities are refused, and a leaf holding A\'s credentials carries nothing else', async () => {
    // A's data mover and admin cannot address B at all (refused by A's server).
    const mover = await as(a, 'data-mover');
    const asMover = new CommandBus(mover, { site: 'b', actor: { kind: 'service', id: 'data-mover@a' } });
    await expect(asMover.send('scheduler', 'RequestBackup', { vmId: vmB.vmId, mode: 'full' })).rejects.toThrow(NatsPermissionDeniedError);
    await expect(publishChecked(await as(a, 'data-mover'), replicationSubject('b', 'a', 'put'), 'x')).rejects.toThrow(NatsPermissionDeniedError);
    await expect(publishChecked(await as(a, 'admin'), replicationSubject('b', 'a', 'put'), 'x')).rejects.toThrow(NatsPermissionDeniedError);

    // A compromised site A: a nats-server with A's leaf bundle and no rules of its own. What the
    // hub lets its leaf user carry is all that crosses.
    const leaf = await loadLeafCredentials(bundles['a']!);
    const u = new URL(hub.leafUrl);
    const rogue = await startNatsServer({
      dir: await h.tmpDir('cairn-rogue-a-'), jetstream: false,
      extraConfig: `leafnodes {\n  reconnect: 1\n  remotes: [ { urls: [ "nats-leaf://${leaf.user}:${leaf.password}@${u.host}" ], tls: { cert_file: ${JSON.stringify(leaf.certFile)}, key_file: ${JSON.stringify(leaf.keyFile)}, ca_file: ${JSON.stringify(leaf.caFile)} } } ]\n}`,
    });
    h.onClose(() => rogue.stop());
    const inside = await connect({ servers: rogue.url, inboxPrefix: '_INBOX_a_replication' });
    h.onClose(() => inside.close());
    const atB: string[] = [];
    const atHub: string[] = [];
    const bAdmin = await as(b, 'admin');
    bAdmin.subscribe('cairn.b.>', { callback: (_e, m) => { atB.push(m.subject); } });
    await bAdmin.flush();
    const hubAdmin = await connect({ servers: hub.natsUrl, reconnect: false, ...identityConnectOptions(hub.security!.credentials('admin')) });
    h.onClose(() => hubAdmin.close());
    hubAdmin.subscribe('cairn.hub.>', { callback: (_e, m) => { atHub.push(m.subject); } });
    await hubAdmin.flush();
    // Its link is up: replication (what A's leaf user is for) reaches B.
    await waitFor(async () => (await inside.request(replicationSubject('b', 'a', 'has-rp'), points['a']![0]!, { timeout: 1000 })).headers?.get('Cairn-Status') === 'ok',
      { timeoutMs: 30_000, intervalMs: 250, what: 'the rogue leaf to be connected' });
    atB.length = 0;
    const forged = ['cairn.b.cmd.scheduler.RequestBackup', 'cairn.b.cmd.data-mover.DeleteRestorePoint', 'cairn.b.evt.vm.vm-forged', 'cairn.b.repl.c.put',
      'cairn.hub.evt.user.forged', 'cairn.hub.sites.a', 'cairn.hub.query.catalogue.restorePoint.list', '$JS.hub.API.STREAM.DELETE.CAIRN_EVT_HUB', '$JS.b.API.STREAM.DELETE.CAIRN_EVT_B'];
    for (const s of forged) inside.publish(s, '{}');
    await inside.flush();
    // Nobody at the hub answers A's leaf: not its catalogue, not its JetStream.
    await expect(inside.request('cairn.hub.query.catalogue.restorePoint.list', '{}', { timeout: 1500 })).rejects.toThrow();
    await expect(inside.request('$JS.hub.API.INFO', '', { timeout: 1500 })).rejects.toThrow();
    // A marker through the allowed path: everything sent before it has arrived, if it was to.
    await inside.request(replicationSubject('b', 'a', 'has-rp'), points['a']![0]!, { timeout: 5000 });
    await bAdmin.flush();
    await hubAdmin.flush();
    expect(atB.filter((s) => s !== replicationSubject('b', 'a', 'has-rp'))).toEqual([]);
    expect(atHub.filter((s) => forged.includes(s))).toEqual([]);
    // The event logs are intact.
    expect(hub.relay.status().every((s) => s.connected)).toBe(true);
    const global = new CatalogueClient(hub.nc, { site: 'hub' });
    expect((await global.query('restorePoint.list', { limit: 1000 })).items).toHaveLength(2);
    console.log(`[sites-secure] hub log on the rogue leaf's sends: ${JSON.stringify(await violations(hub.nats.logFile))}`);
    await rogue.stop();
  }, 120_000);

  it('a leaf remote without a certificate is refused; a site without credentials gets a clear error', async () => {
    const leaf = await loadLeafCredentials(bundles['a']!);
    const u = new URL(hub.leafUrl);
    const refusalsBefore = ((await readFile(hub.nats.logFile, 'utf8')).match(/TLS leafnode handshake error/g) ?? []).length;
    const noCert = await startNatsServer({
      dir: await h.tmpDir('cairn-nocert-'), jetstream: false,
      extraConfig: `leafnodes {\n  reconnect: 1\n  remotes: [ { urls: [ "nats-leaf://${leaf.user}:${leaf.password}@${u.host}" ], tls: { ca_file: ${JSON.stringify(leaf.caFile)} } } ]\n}`,
    });
    h.onClose(() => noCert.stop());
    await waitFor(async () => ((await readFile(hub.nats.logFile, 'utf8')).match(/TLS leafnode handshake error/g) ?? []).length > refusalsBefore,
      { timeoutMs: 30_000, intervalMs: 250, what: 'the hub to refuse the leaf without a certificate' });
    await waitFor(async () => (await readFile(noCert.logFile, 'utf8')).includes('Leafnode connection closed'), { timeoutMs: 30_000, intervalMs: 250, what: 'the refused side to see it' });
    // Nothing crosses from it: a request that A's own leaf carries finds nobody.
    const inside = await connect({ servers: noCert.url, inboxPrefix: '_INBOX_a_replication' });
    h.onClose(() => inside.close());
    await expect(inside.request(replicationSubject('b', 'a', 'has-rp'), points['a']![0]!, { timeout: 2000 })).rejects.toThrow();
    await inside.close();
    await noCert.stop();

    // `cairn up --site c --hub <secure hub>` without --hub-credentials: refused before anything starts.
    await expect(startStack({ dataDir: await h.tmpDir('cairn-site-c-'), site: 'c', hub: hub.leafUrl, secure: true })).rejects.toThrow(/requires TLS and a leaf user.*--hub-credentials/);
    // Nor does another site's bundle do.
    await expect(startStack({ dataDir: await h.tmpDir('cairn-site-c-'), site: 'c', hub: hub.leafUrl, hubCredentials: bundles['a']!, secure: true })).rejects.toThrow(/site a's, not c's/);
  }, 120_000);
});
