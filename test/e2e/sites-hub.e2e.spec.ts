// The hub as the one place to run every site (issue 24), on one topology: a secure hub and secure
// sites A (with a QEMU VM) and B, three nats-servers on loopback, started as the CLI starts them.
// Shows: from the hub's CLI (`cairn --data <hub> --site <name> …`) a policy created at A and B
// and a backup of A's VM, each command signed by the person and checked at the site; the hub's
// own identity relaying a command in someone's name, or an unsigned one, is refused at the site
// (AccessDenied in the site's log); the hub's CLI reads a site's records from the hub's catalogue.
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { CatalogueClient } from '@cairn/catalogue-client';
import { signerFromSeed } from '@cairn/command-auth';
import { CommandBus } from '@cairn/messaging';
import { identityConnectOptions } from '@cairn/nats-security';
import { startDemoVm, startHub, startStack, type DemoVm, type Hub, type Stack } from '@cairn/cli';
import { useHarness, waitFor } from '@cairn/testing';
import type { CairnEvent } from '@cairn/contracts';
import { cli, waitForJobEnd } from './e2e-helpers.ts';

const h = useHarness();
const VIOLATION = /Violation/i;

async function eventsOf(stack: Stack, streamId?: string): Promise<CairnEvent[]> {
  const out: CairnEvent[] = [];
  for await (const r of streamId ? stack.log.readStream(streamId) : stack.log.readAll()) out.push(r.event);
  return out;
}

describe('the hub runs every site: commands through the hub (secure hub, A with a QEMU VM, B)', () => {
  let hub: Hub;
  let a: Stack;
  let b: Stack;
  let vm: DemoVm;
  let hubDir: string;
  let alphaId: string;
  const bundles: Record<string, string> = {};
  /** `cairn --data <hub> --site <site> --operator-key <the site's operator key> …` */
  const atHub = (stack: Stack, ...args: string[]) => cli(['--data', hubDir, '--site', stack.site, '--operator-key', stack.operator!.keyFile, '--json', ...args]);
  const hubAs = async (identity: 'admin' | 'gateway'): Promise<NatsConnection> => {
    const nc = await connect({ servers: hub.natsUrl, reconnect: false, ...identityConnectOptions(hub.security!.credentials(identity)) });
    h.onClose(() => nc.close());
    return nc;
  };

  beforeAll(async () => {
    hubDir = await h.tmpDir('cairn-hub-cmd-');
    for (const [site, peer] of [['a', 'b'], ['b', 'a']] as const) {
      bundles[site] = join(await h.tmpDir(`cairn-bundle-${site}-`), 'bundle');
      const r = await cli(['--data', hubDir, '--json', 'hub', 'add-site', site, '--peers', peer, '--out', bundles[site]]);
      expect(r.code, r.stderr).toBe(0);
    }
    hub = await startHub({ dataDir: hubDir, sites: [], secure: true });
    h.onClose(() => hub.stop());
    const dirA = await h.tmpDir('cairn-hub-site-a-');
    vm = await startDemoVm(join(dirA, 'demo'), 'alpha', 32 * 1024 * 1024);
    h.onClose(() => vm.stop());
    a = await startStack({ dataDir: dirA, site: 'a', hub: hub.leafUrl, hubCredentials: bundles['a']!, secure: true, qemu: [{ qmpSocket: vm.qmpPath }] });
    h.onClose(() => a.stop());
    b = await startStack({ dataDir: await h.tmpDir('cairn-hub-site-b-'), site: 'b', hub: hub.leafUrl, hubCredentials: bundles['b']!, secure: true });
    h.onClose(() => b.stop());
    // The hub sees A's VM once the relay has copied A's log (VmDiscovered).
    alphaId = (await waitFor(async () => (await new CatalogueClient(hub.nc, { site: 'hub' }).query('vm.list', {})).items.find((v) => v.site === 'a' && v.name === 'alpha'),
      { timeoutMs: 90_000, intervalMs: 500, what: 'A\'s VM in the hub\'s catalogue' })).vmId;
  }, 300_000);

  it('from the hub\'s CLI: a policy at A and at B, a backup of A\'s VM, each checked and recorded at its site as the person', async () => {
    for (const site of [a, b]) {
      const r = await atHub(site, 'policy', 'create', '--name', 'nightly', '--vm', 'alpha', '--cron', '0 2 * * *', '--timezone', 'UTC');
      expect(r.code, r.stderr).toBe(0);
      const { policyId } = JSON.parse(r.stdout) as { policyId: string };
      const local = await waitFor(async () => (await new CatalogueClient(site.nc, { site: site.site }).query('policy.list', {})).items.find((p) => p.policyId === policyId),
        { timeoutMs: 30_000, intervalMs: 250, what: `the policy at ${site.site}` });
      expect(local).toMatchObject({ name: 'nightly', version: 1 });
      // The site recorded it as the person whose key signed it, not as the hub.
      const created = (await eventsOf(site, `policy-${policyId}`)).find((e) => e.type === 'PolicyCreated')!;
      expect(created.actor).toMatchObject({ kind: 'user', id: site.operator!.actor.id });
      expect(created.site).toBe(site.site);
    }
    // The hub's CLI lists each site's own policies (from the hub's catalogue), and the name check works per site.
    const listed = await waitFor(async () => {
      const r = await atHub(a, 'policy', 'list');
      const items = r.code === 0 ? JSON.parse(r.stdout) as Array<{ name: string; site: string }> : [];
      return items.length === 1 ? items : undefined;
    }, { timeoutMs: 60_000, intervalMs: 500, what: 'A\'s policy through the hub' });
    expect(listed).toMatchObject([{ name: 'nightly', site: 'a' }]);
    const again = await atHub(a, 'policy', 'create', '--name', 'nightly', '--vm', 'alpha', '--cron', '0 3 * * *', '--timezone', 'UTC');
    expect(again.code, again.stdout).not.toBe(0);
    expect(again.stdout + again.stderr).toMatch(/exists already/);

    // A backup of A's VM started at the hub runs at A.
    await vm.write(8);
    const started = await atHub(a, 'backup', 'alpha');
    expect(started.code, started.stderr).toBe(0);
    const { jobId } = JSON.parse(started.stdout) as { jobId: string };
    const job = await waitForJobEnd(new CatalogueClient(a.nc, { site: 'a' }), jobId, 240_000);
    expect(job.state, JSON.stringify(job.failure)).toBe('completed');
    const requested = (await eventsOf(a, `job-${jobId}`)).find((e) => e.type === 'JobRequested')!;
    expect(requested.actor).toMatchObject({ kind: 'user', id: a.operator!.actor.id });
    // And the hub shows it: `job show` at the hub, from its catalogue.
    const shown = await waitFor(async () => {
      const r = await atHub(a, 'job', 'show', jobId);
      return r.code === 0 && (JSON.parse(r.stdout) as { state: string }).state === 'completed' ? r : undefined;
    }, { timeoutMs: 60_000, intervalMs: 500, what: 'the job at the hub' });
    expect(JSON.parse(shown.stdout)).toMatchObject({ jobId, site: 'a' });
  }, 400_000);

  it('the hub\'s own identity cannot act for a person: a command it signs, or an unsigned one, is refused at the site', async () => {
    const person = { kind: 'user' as const, id: a.operator!.actor.id };
    const gatewaySeed = await readFile(hub.security!.credentials('gateway').seedFile, 'utf8');
    const forged = new CommandBus(await hubAs('gateway'), { site: 'a', actor: person, signer: signerFromSeed(gatewaySeed), defaultTimeoutMs: 30_000 });
    const r1 = await forged.send('scheduler', 'RequestBackup', { vmId: alphaId, mode: 'full' });
    expect(r1.accepted).toBe(false);
    expect(JSON.stringify(r1)).toMatch(/unauthenticated/);
    const unsigned = new CommandBus(await hubAs('admin'), { site: 'a', actor: person, defaultTimeoutMs: 30_000 });
    const r2 = await unsigned.send('data-mover', 'DeleteRestorePoint', { restorePointId: '20000101T000000Z-000000000000', approvalId: randomUUID() });
    expect(r2.accepted).toBe(false);
    expect(JSON.stringify(r2)).toMatch(/unauthenticated/);
    // Both refusals are in A's log, as A's services recorded them.
    await waitFor(async () => {
      const denied = (await eventsOf(a)).filter((e) => e.type === 'AccessDenied').map((e) => (e.data as { operation?: string }).operation);
      return denied.includes('RequestBackup') && denied.includes('DeleteRestorePoint') ? denied : undefined;
    }, { timeoutMs: 30_000, intervalMs: 250, what: 'AccessDenied at A for both' });
    // Nor may the hub's other identities reach a site at all (NATS refuses the subject).
    const relayNc = await connect({ servers: hub.natsUrl, reconnect: false, ...identityConnectOptions(hub.security!.credentials('catalogue')) });
    h.onClose(() => relayNc.close());
    await expect(new CommandBus(relayNc, { site: 'a', actor: person, defaultTimeoutMs: 5000 }).send('scheduler', 'RequestBackup', { vmId: alphaId, mode: 'full' })).rejects.toThrow(/permission|denied/i);
  }, 120_000);

  it('legitimate traffic leaves no permission violation in A\'s or B\'s server log', async () => {
    for (const [name, file] of [['a', a.nats!.logFile], ['b', b.nats!.logFile]] as const) {
      expect((await readFile(file, 'utf8')).split('\n').filter((l) => VIOLATION.test(l)), name).toEqual([]);
    }
  });
});
