// A policy's testRestore schedule through a running stack: a real guest (guest agent, a web
// server on port 80) is backed up, then a policy covering it with a test-restore slot every
// 20 s makes the scheduler send its newest restore point to the data mover, which boots it in
// isolation and judges it (serial marker, guest agent, TCP port 80). Each slot boots once (its
// test restore's id is made of policy, VM and slot). The outcome shows in the catalogue's
// restore point ("boot-tested"), in `cairn test-restore list`, GET /v1/test-restores and the
// Prometheus metrics; nothing is left served afterwards.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { KnownEvent } from '@cairn/contracts';
import { CatalogueClient } from '@cairn/catalogue-client';
import { bootGuest, buildGuestImage, useHarness, waitFor } from '@cairn/testing';
import { startStack } from '@cairn/cli';
import { cli, waitForJobEnd } from './e2e-helpers.ts';

process.env['CAIRN_MIN_SCHEDULE_INTERVAL_MS'] = '1000';

describe('testRestore schedule in a policy (stack, real guest, QEMU)', () => {
  const h = useHarness();

  it('boots the newest restore point of each covered VM at its slots, once per slot, and reports it everywhere', async () => {
    const dataDir = await h.tmpDir('cairn-e2e-trs-');
    const image = await buildGuestImage({
      dir: join(dataDir, 'guest'), hostname: 'trs-guest', guestAgent: true, network: true,
      files: { '/www/index.html': 'cairn-ok\n' },
      workloadScript: '#!/bin/sh\nfor n in $(ls /sys/class/net); do [ $n = lo ] || ifconfig $n 10.0.2.15 netmask 255.255.255.0 up; done\nhttpd -p 80 -h /www\n',
    });
    const guest = await bootGuest({ image, dir: join(dataDir, 'guest-run'), guestAgent: true, args: ['-name', 'trs-vm'] });
    h.onClose(() => guest.kill());
    await guest.waitForSerial();
    const stack = await startStack({ dataDir, qemu: [{ qmpSocket: guest.qmpPath }] });
    h.onClose(() => stack.stop());
    const catalogue = new CatalogueClient(stack.nc, { site: stack.site });
    await waitFor(async () => (await catalogue.query('vm.list', {})).items.some((v) => v.name === 'trs-vm'), { timeoutMs: 60_000, what: 'trs-vm in the catalogue' });
    const args = ['--data', dataDir];
    const b = await cli([...args, '--json', 'backup', 'trs-vm']);
    expect(b.code, b.stderr).toBe(0);
    const job = await waitForJobEnd(catalogue, (JSON.parse(b.stdout) as { jobId: string }).jobId, 240_000);
    expect(job.state, JSON.stringify(job.failure)).toBe('completed');
    const restorePointId = job.restorePointId!;

    // Backups once a year; a test restore every 20 s.
    const testRestore = {
      cron: '*/20 * * * * *', serialPattern: image.marker, timeoutSeconds: 240,
      kernel: image.kernel, initrd: image.initrd, append: 'console=ttyS0 root=/dev/vda rw', agent: {}, tcpPorts: [80],
    };
    const bad = await cli([...args, 'policy', 'create', '--name', 'bad', '--vm', 'trs-vm', '--cron', '0 0 1 1 *', '--test-restore', '{"cron":"not a cron","serialPattern":"x"}']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/testRestore\.cron/);
    const p = await cli([...args, '--json', 'policy', 'create', '--name', 'boot-tested', '--vm', 'trs-vm', '--cron', '0 0 1 1 *', '--test-restore', JSON.stringify(testRestore)]);
    expect(p.code, p.stderr).toBe(0);
    const { policyId } = JSON.parse(p.stdout) as { policyId: string };

    const events = async (): Promise<KnownEvent[]> => {
      const out: KnownEvent[] = [];
      for await (const r of stack.log.readAll({ category: 'testrestore' })) out.push(r.event);
      return out;
    };
    const passed = await waitFor(async () => (await events()).find((e) => e.type === 'TestRestorePassed'),
      { timeoutMs: 360_000, intervalMs: 1000, what: 'a scheduled test restore that passed' });
    if (passed.type !== 'TestRestorePassed') throw new Error('unreachable');
    // The first one to pass: stop the schedule before the next slot comes round again.
    expect((await cli([...args, 'policy', 'pause', 'boot-tested'])).code).toBe(0);
    expect(passed.data.restorePointId).toBe(restorePointId);
    expect(passed.data.results.map((r) => [r.check, r.ok])).toEqual([[`serial:${image.marker}`, true], ['agent:guest-ping', true], ['tcp:80', true]]);
    const all = await events();
    const started = all.filter((e) => e.type === 'TestRestoreStarted');
    expect(started.find((e) => e.data.testRestoreId === passed.data.testRestoreId)?.data).toMatchObject({ policyId, restorePointId, vmId: job.vmId });
    // One boot per slot: never two starts of one test restore id.
    const ids = started.map((e) => e.data.testRestoreId);
    expect(new Set(ids).size).toBe(ids.length);

    // The catalogue's column on the restore point, the list (CLI, REST) and the metric.
    const rp = await waitFor(async () => {
      const v = await catalogue.query('restorePoint.get', { restorePointId });
      return v.lastTestRestore?.status === 'passed' || (v.lastTestRestore && v.lastTestRestore.testRestoreId !== passed.data.testRestoreId) ? v : undefined;
    }, { timeoutMs: 30_000, what: 'the test restore in the catalogue' });
    expect(rp.lastTestRestore).toMatchObject({ checks: [`serial:${image.marker}`, 'agent:guest-ping', 'tcp:80'] });
    const list = await cli([...args, '--json', 'test-restore', 'list', '--restore-point', restorePointId]);
    expect(list.code, list.stderr).toBe(0);
    const items = JSON.parse(list.stdout) as Array<{ testRestoreId: string; status: string; policyId: string | null; durationMs: number | null }>;
    expect(items.find((t) => t.testRestoreId === passed.data.testRestoreId)).toMatchObject({ status: 'passed', policyId, durationMs: passed.data.durationMs });
    const human = await cli([...args, 'restore-point', 'show', restorePointId]);
    expect(human.stdout).toMatch(/boot-tested: (passed|running|failed) at /);
    const auth = { authorization: `Bearer ${stack.gatewayToken}` };
    const rest = await fetch(`${stack.gatewayUrl}/v1/test-restores?restorePointId=${restorePointId}`, { headers: auth });
    expect(rest.status).toBe(200);
    expect(((await rest.json()) as { items: Array<{ testRestoreId: string }> }).items.map((t) => t.testRestoreId)).toContain(passed.data.testRestoreId);
    const metrics = await (await fetch(`${stack.gatewayUrl}/metrics`, { headers: auth })).text();
    expect(metrics).toMatch(/cairn_test_restores_total\{outcome="passed"\} [1-9]/);

    // Whatever may still be booting ends; then nothing is left served.
    await waitFor(async () => {
      const evs = await events();
      const ended = new Set(evs.filter((e) => e.type !== 'TestRestoreStarted').map((e) => (e.data as { testRestoreId: string }).testRestoreId));
      return evs.filter((e) => e.type === 'TestRestoreStarted').every((e) => ended.has(e.data.testRestoreId));
    }, { timeoutMs: 300_000, intervalMs: 1000, what: 'every started test restore ended' });
    const exports = await cli([...args, '--json', 'restore-export', 'list']);
    expect(JSON.parse(exports.stdout)).toEqual([]);
  }, 900_000);
});
