// `cairn up --secure`: every service on its own NATS connection with its own identity over
// mutual TLS. A backup of a live QEMU VM (full, then incremental) and its restore run through
// the whole pipeline with no permission violation anywhere (the server logs none); a restore
// point locked with `cairn restore-point lock` survives retention and direct deletion; the CLI
// connects as the site's admin; a service identity stepping outside its permissions, and a
// client without a certificate, are refused.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { useHarness, waitFor } from '@cairn/testing';
import { CatalogueClient } from '@cairn/catalogue-client';
import { CommandBus, JetStreamClient, NatsPermissionDeniedError } from '@cairn/messaging';
import { identityConnectOptions } from '@cairn/nats-security';
import { newEvent } from '@cairn/contracts';
import { RestorePointLockedError } from '@cairn/repository';
import { startDemoVm, startStack } from '@cairn/cli';
import { checkRestoredDemoImage, cli, waitForJobEnd } from './e2e-helpers.ts';
import { logAs } from './provenance-helpers.ts';

describe('the embedded stack with per-service NATS identities and mutual TLS (real NATS, real QEMU)', () => {
  const h = useHarness();

  it('backs up and restores with least privilege; outsiders and overreach are refused', async () => {
    const dataDir = await h.tmpDir('cairn-e2e-secure-');
    const vm = await startDemoVm(join(dataDir, 'demo'), 'demo', 32 * 1024 * 1024);
    h.onClose(() => vm.stop());
    const stack = await startStack({ dataDir, qemu: [{ qmpSocket: vm.qmpPath }], secure: true });
    h.onClose(() => stack.stop());
    expect(stack.natsUrl).toMatch(/^tls:\/\//);
    for (const s of await stack.health()) expect(s.status, `${s.service}: ${JSON.stringify(s.detail)}`).toBe('ok');
    const catalogue = new CatalogueClient(stack.nc, { site: stack.site });
    await waitFor(async () => (await catalogue.query('vm.list', {})).items.some((v) => v.name === 'demo'), { what: 'demo VM in the catalogue' });
    const args = ['--data', dataDir];

    // Full, then incremental, through the CLI (connected as admin from stack.json's securityDir).
    const jobs = [];
    for (const n of [10, 5]) {
      await vm.write(n);
      const r = await cli([...args, '--json', 'backup', 'demo']);
      expect(r.code, r.stderr).toBe(0);
      const job = await waitForJobEnd(catalogue, (JSON.parse(r.stdout) as { jobId: string }).jobId, 180_000);
      expect(job.state, JSON.stringify(job.failure)).toBe('completed');
      jobs.push(job);
    }
    const rp = await catalogue.query('restorePoint.get', { restorePointId: jobs[1]!.restorePointId! });
    expect(rp.kind).toBe('incremental');
    const target = join(dataDir, 'restores', 'restored.raw');
    const restored = await cli([...args, 'restore', rp.restorePointId, '--to', target]);
    expect(restored.code, restored.stderr).toBe(0);
    expect(await checkRestoredDemoImage(target, vm.writes)).toMatchObject({ ok: true });
    const audit = await waitFor(async () => {
      const r = await cli([...args, '--json', 'audit', 'verify']);
      return r.code === 0 ? r : undefined;
    }, { timeoutMs: 60_000, intervalMs: 1000, what: 'an intact audit chain' });
    expect(audit.code).toBe(0);

    // Immutability through the command path: the full restore point is locked for 30 days;
    // retention expiring both keeps the locked one and deletes the other (handled in order).
    const [full, incremental] = [jobs[0]!.restorePointId!, jobs[1]!.restorePointId!];
    const locked = await cli([...args, '--json', 'restore-point', 'lock', full, '--for', '30d']);
    expect(locked.code, locked.stderr).toBe(0);
    const lock = JSON.parse(locked.stdout) as { retainUntil: string; objectsLocked: number };
    expect(lock.objectsLocked).toBeGreaterThan(1);
    expect(Date.parse(lock.retainUntil)).toBeGreaterThan(Date.now() + 29 * 86_400_000);
    for (const id of [full, incremental]) {
      const streamId = `restorepoint-${id}`;
      // As retention does it: the scheduler writes RestorePointExpired (the writer table).
      await (await logAs(stack, 'scheduler')).append(streamId, [newEvent('RestorePointExpired', { restorePointId: id, vmId: 'demo', policyId: null, reason: 'test: retention' }, {
        site: stack.site, actor: { kind: 'user', id: 'tester' }, streamId,
      })], { expectedRevision: 'any' });
    }
    await waitFor(async () => !(await stack.repository.listRestorePoints()).some((p) => p.id === incremental), { what: 'the unlocked restore point expired' });
    expect((await stack.repository.listRestorePoints()).map((p) => p.id)).toContain(full);
    await expect(stack.repository.deleteRestorePoint(full)).rejects.toThrow(RestorePointLockedError);
    const history = await catalogue.query('job.get', { jobId: jobs[0]!.jobId });
    expect(history.state).toBe('completed');

    // No service ever stepped outside its permissions during all of that.
    const serverLog = await readFile(stack.nats!.logFile, 'utf8');
    expect(serverLog.split('\n').filter((l) => /Violation/i.test(l))).toEqual([]);

    // A service identity overreaching is refused with a clear error.
    const security = stack.security!;
    const mover = await connect({ servers: stack.natsUrl, reconnect: false, ...identityConnectOptions(security.credentials('data-mover')) });
    h.onClose(() => mover.close());
    const asMover = new CommandBus(mover, { site: stack.site, actor: { kind: 'service', id: `data-mover@${stack.site}` } });
    // (A data mover may ask the scheduler for one thing, a backup: an in-place restore's safety
    // backup; docs/security.md. Cancelling a job is beyond it.)
    await expect(asMover.send('scheduler', 'CancelJob', { jobId: 'j-overreach' })).rejects.toThrow(NatsPermissionDeniedError);
    const bridge = await connect({ servers: stack.natsUrl, reconnect: false, ...identityConnectOptions(security.credentials('audit-bridge')) });
    h.onClose(() => bridge.close());
    await expect(new JetStreamClient(bridge).publish(`cairn.${stack.site}.evt.job.job-forged`, {}, { msgID: 'forged' })).rejects.toThrow(/permission to publish/);
    // A client with no certificate (and no identity) is not let in at all.
    await expect(connect({ servers: stack.natsUrl, reconnect: false, timeout: 5000, tls: { caFile: security.caFile } })).rejects.toThrow();
    await expect(connect({ servers: stack.natsUrl.replace('tls://', 'nats://'), reconnect: false, timeout: 5000 })).rejects.toThrow();
  }, 600_000);
});
